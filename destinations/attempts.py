"""The dispatcher's SQL: picking what is due, recording each attempt with its delivery's next state in
one transaction, and keeping the planner's statistics fresh. Plain functions over a Connection. (Events
are owed by a trigger as they are stored: destinations/filters.py.)"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    ColumnClause,
    ColumnElement,
    Connection,
    Executable,
    Float,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    all_,
    bindparam,
    exists,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, aliased

from destinations.file import Destination
from forwarding.messages import StoredEvent
from forwarding.outbox import event_columns, stored_event
from ingest.sinks import json_time, postgres_json_rows, sqlite_json_rows
from models import DestinationAttempt, DestinationDelivery, DestinationStatus, Event, UTCDateTime

if TYPE_CHECKING:
    # For annotations only: the sender's HTTP client (aiohttp) is not imported by what reads or records
    # attempts without sending (`python -m cli`, whose every start pays for what it imports).
    from destinations.sender import Result

PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"
# 'pending' written into the SQL, not bound: a prepared statement's generic plan can then still prove
# the partial indexes' `state = 'pending'` and use them.
PENDING_SQL: Final[ColumnClause[str]] = literal_column(f"'{PENDING}'")


@dataclass(frozen=True, slots=True)
class Due:
    """A delivery to attempt now, with its event."""

    delivery_id: int
    attempts: int
    round_attempts: int
    queued_at: datetime
    event: StoredEvent


@dataclass(frozen=True, slots=True)
class Recorded:
    """One attempt's outcome, and where it leaves its delivery (`next_attempt_at` None: not pending)."""

    due: Due
    attempted_at: datetime
    result: Result
    state: str
    next_attempt_at: datetime | None


def _insert(connection: Connection) -> Any:
    return postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert


def ensure_status(connection: Connection, names: Iterable[str], *, now: datetime) -> None:
    rows = [{"name": name, "paused": False, "updated_at": now} for name in names]
    if rows:
        connection.execute(
            _insert(connection)(DestinationStatus).on_conflict_do_nothing(index_elements=["name"]), rows
        )


def statistics_stale(connection: Connection) -> bool:
    """PostgreSQL: whether the deliveries table has changed by as many rows as it held at its last
    ANALYZE (1,000 at least) since then: autovacuum's rule for analyze, with a threshold a backlog
    reaches in seconds rather than hours."""
    if connection.dialect.name != "postgresql":
        return False
    stale = connection.execute(
        text(
            """
            SELECT s.n_mod_since_analyze >= greatest(1000, c.reltuples)
            FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
            WHERE s.relid = 'destination_deliveries'::regclass
            """
        )
    ).scalar()
    return bool(stale)


