"""The read API for ops: payment state, payment history and stored events, token-protected.

Each route does all of its database work in one call to the thread pool (`in_session`): one Session
per request, opened, used and closed there, so a read never blocks the event loop. (Sync routes and a
yield dependency measured at four thread hand-offs per request, most of a read's cost.) Lists are
keyset-paged (see paging.py): every page is one index range scan, however many events are stored, and
they read only the listed columns, never the raw bodies.
"""

import base64
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import Select, literal, select, tuple_
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

import paging
from auth import require_token
from errors import ApiError, EventNotFound, PaymentNotFound, StorageUnavailable
from models import Event, Payment, UTCDateTime
from read_params import (
    PROVIDER_NAME,
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
)
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


class PaymentAmbiguous(ApiError):
    status_code = 409
    code = "payment_ambiguous"


async def in_session(request: Request, work: Callable[[Session], T]) -> T:
    """Run `work` with a fresh Session on the thread pool; unreachable storage is the documented 503."""

    def run() -> T:
        with request.app.state.sessionmaker() as session:
            return work(session)

    try:
        return await run_in_threadpool(run)
    except (OperationalError, InterfaceError, PoolTimeout) as exc:
        # Unreachable, timed out or pool exhausted: the documented 503, not an internal error.
        raise StorageUnavailable("storage is unavailable; retry later") from exc


# What a listed event shows: no raw body or headers, which can be large (GET /events/{provider}/{id}).
LISTED_COLUMNS = (
    Event.id,
    Event.event_id,
    Event.provider,
    Event.event_type,
    Event.payment_id,
    Event.status,
    Event.provider_status,
    Event.amount,
    Event.currency,
    Event.occurred_at,
    Event.received_at,
)
# Built once: constructing a statement costs more than running a cached one.
LISTED = select(*LISTED_COLUMNS)

# Webhook and health routes live on other routers: only these need a token.
router = APIRouter(dependencies=[Depends(require_token)], responses=READ_RESPONSES)

PAGED_OK: dict[int | str, dict[str, Any]] = {
    200: {"description": "A JSON array, possibly empty", "headers": PAGED_LIST_HEADERS}
}


async def _page(
    request: Request, response: Response, stmt: Select[*tuple[Any, ...]], *, limit: int, kind: str
) -> list[Any]:
    """Run `stmt` for one page; when more rows remain, point the Link header at the next page."""
    rows = await in_session(request, lambda session: list(session.execute(stmt.limit(limit + 1))))
    if len(rows) <= limit:
        return rows
    rows = rows[:limit]
    last = rows[-1]
    key = (last.occurred_at, last.id) if kind == paging.HISTORY else (last.id,)
    response.headers["Link"] = paging.next_link(request, paging.encode(kind, *key))
    return rows


@router.get(
    "/payments/{payment_id}/events",
    response_model=list[EventOut],
    responses=PAGED_OK,
    tags=["payments"],
    summary="A payment's events, oldest first, paged",
)
async def payment_events(
    request: Request,
    response: Response,
    payment_id: PaymentId,
    provider: ProviderFilter = None,
    event_type: EventTypeFilter = None,
    since: HistorySince = None,
    until: HistoryUntil = None,
    after: HistoryAfter = None,
    limit: Limit = 100,
) -> list[Any]:
    """Chronological by `occurred_at`, ties in order of receipt. An unknown payment gives `[]`.

    At most `limit` events; when more remain, the `Link` header carries the next page's URL (the same
    query with `after` set). Follow it until it is absent to walk the whole history.
    """
    stmt = LISTED.where(Event.payment_id == payment_id)
    if after is not None:
        occurred_at, row_id = paging.decode_history(after)
        # A row-value comparison: both databases turn it into a range on the history index.
        stmt = stmt.where(
            tuple_(Event.occurred_at, Event.id) > tuple_(literal(occurred_at, UTCDateTime()), literal(row_id))
        )
    if provider is not None:
        stmt = stmt.where(Event.provider == provider)
    if event_type is not None:
        stmt = stmt.where(Event.event_type == event_type)
    if since is not None:
        stmt = stmt.where(Event.occurred_at >= since)
    if until is not None:
        stmt = stmt.where(Event.occurred_at < until)
    stmt = stmt.order_by(Event.occurred_at, Event.id)
    return await _page(request, response, stmt, limit=limit, kind=paging.HISTORY)


@router.get(
    "/payments/{payment_id}",
    response_model=PaymentOut,
    responses={404: PAYMENT_NOT_FOUND, 409: PAYMENT_AMBIGUOUS},
    tags=["payments"],
    summary="A payment's current state",
)
async def payment_state(
    request: Request,
    payment_id: PaymentId,
    provider: Annotated[
        str | None,
        Query(
            max_length=32,
            pattern=PROVIDER_NAME,
            description="The provider, needed only when the same id exists at more than one",
            examples=["razorpay"],
        ),
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
    response: Response,
    provider: ProviderFilter = None,
    event_type: EventTypeFilter = None,
    status: StatusFilter = None,
    since: FeedSince = None,
    until: FeedUntil = None,
    after: FeedAfter = None,
    limit: Limit = 100,
) -> list[Any]:
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
    stmt = stmt.order_by(Event.id.desc())
    return await _page(request, response, stmt, limit=limit, kind=paging.FEED)


@router.get(
    "/events/{provider}/{event_id}",
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
            "headers": event.headers,
        }
    )
