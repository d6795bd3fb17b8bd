"""The read API for ops: payment state, payment history and stored events, token-protected.

A payment's history is what ops and dashboards poll: a precompiled statement run on the event loop
(`Reader.select`), and a hot route (api/hot_routes.py) served ahead of FastAPI's router with the same
validation (one `HistoryQuery` model), token check, handler and answers as the documented route. The
other routes hand their database work to the reader's threads, one connection or Session per request.
Lists are keyset-paged (api/paging.py): every page is one index range scan, however many events are
stored, and lists read only the listed columns, never the raw bodies.
"""

import base64
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Final, TypeVar, cast
from urllib.parse import parse_qsl, unquote

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import Connection, Dialect, Select, String, bindparam, select, tuple_
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator
from starlette.types import Scope

from api import paging
from api.auth import bearer_token, check_token, require_token
from api.hot_routes import HotRoute
from api.params import (
    EventId,
    EventTypeFilter,
    FeedAfter,
    FeedSince,
    FeedUntil,
    HistoryAfter,
    HistorySince,
    HistoryUntil,
    Limit,
    PaymentId,
    ProviderFilter,
    ProviderName,
    StatusFilter,
    provider_choice,
)
from api.precompiled import PrecompiledSelect
from api.reader import Reader
from errors import EventNotFound, PaymentAmbiguous, PaymentNotFound, StorageUnavailable
from models import Event, Payment, UTCDateTime
from providers import REDACTED, SIGNATURE_HEADERS
from schemas import (
    EVENT_NOT_FOUND,
    PAGED_LIST_HEADERS,
    PAYMENT_AMBIGUOUS,
    PAYMENT_NOT_FOUND,
    READ_RESPONSES,
    EventDetail,
    EventOut,
    PaymentOut,
)

T = TypeVar("T")


async def in_session(request: Request, work: Callable[[Session], T]) -> T:
    """Run `work` with a fresh Session on the reader's threads."""
    reader = _reader(request)
    return await _storage_errors(reader, reader.with_session(work))


async def on_connection(request: Request, work: Callable[[Connection], T]) -> T:
    """Run `work` with a connection on the reader's threads: for Core statements, no ORM."""
    reader = _reader(request)
    return await _storage_errors(reader, reader.with_connection(work))


def _reader(request: Request) -> Reader:
    return cast(Reader, request.app.state.reader)


async def _storage_errors(reader: Reader, work: Awaitable[T]) -> T:
    try:
        return await work
    except reader.unavailable as exc:
        # Unreachable, timed out or pool exhausted: the documented 503, not an internal error.
        raise StorageUnavailable("storage is unavailable; retry later") from exc


# What a listed event shows: EventOut's fields, in its order, after the row id that cursors need. No
# raw body or headers, which can be large (GET /events/{provider}/{id} has them).
LISTED_FIELDS: Final = tuple(EventOut.model_fields)
LISTED = select(Event.id, *(getattr(Event, name) for name in LISTED_FIELDS))
OCCURRED_AT: Final = 1 + LISTED_FIELDS.index("occurred_at")  # a row's position of it: rows are tuples

# Webhook and health routes live on other routers: only these need a token.
router = APIRouter(dependencies=[Depends(require_token)], responses=READ_RESPONSES)

PAGED_OK: dict[int | str, dict[str, Any]] = {
    200: {"description": "A JSON array, possibly empty", "headers": PAGED_LIST_HEADERS}
}


def listed_page(request: Request, rows: Sequence[Sequence[Any]], *, limit: int, kind: str) -> Response:
    """One page of a list, read with `limit + 1` rows: when the extra row came back, more remain, and
    the Link header points at the next page. The JSON is what `list[EventOut]` serialises to (a test
    holds the two equal), written by orjson: a list of up to 1,000 events is a hot answer."""
    headers: dict[str, str] = {}
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        key = (last[OCCURRED_AT], last[0]) if kind == paging.HISTORY else (last[0],)
        headers["Link"] = paging.next_link(request, paging.encode(kind, *key))
    # Zipped by position, which is cheaper than attribute lookups.
    body = orjson.dumps(
        [dict(zip(LISTED_FIELDS, row[1:], strict=True)) for row in rows], option=orjson.OPT_UTC_Z
    )
    return Response(body, media_type="application/json", headers=headers)


class HistoryQuery(BaseModel):
    """The filters and paging of a payment's history: one definition for /docs, for the route's
    validation and for the hot route's."""

    provider: ProviderFilter = None
    event_type: EventTypeFilter = None
    since: HistorySince = None
    until: HistoryUntil = None
    after: HistoryAfter = None
    limit: Limit = 100