def refresh_statistics(connection: Connection) -> None:
    """Have PostgreSQL's planner see the deliveries table as it is now. Owed rows arrive in bursts
    (a backlog, a replay) far faster than autovacuum's analyze follows; planned from the statistics of
    a much smaller table, the due and ordering lookups chose the wrong index and read every pending row
    for each candidate (BENCHMARKS.md, "Destinations"). SQLite plans by its rules of thumb unless
    ANALYZE has been run, and they already pick the payment's index."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("ANALYZE destination_deliveries"))


def is_paused(connection: Connection, name: str) -> bool:
    paused = connection.execute(
        select(DestinationStatus.paused).where(DestinationStatus.name == name)
    ).scalar_one_or_none()
    return bool(paused)


# (id, attempts, round_attempts, queued_at, event_row_id, next_attempt_at)
Candidates = Select[int, int, int, datetime, int, datetime]


def _none_of(
    dialect_name: str, column: InstrumentedAttribute[int], ids: Iterable[int], name: str
) -> ColumnElement[bool]:
    """`column` is none of `ids`, as one parameter (an array on PostgreSQL, a JSON array on SQLite): the
    statement's text stays the same however many there are, so the driver parses it once, where a
    list expanded into one parameter each was a new statement at every read."""
    listed = sorted(ids)
    if dialect_name == "postgresql":
        return column != all_(bindparam(name, listed, type_=ARRAY(BigInteger)))
    values: Select[Any] = select(literal_column("value")).select_from(
        func.json_each(bindparam(name, orjson.dumps(listed).decode(), type_=String()))
    )
    return column.not_in(values.scalar_subquery())


def _candidates(
    dialect_name: str, destination: Destination, *, claimed: Collection[int], finished: Collection[int]
) -> Candidates:
    """The destination's pending deliveries that may be sent when their time comes: not claimed by the
    worker already and, with ordering on, each payment's earliest owed event only (later ones wait until
    it is delivered or dead). Both partial indexes of the pending rows serve it. `finished`: deliveries
    the worker has delivered or given up but not yet recorded, which no later event waits for (the
    order is the order of sending, and they were sent), so that a payment's next event goes out
    without waiting for the record.

    The ordering test is a scalar subquery, the payment's first pending id, ordered as its index is:
    PostgreSQL cannot turn it into a join, so it stays one probe of `ix_destination_deliveries_payment`
    per candidate, however large the backlog and whatever the statistics say. Written as NOT EXISTS,
    it was planned, on a table grown since its last ANALYZE, as a scan of every pending row of the
    destination per candidate (BENCHMARKS.md, "Destinations")."""
    owed = DestinationDelivery
    query = select(
        owed.id, owed.attempts, owed.round_attempts, owed.queued_at, owed.event_row_id, owed.next_attempt_at
    ).where(owed.destination == destination.name, owed.state == PENDING_SQL)
    if claimed:
        query = query.where(_none_of(dialect_name, owed.id, claimed, "claimed"))
    if destination.ordered:
        earlier = aliased(DestinationDelivery)
        waited_for = select(earlier.id).where(
            earlier.destination == owed.destination,
            earlier.provider == owed.provider,
            earlier.payment_id == owed.payment_id,
            earlier.state == PENDING_SQL,
        )
        if finished:
            waited_for = waited_for.where(_none_of(dialect_name, earlier.id, finished, "finished"))
        first_owed = (
            waited_for.order_by(earlier.destination, earlier.provider, earlier.payment_id, earlier.id)
            .limit(1)
            .correlate(owed)
            .scalar_subquery()
        )
        # A payment-less event waits for nothing: its subquery finds no row, and coalesce lets it through.
        # `<=` means `==` here (the payment's first pending id is never above a pending row's own), but
        # PostgreSQL guesses an inequality passes a third of the rows where it guesses an equality with
        # an expression passes 0.5%: with that guess it walks the due index in order and stops at the
        # limit, instead of reading every due row of the destination and sorting them
        # (BENCHMARKS.md, "Destinations").
        query = query.where(owed.id <= func.coalesce(first_owed, owed.id))
    return query


def due(
    connection: Connection,
    destination: Destination,
    *,
    now: datetime,
    limit: int,
    claimed: Collection[int] = (),
    finished: Collection[int] = (),
    unless_paused: bool = False,
) -> tuple[list[Due], int]:
    """Up to `limit` deliveries to send now, oldest retry time first, with their events (read after the
    deliveries are chosen); and how many were given up because their event is gone (the caller
    commits). With `unless_paused`, none while the destination is paused: the worker's read is then
    one statement whenever something is due."""
    owed = DestinationDelivery
    candidates = _candidates(connection.dialect.name, destination, claimed=claimed, finished=finished)
    if unless_paused:
        candidates = candidates.where(
            ~exists().where(DestinationStatus.name == destination.name, DestinationStatus.paused)
        )
    chosen = (
        candidates.where(owed.next_attempt_at <= now)
        .order_by(owed.next_attempt_at, owed.id)
        .limit(limit)
        .subquery("chosen")
    )
    query = (
        select(
            chosen.c.id,
            chosen.c.attempts,
            chosen.c.round_attempts,
            chosen.c.queued_at,
            *event_columns(False).selected_columns,
        )
        .outerjoin(Event, Event.id == chosen.c.event_row_id)
        .order_by(chosen.c.next_attempt_at, chosen.c.id)
    )
    rows = connection.execute(query).all()
    # An event that retention deleted while it was owed cannot be sent: it is dead, so that the
    # payment's later events do not wait behind it for ever.
    purged = [row[0] for row in rows if row.provider is None]
    if purged:
        give_up(connection, purged, now=now)
    due = [
        Due(row[0], row[1], row[2], row[3], stored_event(row, 4)) for row in rows if row.provider is not None
    ]
    return due, len(purged)


def give_up(connection: Connection, delivery_ids: list[int], *, now: datetime) -> None:
    connection.execute(
        update(DestinationDelivery)
        .where(DestinationDelivery.id.in_(delivery_ids), DestinationDelivery.state == PENDING)
        .values(state=DEAD, updated_at=now)
    )


def next_due_at(
    connection: Connection,
    destination: Destination,
    *,
    claimed: Collection[int] = (),
    finished: Collection[int] = (),
) -> datetime | None:
    """When the next delivery that is not waiting behind another becomes due (to sleep until then)."""
    owed = DestinationDelivery
    query = (
        _candidates(connection.dialect.name, destination, claimed=claimed, finished=finished)
        .order_by(owed.next_attempt_at, owed.id)
        .limit(1)
    )
    row = connection.execute(query).first()
    return None if row is None else row.next_attempt_at


# One finished attempt as `record` sends it, a JSON object per attempt in one parameter: the attempt's
# row, and where it leaves its delivery.
RECORDED: Final = Table(
    "recorded",
    MetaData(),
    Column("delivery_id", BigInteger),
    Column("provider", String(32)),
    Column("event_id", String(255)),
    Column("attempt", Integer),
    Column("attempted_at", UTCDateTime()),
    Column("outcome", String(16)),
    Column("status_code", Integer),
    Column("error", String(32)),
    Column("latency_ms", Float),
    Column("response_body", String()),
    Column("state", String(16)),
    Column("round_attempts", Integer),
    Column("next_attempt_at", UTCDateTime()),
)


def _record_statements(dialect_name: str) -> tuple[Executable, ...]:
    """Recording a batch of attempts: the attempts inserted and their deliveries moved on, set-based
    from one JSON parameter read as the batch writer reads its rows (ingest.sinks), rather than a
    statement execution per row: on the service's process, SQLAlchemy's and the driver's work per row
    cost more than the rows (BENCHMARKS.md, "Destinations"). PostgreSQL does both in one statement;
    SQLite, which has no data-modifying CTEs, in two, each starting with its verb: Python's sqlite3
    opens the transaction before a statement only when it starts with INSERT, UPDATE, DELETE or
    REPLACE."""
    postgres = dialect_name == "postgresql"
    rows = postgres_json_rows(list(RECORDED.c)) if postgres else sqlite_json_rows(list(RECORDED.c))
    done = rows.cte("done") if postgres else rows.subquery("done")
    logged_columns = [column.name for column in DestinationAttempt.__table__.c if column.name != "id"]
    logged = (postgresql.insert if postgres else sqlite.insert)(DestinationAttempt).from_select(
        logged_columns,
        select(*(bindparam("name") if name == "destination" else done.c[name] for name in logged_columns)),
    )
    owed = DestinationDelivery
    moved = (
        update(owed)
        .where(owed.id == done.c.delivery_id)
        .values(
            state=done.c.state,
            attempts=done.c.attempt,
            round_attempts=done.c.round_attempts,
            next_attempt_at=done.c.next_attempt_at,
            updated_at=done.c.attempted_at,
        )
    )
    return (moved.add_cte(logged.cte("logged")),) if postgres else (logged, moved)


_RECORD: Final = {name: _record_statements(name) for name in ("postgresql", "sqlite")}


def record(connection: Connection, name: str, recorded: Sequence[Recorded]) -> None:
    """Every attempt, and its delivery's next state, and the destination's last success and failure."""
    if not recorded:
        return
    moment = json_time(connection.dialect.name)
    rows = [
        {
            "delivery_id": item.due.delivery_id,
            "provider": item.due.event.provider,
            "event_id": item.due.event.event_id,
            "attempt": item.due.attempts + 1,
            "attempted_at": moment(item.attempted_at),
            "outcome": "delivered" if item.result.delivered else "failed",
            "status_code": item.result.status_code,
            "error": item.result.error,
            "latency_ms": item.result.latency_ms,
            "response_body": item.result.body,
            "state": item.state,
            "round_attempts": item.due.round_attempts + 1,
            "next_attempt_at": moment(item.next_attempt_at or item.attempted_at),
        }
        for item in recorded
    ]
    parameters = {"rows": orjson.dumps(rows).decode(), "name": name}
    for statement in _RECORD[connection.dialect.name]:
        connection.execute(statement, parameters)
    successes = [item.attempted_at for item in recorded if item.result.delivered]
    failures = [item for item in recorded if not item.result.delivered]
    values: dict[str, Any] = {"updated_at": max(item.attempted_at for item in recorded)}
    if successes:
        values["last_success_at"] = max(successes)
    if failures:
        last = max(failures, key=lambda item: item.attempted_at)
        values["last_failure_at"] = last.attempted_at
        values["last_error"] = describe(last.result)
    connection.execute(update(DestinationStatus).where(DestinationStatus.name == name).values(**values))


def describe(result: Result) -> str:
    """An attempt's failure in a few words: `http 503`, `timeout`, `connect_error`."""
    if result.error == "http_status":
        return f"http {result.status_code}"
    return result.error or "delivered"
