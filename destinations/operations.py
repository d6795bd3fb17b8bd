"""What an operator reads and does, through the API and `python -m cli destinations`: the destinations'
state, an event's attempts, the dead list, replay, pause and resume. Plain functions over a Connection,
each in the caller's transaction."""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    update,
)

from destinations.attempts import DEAD, DELIVERED, PENDING, ensure_status
from destinations.file import Destination
from models import (
    DestinationAttempt,
    DestinationDelivery,
    DestinationReplay,
    DestinationStatus,
    Event,
    UTCDateTime,
)

Owed = DestinationDelivery


class ReplayFilter(BaseModel):
    """Which stored events to queue again for a destination. Times are the events' receipt times."""

    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    provider: str | None = Field(default=None, max_length=32)
    event_type: str | None = Field(
        default=None, max_length=255, description="`*` matches any run of characters"
    )
    status: str | None = Field(default=None, max_length=32)
    dead_only: bool = Field(default=False, description="only events that went dead for this destination")

    def key(self) -> str:
        document = self.model_dump(mode="json")
        return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    replay_id: int
    queued: int
    repeated: bool  # the same filter's replay was still running: nothing queued again


def state_of(status: DestinationStatus | None) -> str:
    if status is not None and status.paused:
        return "paused"
    failed = status.last_failure_at if status is not None else None
    succeeded = status.last_success_at if status is not None else None
    if failed is not None and (succeeded is None or failed > succeeded):
        return "failing"
    return "healthy"


def overview(connection: Connection, destinations: list[Destination]) -> list[dict[str, Any]]:
    names = [destination.name for destination in destinations]
    statuses = {
        row.name: row
        for row in connection.execute(
            select(DestinationStatus).where(DestinationStatus.name.in_(names))
        ).all()
    }
    counts = {
        (name, state): count
        for name, state, count in connection.execute(
            select(Owed.destination, Owed.state, func.count())
            .where(Owed.destination.in_(names), Owed.state.in_([PENDING, DEAD]))
            .group_by(Owed.destination, Owed.state)
        ).all()
    }
    listed = []
    for destination in destinations:
        status: Any = statuses.get(destination.name)
        listed.append(
            {
                "name": destination.name,
                "host": destination.host,
                "state": state_of(status),
                "backlog": counts.get((destination.name, PENDING), 0),
                "dead": counts.get((destination.name, DEAD), 0),
                "last_success_at": status.last_success_at if status else None,
                "last_failure_at": status.last_failure_at if status else None,
                "last_error": status.last_error if status else None,
            }
        )
    return listed


def event_stored(connection: Connection, provider: str, event_id: str) -> bool:
    query = select(Event.id).where(Event.provider == provider, Event.event_id == event_id)
    return connection.execute(query).first() is not None


def attempts_of(connection: Connection, provider: str, event_id: str) -> list[dict[str, Any]]:
    tried = DestinationAttempt
    rows = connection.execute(
        select(
            tried.destination,
            tried.attempt,
            tried.attempted_at,
            tried.outcome,
            tried.status_code,
            tried.error,
            tried.latency_ms,
            tried.response_body,
        )
        .where(tried.provider == provider, tried.event_id == event_id)
        .order_by(tried.id)
    ).all()
    return [dict(row._mapping) for row in rows]


def dead_page(connection: Connection, name: str, *, after: int | None, limit: int) -> list[dict[str, Any]]:
    """Up to limit + 1 dead events in the order they were owed, after the row `after`."""
    last = (
        select(DestinationAttempt)
        .where(DestinationAttempt.delivery_id == Owed.id)
        .order_by(DestinationAttempt.id.desc())
        .limit(1)
    )
    query = (
        select(
            Owed.id,
            Owed.provider,
            Owed.event_id,
            Owed.payment_id,
            Owed.attempts,
            Owed.updated_at.label("dead_at"),
            last.with_only_columns(DestinationAttempt.status_code)
            .scalar_subquery()
            .label("last_status_code"),
            last.with_only_columns(DestinationAttempt.error).scalar_subquery().label("last_error"),
        )
        .where(Owed.destination == name, Owed.state == DEAD, Owed.id > (after or 0))
        .order_by(Owed.id)
        .limit(limit + 1)
    )
    return [dict(row._mapping) for row in connection.execute(query).all()]


def set_paused(connection: Connection, name: str, *, paused: bool, now: datetime) -> None:
    ensure_status(connection, [name], now=now)
    connection.execute(
        update(DestinationStatus).where(DestinationStatus.name == name).values(paused=paused, updated_at=now)
    )