class TimeText(TypeDecorator[datetime]):
    """A time bound as its ISO 8601 text, for the server to cast to timestamptz."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> str | None:
        return None if value is None else value.astimezone(UTC).isoformat()


def time_param(name: str, *, as_text: bool) -> ColumnElement[datetime]:
    # asyncpg sends the first instant of year 1 and the last of year 9999 as -infinity and infinity:
    # a cursor on an event stored at either time would then point back at its own page. As text, cast
    # by the server, every time compares as the exact instant it is.
    if as_text:
        return sql_cast(bindparam(name, type_=TimeText()), UTCDateTime())
    return bindparam(name, type_=UTCDateTime())


@lru_cache(maxsize=64)
def history_select(dialect: Dialect, **filters: bool) -> PrecompiledSelect:
    statement = history_statement(times_as_text=dialect.name == "postgresql", **filters)
    return PrecompiledSelect(statement, dialect)


def history_statement(
    *, after: bool, provider: bool, event_type: bool, since: bool, until: bool, times_as_text: bool
) -> Select[*tuple[Any, ...]]:
    """The history query for one combination of filters; values are bound at execution. Built and
    compiled once per combination (history_select): building a statement costs more than running it."""
    stmt = LISTED.where(Event.payment_id == bindparam("payment_id"))
    if after:
        # A row-value comparison: both databases turn it into a range on the history index.
        after_key = tuple_(time_param("after_occurred_at", as_text=times_as_text), bindparam("after_id"))
        stmt = stmt.where(tuple_(Event.occurred_at, Event.id) > after_key)
    if provider:
        stmt = stmt.where(Event.provider == bindparam("provider"))
    if event_type:
        stmt = stmt.where(Event.event_type == bindparam("event_type"))
    if since:
        stmt = stmt.where(Event.occurred_at >= time_param("since", as_text=times_as_text))
    if until:
        stmt = stmt.where(Event.occurred_at < time_param("until", as_text=times_as_text))
    return stmt.order_by(Event.occurred_at, Event.id).limit(bindparam("limit"))


async def history(request: Request, payment_id: str, query: HistoryQuery) -> Response:
    """The page of `payment_id`'s history that `query` asks for; the handler of both the documented
    route and the hot route."""
    params: dict[str, Any] = {"payment_id": payment_id, "limit": query.limit + 1}
    if query.after is not None:
        params["after_occurred_at"], params["after_id"] = paging.decode_history(query.after)
    for name in ("provider", "event_type", "since", "until"):
        if (value := getattr(query, name)) is not None:
            params[name] = value
    reader = _reader(request)
    select_ = history_select(
        reader.dialect,
        after=query.after is not None,
        provider=query.provider is not None,
        event_type=query.event_type is not None,
        since=query.since is not None,
        until=query.until is not None,
    )
    rows = await _storage_errors(reader, reader.select(select_, params))
    return listed_page(request, rows, limit=query.limit, kind=paging.HISTORY)


# Ids are the providers' own and may hold "/": every id route takes the rest of the path ({...:id}, see
# params.IdConvertor), as the hot route does, so whatever was stored can be read back.
@router.get(
    "/payments/{payment_id:id}/events",
    response_model=list[EventOut],
    responses=PAGED_OK,
    tags=["payments"],
    summary="A payment's events, oldest first, paged",
)
async def payment_events(
    request: Request, payment_id: PaymentId, query: Annotated[HistoryQuery, Query()]
) -> Response:
    """Chronological by `occurred_at`, ties in order of receipt. An unknown payment gives `[]`.

    At most `limit` events; when more remain, the `Link` header carries the next page's URL (the same
    query with `after` set). Follow it until it is absent to walk the whole history.
    """
    if not events_suffix_is_literal(request.scope):
        # `/payments/pay%2Fevents`: the state of the payment "pay/events", not the history of "pay".
        payment = await payment_state(request, f"{payment_id}/events", query.provider)
        return Response(PaymentOut.model_validate(payment).model_dump_json(), media_type="application/json")
    return await history(request, payment_id, query)


def events_suffix_is_literal(scope: Scope) -> bool:
    """Whether the path's last segment is "events" as sent, not the end of an id whose "/" was sent
    as %2F. Starlette routes on the decoded path, where the two look alike; the raw path tells."""
    raw_path: bytes | None = scope.get("raw_path")
    return raw_path is None or unquote(raw_path.rsplit(b"/", 1)[-1].decode("latin-1")) == "events"


PAYMENT_ID: Final = TypeAdapter(PaymentId)


async def hot_history(request: Request, matched: str) -> Response:
    """`payment_events` for the hot route: the token checked and the path and query validated by the
    same definitions as the FastAPI route's."""
    check_token(bearer_token(request.headers.get("authorization")), request.app.state.settings.api_tokens)
    payment_id, query = _history_params(matched, request.scope["query_string"])
    return await history(request, payment_id, query)


def _history_payment_id(scope: Scope) -> str | None:
    if scope["method"] != "GET" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    # Starlette matches {payment_id:id} against the decoded path, slashes included: so does this.
    if not (path.startswith("/payments/") and path.endswith("/events")):
        return None
    payment_id = path[len("/payments/") : -len("/events")]
    return payment_id if payment_id and events_suffix_is_literal(scope) else None


