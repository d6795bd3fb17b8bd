"""The ops console: server-rendered pages over the stored events (Jinja2), under /console/.

Every page is behind the read API's tokens (a signed session cookie, console/session.py), sends a
strict Content-Security-Policy and escapes every stored value (Jinja2's autoescape on every template).
The database work is the read API's: Core statements on the reader's threads (api/reads.py).
"""

import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import quote, urlencode

import jinja2
from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.templating import Jinja2Templates

from api.reads import on_connection
from console import chart, format, queries, timeline
from console.rows import delivery_cell, timeline_row
from console.session import COOKIE, COOKIE_PATH, ConsoleSession, current_session, session_keys
from payments.events import STATUS_RANK
from security import constant_time_in

HERE = Path(__file__).resolve().parent
# Nothing from another host, no inline script or style: the pages' own CSS and JS, forms to ourselves.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: under no-referrer browsers send `Origin: null` with our own forms.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
STATIC: Final = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}
FILTERS: Final = ("provider", "event_type", "status", "since", "until")
CHART_SECONDS: Final = 30.0  # the chart is one grouped count: drawn at most this often per process

environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every template, whatever its name: payload values are always escaped
    undefined=jinja2.StrictUndefined,
)
environment.filters.update(
    major=format.major_amount,
    iso=format.iso,
    lag=format.lag,
    path=lambda value: quote(str(value), safe=""),
    timeline_row=timeline_row,
    deliveries=delivery_cell,
)
templates = Jinja2Templates(env=environment)
router = APIRouter(prefix="/console", include_in_schema=False)


class BadInput(ValueError):
    """A console parameter that cannot be used; the page says which."""


