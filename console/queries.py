"""The console's reads: Core statements on the read API's reader threads, never a raw body in a list."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, literal, select, tuple_

from api.reads import LISTED
from models import Event, Payment
from providers import ADAPTERS

PAGE = 50
TIMELINE_MAX = 5000  # events drawn on one timeline; a longer history says so and links the API
PROVIDERS = tuple(adapter.name for adapter in ADAPTERS)


@dataclass(frozen=True, slots=True)
class FeedFilters:
    provider: str | None = None
    event_type: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def feed(connection: Connection, filters: FeedFilters, *, before: int | None) -> list[Any]:
    """Up to PAGE + 1 events, newest first, after the event `before` when given.

    Without a time range: by row id, a walk down the primary key. With one: by (received_at, id), a walk
    down the received_at index (whose entries end in the row id), since by row id the database would
    read the whole table to sort the window's rows (BENCHMARKS.md, "Ops console pages")."""
    stmt = LISTED
    timed = filters.since is not None or filters.until is not None
    if before is not None and timed:
        anchor = select(Event.received_at).where(Event.id == before).scalar_subquery()
        stmt = stmt.where(tuple_(Event.received_at, Event.id) < tuple_(anchor, literal(before)))
    elif before is not None:
        stmt = stmt.where(Event.id < before)
    if filters.provider is not None:
        stmt = stmt.where(Event.provider == filters.provider)
    if filters.event_type is not None:
        stmt = stmt.where(Event.event_type == filters.event_type)
    if filters.status is not None:
        stmt = stmt.where(Event.status == filters.status)
    if filters.since is not None:
        stmt = stmt.where(Event.received_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(Event.received_at < filters.until)
    order = (Event.received_at.desc(), Event.id.desc()) if timed else (Event.id.desc(),)
    return list(connection.execute(stmt.order_by(*order).limit(PAGE + 1)).all())


def payments_named(connection: Connection, payment_id: str) -> list[Any]:
    stmt = select(Payment.__table__).where(Payment.payment_id == payment_id).limit(len(PROVIDERS) + 1)
    return list(connection.execute(stmt).all())


def events_named(connection: Connection, event_id: str) -> list[Any]:
    """Stored events with this id at any provider: the unique index's (provider, event_id) ranges."""
    stmt = select(Event.provider, Event.event_id).where(
        Event.provider.in_(PROVIDERS), Event.event_id == event_id
    )
    return list(connection.execute(stmt.limit(len(PROVIDERS))).all())


def timeline_events(connection: Connection, provider: str, payment_id: str) -> list[Any]:
    """The payment's events in the provider's time (ties in receipt order): the history index's range,
    each with its delivery count and last delivery."""
    stmt = (
        LISTED.add_columns(Event.delivery_count, Event.last_delivered_at)
        .where(Event.payment_id == payment_id, Event.provider == provider)
        .order_by(Event.occurred_at, Event.id)
        .limit(TIMELINE_MAX + 1)
    )
    return list(connection.execute(stmt).all())


def stored_event(connection: Connection, provider: str, event_id: str) -> Any | None:
    stmt = select(Event.__table__).where(Event.provider == provider, Event.event_id == event_id)
    return connection.execute(stmt).one_or_none()


def hourly_counts(connection: Connection, *, since: datetime) -> list[tuple[str, datetime, int]]:
    """(provider, hour, events stored) for every hour since `since`: a range of the received_at index."""
    if connection.dialect.name == "postgresql":
        hour: Any = func.date_trunc("hour", func.timezone("UTC", Event.received_at))
    else:  # SQLite keeps naive UTC text
        hour = func.strftime("%Y-%m-%d %H:00:00", Event.received_at)
    stmt = (
        select(Event.provider, hour.label("hour"), func.count())
        .where(Event.received_at >= since)
        .group_by(Event.provider, hour)
    )
    counts = []
    for provider, bucket, count in connection.execute(stmt):
        start = bucket if isinstance(bucket, datetime) else datetime.fromisoformat(bucket)
        counts.append((provider, start.replace(tzinfo=None), int(count)))
    return counts