def _history_params(payment_id: str, query_string: bytes) -> tuple[str, HistoryQuery]:
    """Validated as FastAPI validates the route's parameters: a repeated parameter's last value counts,
    and every problem is reported with its location."""
    errors: list[Any] = []
    try:
        payment_id = PAYMENT_ID.validate_python(payment_id)
    except ValidationError as exc:
        errors += [{**error, "loc": ("path", "payment_id", *error["loc"])} for error in exc.errors()]
    query: HistoryQuery | None = None
    try:
        query = HistoryQuery.model_validate(
            dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
        )
    except ValidationError as exc:
        errors += [{**error, "loc": ("query", *error["loc"])} for error in exc.errors()]
    if errors or query is None:
        raise RequestValidationError(errors)
    return payment_id, query


# The history route declared above, served ahead of FastAPI's router by the table in main.py.
HISTORY_HOT_ROUTE = HotRoute(
    "GET /payments/{payment_id}/events", match=_history_payment_id, handle=hot_history
)


@router.get(
    "/payments/{payment_id:id}",
    response_model=PaymentOut,
    responses={404: PAYMENT_NOT_FOUND, 409: PAYMENT_AMBIGUOUS},
    tags=["payments"],
    summary="A payment's current state",
)
async def payment_state(
    request: Request,
    payment_id: PaymentId,
    provider: Annotated[
        str | None, provider_choice("The provider, needed only when the same id exists at more than one")
    ] = None,
) -> Payment:
    """The status follows the documented lifecycle: a late, older or lower-ranked event never moves it
    back. Amount and currency are those of the event that set the status. One indexed lookup."""
    stmt = select(Payment).where(Payment.payment_id == payment_id)
    if provider is not None:
        stmt = stmt.where(Payment.provider == provider)
    # No ORDER BY: sorting by provider would walk the primary key instead of the payment_id index.
    matches = await in_session(request, lambda session: list(session.scalars(stmt.limit(2))))
    if not matches:
        raise PaymentNotFound(f"no events stored for payment {payment_id!r}")
    if len(matches) > 1:
        names = ", ".join(sorted(match.provider for match in matches))
        raise PaymentAmbiguous(
            f"payment {payment_id!r} exists at several providers ({names}); pass ?provider="
        )
    return matches[0]


@router.get(
    "/events",
    response_model=list[EventOut],
    responses=PAGED_OK,
    tags=["events"],
    summary="Recently stored events across all payments, newest first, paged",
)
async def recent_events(
    request: Request,
    provider: ProviderFilter = None,
    event_type: EventTypeFilter = None,
    status: StatusFilter = None,
    since: FeedSince = None,
    until: FeedUntil = None,
    after: FeedAfter = None,
    limit: Limit = 100,
) -> Response:
    """In reverse order of receipt. `since`/`until` bound when this service stored the event
    (`received_at`); paging works as for a payment's events."""
    stmt = LISTED
    if after is not None:
        stmt = stmt.where(Event.id < paging.decode_feed(after))
    if provider is not None:
        stmt = stmt.where(Event.provider == provider)
    if event_type is not None:
        stmt = stmt.where(Event.event_type == event_type)
    if status is not None:
        stmt = stmt.where(Event.status == status)
    if since is not None:
        stmt = stmt.where(Event.received_at >= since)
    if until is not None:
        stmt = stmt.where(Event.received_at < until)
    stmt = stmt.order_by(Event.id.desc()).limit(limit + 1)
    rows = await on_connection(request, lambda connection: connection.execute(stmt).all())
    return listed_page(request, rows, limit=limit, kind=paging.FEED)


@router.get(
    "/events/{provider}/{event_id:id}",
    response_model=EventDetail,
    responses={404: EVENT_NOT_FOUND},
    tags=["events"],
    summary="One stored event in full, with its raw body and headers",
)
async def stored_event(request: Request, provider: ProviderName, event_id: EventId) -> EventDetail:
    """`raw_body` is the body exactly as received: its text when it is UTF-8 (every JSON delivery is),
    else base64 with `raw_body_encoding: "base64"`."""
    stmt = select(Event).where(Event.provider == provider, Event.event_id == event_id)
    event = await in_session(request, lambda session: session.scalars(stmt).one_or_none())
    if event is None:
        raise EventNotFound(f"no event {event_id!r} from provider {provider!r}")
    return detail(event)


def detail(event: Event) -> EventDetail:
    try:
        raw_body, encoding = event.raw_body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        raw_body, encoding = base64.b64encode(event.raw_body).decode("ascii"), "base64"
    return EventDetail.model_validate(
        {
            **EventOut.model_validate(event).model_dump(),
            "id_derived": event.id_derived,
            "raw_body": raw_body,
            "raw_body_encoding": encoding,
            "headers": shown_headers(event.headers),
            "delivery_count": event.delivery_count,
            "last_delivered_at": event.last_delivered_at,
        }
    )


def shown_headers(headers: dict[str, str]) -> dict[str, str]:
    """The stored headers with every signature replaced by REDACTED: a reader needs to see that one was
    sent, not its value, which a forger could present again (PayPal's signs only a CRC32 of the body)."""
    return {name: REDACTED if name in SIGNATURE_HEADERS else value for name, value in headers.items()}