def like(pattern: str) -> str:
    """A `*` wildcard as a LIKE pattern (with `\\` escaping LIKE's own wildcards)."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def _matching(destination: Destination, wanted: ReplayFilter, *, own_filters: bool) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = []
    if wanted.since is not None:
        conditions.append(Event.received_at >= wanted.since)
    if wanted.until is not None:
        conditions.append(Event.received_at < wanted.until)
    if wanted.provider is not None:
        conditions.append(Event.provider == wanted.provider)
    if wanted.event_type is not None:
        conditions.append(Event.event_type.like(like(wanted.event_type), escape="\\"))
    if wanted.status is not None:
        conditions.append(Event.status == wanted.status)
    if own_filters:
        if destination.providers is not None:
            conditions.append(Event.provider.in_(destination.providers))
        if destination.statuses is not None:
            conditions.append(Event.status.in_(destination.statuses))
        if destination.event_types is not None:
            conditions.append(
                or_(*(Event.event_type.like(like(p), escape="\\") for p in destination.event_types))
            )
    return and_(true(), *conditions)


def replay(
    connection: Connection, destination: Destination, wanted: ReplayFilter, *, now: datetime
) -> ReplayOutcome:
    """Queue the matching events again: dead ones (and, unless dead_only, delivered ones and matching
    events never owed to this destination) become pending with a fresh retry budget. A replay of the same
    filter whose events are still pending is answered again instead of queueing twice."""
    name = destination.name
    if connection.dialect.name == "postgresql":
        # The per-statement timeout protects request latency; a replay of a long outage may take longer.
        connection.execute(text("SET LOCAL statement_timeout = 0"))
    # Replays of one destination one at a time: the status row's write lock is taken first.
    touch = update(DestinationStatus).where(DestinationStatus.name == name).values(updated_at=now)
    ensure_status(connection, [name], now=now)
    connection.execute(touch)
    key = wanted.key()
    earlier = connection.execute(
        select(DestinationReplay.id, DestinationReplay.queued)
        .where(DestinationReplay.destination == name, DestinationReplay.filter_key == key)
        .order_by(DestinationReplay.id.desc())
        .limit(1)
    ).first()
    if earlier is not None:
        running = connection.execute(
            select(exists().where(Owed.replay_id == earlier.id, Owed.state == PENDING))
        ).scalar_one()
        if running:
            return ReplayOutcome(earlier.id, earlier.queued, repeated=True)
    replay_id: int = connection.execute(
        insert(DestinationReplay)
        .values(
            destination=name, filter_key=key, filter=wanted.model_dump(mode="json"), queued=0, created_at=now
        )
        .returning(DestinationReplay.id)
    ).scalar_one()
    fresh = {
        "state": PENDING,
        "round_attempts": 0,
        "queued_at": now,
        "next_attempt_at": now,
        "updated_at": now,
        "replay_id": replay_id,
    }
    again = [DEAD] if wanted.dead_only else [DEAD, DELIVERED]
    matching = select(Event.id).where(_matching(destination, wanted, own_filters=False))
    queued = connection.execute(
        update(Owed)
        .where(Owed.destination == name, Owed.state.in_(again), Owed.event_row_id.in_(matching))
        .values(**fresh)
    ).rowcount
    if not wanted.dead_only:
        at = literal(now, UTCDateTime())
        never_owed = (
            select(
                literal(name),
                Event.id,
                Event.provider,
                Event.event_id,
                Event.payment_id,
                literal(PENDING),
                literal(0),
                literal(0),
                at,
                at,
                at,
                literal(replay_id),
            )
            .where(
                _matching(destination, wanted, own_filters=True),
                ~exists().where(Owed.destination == name, Owed.event_row_id == Event.id),
            )
            .order_by(Event.id)
        )
        columns = [
            "destination",
            "event_row_id",
            "provider",
            "event_id",
            "payment_id",
            "state",
            "attempts",
            "round_attempts",
            "queued_at",
            "next_attempt_at",
            "updated_at",
            "replay_id",
        ]
        # preserve_rowcount: SQLAlchemy reports an INSERT's rowcount only when asked (-1 otherwise).
        added = insert(Owed).from_select(columns, never_owed).execution_options(preserve_rowcount=True)
        queued += connection.execute(added).rowcount
    connection.execute(
        update(DestinationReplay).where(DestinationReplay.id == replay_id).values(queued=queued)
    )
    return ReplayOutcome(replay_id, queued, repeated=False)