def text(value: str | None, name: str, *, max_length: int = 255) -> str | None:
    """A free-text parameter: None when empty; no control characters (PostgreSQL refuses NUL)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > max_length or any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise BadInput(f"{name}: at most {max_length} characters, no control characters")
    return value


def time_bound(value: str | None, name: str) -> datetime | None:
    if (value := text(value, name, max_length=40)) is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{name}: not a date and time (2025-07-07T10:00)") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def page(
    request: Request, template: str, session: ConsoleSession, status_code: int = 200, **context: Any
) -> Response:
    return templates.TemplateResponse(
        request,
        template,
        {"session": session, "providers": queries.PROVIDERS, "statuses": list(STATUS_RANK), **context},
        status_code=status_code,
        headers=SECURITY_HEADERS,
    )


def redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect("/console/login?" + urlencode({"next": target}))


def not_found(request: Request, session: ConsoleSession, message: str) -> Response:
    return page(request, "message.html", session, 404, title="Not found", message=message)


# --- the recent events ----------------------------------------------------------------------------------


@router.get("/")
async def index(
    request: Request,
    provider: str | None = None,
    event_type: str | None = None,
    status: str | None = None,
    since: str | None = None,
    until: str | None = None,
    q: str | None = None,
    before: str | None = None,
) -> Response:
    session = current_session(request)
    if session is None:
        return to_login(request)
    form = dict(zip(FILTERS, (provider, event_type, status, since, until), strict=True))
    try:
        if (search := text(q, "search")) is not None:
            return await find(request, session, search)
        filters = queries.FeedFilters(
            provider=text(provider, "provider", max_length=32),
            event_type=text(event_type, "event type"),
            status=text(status, "status", max_length=32),
            since=time_bound(since, "since"),
            until=time_bound(until, "until"),
        )
        if filters.status is not None and filters.status not in STATUS_RANK:
            raise BadInput("status: not a status of the lifecycle")
        older_than = (
            int(before) if before and before.isascii() and before.isdigit() and len(before) < 19 else None
        )
    except BadInput as exc:
        return page(
            request,
            "index.html",
            session,
            422,
            form=form,
            error=str(exc),
            events=[],
            more=None,
            chart=await hourly_chart(request),
            search=q or "",
        )
    rows = await on_connection(request, lambda c: queries.feed(c, filters, before=older_than))
    more = None
    if len(rows) > queries.PAGE:
        rows = rows[: queries.PAGE]
        kept = {name: value for name, value in form.items() if value}
        more = "/console/?" + urlencode({**kept, "before": rows[-1].id})
    return page(
        request,
        "index.html",
        session,
        form=form,
        error=None,
        events=rows,
        more=more,
        chart=await hourly_chart(request),
        search="",
    )


async def find(request: Request, session: ConsoleSession, search: str) -> Response:
    """A payment id goes to its timeline, an event id to the event; else the index says nothing matched."""
    payments = await on_connection(request, lambda c: queries.payments_named(c, search))
    if len(payments) == 1:
        return redirect(f"/console/payments/{quote(search, safe='')}?provider={payments[0].provider}")
    if payments:
        return redirect(f"/console/payments/{quote(search, safe='')}")
    events = await on_connection(request, lambda c: queries.events_named(c, search))
    if len(events) == 1:
        return redirect(f"/console/events/{events[0].provider}/{quote(search, safe='')}")
    if events:
        return page(
            request,
            "choose.html",
            session,
            title=f"Events named {search}",
            search=search,
            choices=[(f"/console/events/{e.provider}/{quote(search, safe='')}", e.provider) for e in events],
        )
    return page(
        request,
        "index.html",
        session,
        404,
        form=dict.fromkeys(FILTERS),
        events=[],
        more=None,
        error=f"No payment or event is stored under {search!r}.",
        chart=await hourly_chart(request),
        search=search,
    )


async def hourly_chart(request: Request) -> chart.Chart:
    state = request.app.state
    cached: tuple[float, chart.Chart] | None = getattr(state, "console_chart", None)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    now = datetime.now(UTC)
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=chart.HOURS - 1)
    counts = await on_connection(request, lambda c: queries.hourly_counts(c, since=first))
    drawn = chart.build(counts, now=now.replace(tzinfo=None))
    state.console_chart = (time.monotonic() + CHART_SECONDS, drawn)
    return drawn


# --- a payment's timeline -------------------------------------------------------------------------------


@router.get("/payments/{payment_id:path}")
async def payment_timeline(
    request: Request, payment_id: str, provider: str | None = None, order: str = "provider"
) -> Response:
    session = current_session(request)
    if session is None:
        return to_login(request)
    try:
        wanted = text(payment_id, "payment id")
        provider = text(provider, "provider", max_length=32)
    except BadInput as exc:
        return not_found(request, session, str(exc))
    if wanted is None:
        return not_found(request, session, "No payment id given.")
    found = await on_connection(request, lambda c: queries.payments_named(c, wanted))
    if provider is not None:
        found = [payment for payment in found if payment.provider == provider]
    if not found:
        return not_found(request, session, f"No events are stored for payment {wanted!r}.")
    if len(found) > 1:
        base = f"/console/payments/{quote(wanted, safe='')}?provider="
        return page(
            request,
            "choose.html",
            session,
            title=f"Payment {wanted} at several providers",
            search=wanted,
            choices=[(base + p.provider, p.provider) for p in found],
        )
    payment = found[0]
    events = await on_connection(request, lambda c: queries.timeline_events(c, payment.provider, wanted))
    truncated = len(events) > queries.TIMELINE_MAX
    rows = timeline.build(events[: queries.TIMELINE_MAX])
    arrival = order == "arrival"
    if arrival:
        rows = timeline.in_arrival_order(rows)
    here = f"/console/payments/{quote(wanted, safe='')}?provider={payment.provider}"
    return page(
        request,
        "timeline.html",
        session,
        payment=payment,
        rows=rows,
        arrival=arrival,
        truncated=truncated,
        here=here,
        out_of_order=sum(1 for row in rows if row.arrived_after is not None),
    )


# --- one event ------------------------------------------------------------------------------------------


@router.get("/events/{provider}/{event_id:path}")
async def event_detail(request: Request, provider: str, event_id: str, body: str = "pretty") -> Response:
    session = current_session(request)
    if session is None:
        return to_login(request)
    try:
        wanted, name = text(event_id, "event id"), text(provider, "provider", max_length=32)
    except BadInput as exc:
        return not_found(request, session, str(exc))
    if wanted is None or name is None:
        return not_found(request, session, "No event id given.")
    event = await on_connection(request, lambda c: queries.stored_event(c, name, wanted))
    if event is None:
        return not_found(request, session, f"No event {wanted!r} is stored for provider {name!r}.")
    pretty = format.pretty_body(event.raw_body)
    exact, encoding = format.exact_body(event.raw_body)
    show_exact = body == "exact" or pretty is None
    here = f"/console/events/{quote(name, safe='')}/{quote(wanted, safe='')}"
    return page(
        request,
        "event.html",
        session,
        event=event,
        headers=format.shown_headers(event.headers),
        body_text=exact if show_exact else pretty,
        show_exact=show_exact,
        encoding=encoding,
        can_pretty=pretty is not None,
        here=here,
    )


# --- signing in and out ---------------------------------------------------------------------------------


def safe_next(target: str | None) -> str:
    """Only a console page of ours: never another host (`//evil`, `/\\evil`), never outside /console/."""
    if target and target.startswith("/console/") and "\\" not in target and "//" not in target:
        return target
    return "/console/"


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


def login_page(request: Request, *, next_url: str, error: str | None, status_code: int = 200) -> Response:
    session = ConsoleSession("", "", signed_in=False)
    return page(request, "login.html", session, status_code, next_url=next_url, error=error)


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    if not request.app.state.settings.api_tokens:
        return redirect(safe_next(next))
    return login_page(request, next_url=safe_next(next), error=None)


@router.post("/login")
async def login(
    request: Request, token: Annotated[str, Form(max_length=1024)] = "", next: Annotated[str, Form()] = ""
) -> Response:
    settings = request.app.state.settings
    if not settings.api_tokens:
        return redirect(safe_next(next))
    if not same_origin(request):
        return login_page(
            request, next_url="/console/", error="Refused: the form came from another site.", status_code=403
        )
    if not token or not constant_time_in(token, settings.api_tokens):
        return login_page(
            request, next_url=safe_next(next), error="That token is not valid.", status_code=401
        )
    response = redirect(safe_next(next))
    response.set_cookie(
        COOKIE,
        session_keys(request).issue(token),
        max_age=int(settings.console_session_hours * 3600),
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request, csrf_token: Annotated[str, Form(max_length=200)] = "") -> Response:
    session = current_session(request)
    if session is None:
        return to_login(request)
    if not same_origin(request) or not session_keys(request).csrf_matches(session, csrf_token):
        return page(
            request,
            "message.html",
            session,
            403,
            title="Refused",
            message="This form's CSRF token is missing or wrong: reload the page and try again.",
        )
    response = redirect("/console/login")
    response.delete_cookie(
        COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response


# --- our own CSS and JS ---------------------------------------------------------------------------------


@lru_cache(maxsize=len(STATIC))
def static_bytes(name: str) -> bytes:
    return (HERE / "static" / name).read_bytes()


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in STATIC:
        return Response("not found", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS)
    headers = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=300"}
    return Response(static_bytes(name), media_type=STATIC[name], headers=headers)
