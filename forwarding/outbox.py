"""The events table as the outbox: what the relay publishes next, and its durable cursor.

PostgreSQL assigns ids before commit, so concurrent batches commit out of id order. The relay reads
forward_batches (models.FORWARD_TRIGGER_DDL) in transaction id order, and only batches whose
transaction id is below the oldest transaction still running: every such transaction has ended, so the
batches visible now are all there will ever be below that id, and a batch committed later has a greater
transaction id, beyond the cursor. SQLite has one writer at a time: its ids are commit order.

Every method runs on the relay's one connection, one call at a time (the relay calls them from a
thread). On PostgreSQL that connection also holds the relay's advisory lock: exactly one relay
publishes, and when its process dies the server drops the connection and the lock with it.
"""

import fcntl
import os
import socket
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Final, cast

import orjson
from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Row,
    Select,
    Table,
    column,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from database import write_when_free
from forwarding.messages import StoredEvent
from forwarding.states import PaymentKey, PaymentState
from ingest.sinks import json_time, postgres_json_rows, sqlite_json_rows
from models import Event, ForwardBatch, ForwardCursor, ForwardPaymentState

# The advisory lock's first key (the second is the stream's): 'FW'.
LOCK_CLASS: Final = 0x4657

EVENT_COLUMNS: Final = (
    "id",
    "provider",
    "event_id",
    "event_type",
    "payment_id",
    "status",
    "provider_status",
    "amount",
    "currency",
    "occurred_at",
    "received_at",
)
_EVENTS: Final = cast(Table, Event.__table__)
_STATES: Final = cast(Table, ForwardPaymentState.__table__)
# PostgreSQL: the next batches after the stream's cursor, below the horizon, up to :limit events; their
# events, and the published state of each event's payment, in commit order. One statement, one round
# trip. Every row is a listed event id: an event purged since it was recorded comes back with NULL
# columns. The joins look rows up by key (the primary keys). Sequential scans are not turned off for
# this connection as they are for the writer's: its other statements (the cursor's DELETE) would then
# cost past jit_above_cost, and every cycle would wait for JIT compilation (BENCHMARKS.md, "Forwarding
# to NATS").
_PENDING: Final = text(
    """
    WITH batches AS (
        SELECT txid, seq, event_ids FROM (
            SELECT b.txid, b.seq, b.event_ids,
                   sum(cardinality(b.event_ids)) OVER (ORDER BY b.txid, b.seq)
                       - cardinality(b.event_ids) AS before
            FROM forward_batches b JOIN forward_cursor c ON c.stream = :stream
            WHERE (b.txid, b.seq) > (c.txid, c.seq)
              AND b.txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
        ) AS pending
        WHERE before < :limit
    )
    SELECT batches.txid, batches.seq, listed.id AS listed_id,
           e.id, e.provider, e.event_id, e.event_type, e.payment_id, e.status, e.provider_status,
           e.amount, e.currency, e.occurred_at, e.received_at,
           CASE WHEN :raw_body THEN e.raw_body END AS raw_body,
           s.status AS state_status, s.status_rank AS state_rank,
           s.status_occurred_at AS state_occurred_at, s.status_event_row_id AS state_event_row_id
    FROM batches
    CROSS JOIN LATERAL unnest(batches.event_ids) WITH ORDINALITY AS listed(id, position)
    LEFT JOIN webhook_events e ON e.id = listed.id
    LEFT JOIN forward_payment_states s ON s.provider = e.provider AND s.payment_id = e.payment_id
    ORDER BY batches.txid, batches.seq, listed.position
    """
).columns(
    column("txid", BigInteger),
    column("seq", BigInteger),
    column("listed_id", BigInteger),
    *(_EVENTS.c[name] for name in EVENT_COLUMNS),
    _EVENTS.c.raw_body,
    column("state_status", _STATES.c.status.type),
    column("state_rank", _STATES.c.status_rank.type),
    column("state_occurred_at", _STATES.c.status_occurred_at.type),
    column("state_event_row_id", _STATES.c.status_event_row_id.type),
)


_LOCK_CURSORS: Final = text("SELECT 1 FROM forward_cursor ORDER BY stream FOR UPDATE")


# The payments' published states moved by a cycle, upserted set-based from one JSON parameter read as
# the batch writer reads its rows (ingest.sinks): as an execution per row (SQLAlchemy's executemany) it
# was the relay's costliest step, a new payment per event under load (BENCHMARKS.md, "Forwarding to
# NATS").
def _move_states(dialect_name: str) -> postgresql.Insert | sqlite.Insert:
    columns = list(_STATES.c)
    names = [column.name for column in columns]
    if dialect_name == "postgresql":
        insert: postgresql.Insert | sqlite.Insert = postgresql.insert(_STATES).from_select(
            names, postgres_json_rows(columns)
        )
    else:
        insert = sqlite.insert(_STATES).from_select(names, sqlite_json_rows(columns))
    return insert.on_conflict_do_update(
        index_elements=["provider", "payment_id"],
        set_={name: insert.excluded[name] for name in names if name not in ("provider", "payment_id")},
    )


_MOVE_STATES: Final = {name: _move_states(name) for name in ("postgresql", "sqlite")}


@dataclass(frozen=True, slots=True)
class Position:
    """Everything up to here is in the stream: (txid, seq) of forward_batches on PostgreSQL, the
    event row id on SQLite (where txid and seq stay 0)."""

    txid: int
    seq: int
    event_row_id: int


@dataclass(frozen=True, slots=True)
class Pending:
    events: list[StoredEvent]
    end: Position  # the cursor once they are all published
    # The published state of each payment the events touch, for those that have one.
    states: dict[PaymentKey, PaymentState] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Status:
    lag_events: int
    oldest_unpublished: datetime | None
    cursor: Position | None
    events_published: int
    updated_at: datetime | None


def _states_parameter(moved: dict[PaymentKey, PaymentState], dialect_name: str) -> str:
    moment = json_time(dialect_name)
    return orjson.dumps(
        [
            {
                "provider": provider,
                "payment_id": payment_id,
                "status": state.status,
                "status_rank": state.order[0],
                "status_occurred_at": moment(state.order[1]),
                "status_event_row_id": state.order[2],
            }
            for (provider, payment_id), state in sorted(moved.items())
        ]
    ).decode()


def lock_key(stream: str) -> int:
    return zlib.crc32(stream.encode()) & 0x7FFFFFFF


def event_columns(raw_body: bool) -> Select[Any]:
    return select(*(_EVENTS.c[name] for name in EVENT_COLUMNS), *([_EVENTS.c.raw_body] if raw_body else []))


def stored_event(row: Row[Any], start: int = 0) -> StoredEvent:
    """The event in `row`'s columns from `start` on: EVENT_COLUMNS' in their order, then raw_body (when
    read). By position: the relay reads a thousand rows a cycle."""
    end = start + len(EVENT_COLUMNS)
    values: tuple[Any, ...] = (*row[start:end], row[end] if len(row) > end else None)
    return StoredEvent(*values)


class Outbox:
    def __init__(self, engine: Engine, *, stream: str, raw_body: bool, lock_name: str = "relay-lock") -> None:
        self._engine = engine
        self._stream = stream
        # SQLite's lock file is `{database}.{lock_name}`: each user of the lock (the NATS relay of each
        # stream, destinations' dispatcher) has its own.
        self._lock_name = lock_name
        self._raw_body = raw_body
        self._postgres = engine.dialect.name == "postgresql"
        self._connection: Connection | None = None
        self._lock_file: IO[bytes] | None = None

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = self._engine.connect()
            if self._postgres:
                name = f"webhooks-relay {socket.gethostname()}:{os.getpid()}"
                self._connection.execute(
                    text("SELECT set_config('application_name', :name, false)"), {"name": name}
                )
                # Every execution planned for the tables as they are then. psycopg prepares a statement
                # after a few executions, and the server may then keep one generic plan for it: made
                # while a new database's tables were small, the pending read's plan hashed the whole
                # events table each cycle, taking longer as it grew, until the relay fell behind. Planning
                # every read afresh costs far less than that (BENCHMARKS.md, "Forwarding to NATS").
                self._connection.execute(text("SET plan_cache_mode = force_custom_plan"))
                self._connection.commit()
        return self._connection

    def start(self) -> None:
        """Create the cursor if this is forwarding's first start: from then on every commit is
        recorded and published (SQLite: every event after the last one stored now)."""
        with self.connection.begin():
            start = 0
            if not self._postgres:
                start = self.connection.execute(select(func.coalesce(func.max(Event.id), 0))).scalar_one()
            insert = (postgresql.insert if self._postgres else sqlite.insert)(ForwardCursor)
            self.connection.execute(
                insert.values(
                    stream=self._stream,
                    txid=0,
                    seq=0,
                    event_row_id=start,
                    events_published=0,
                    updated_at=datetime.now(UTC),
                ).on_conflict_do_nothing(index_elements=["stream"])
            )

    def try_lead(self) -> bool:
        """Take the relay's lock, without waiting; True while this relay holds it."""
        if self._postgres:
            with self.connection.begin():
                held: bool = self.connection.execute(
                    text("SELECT pg_try_advisory_lock(:lock_class, :key)"),
                    {"lock_class": LOCK_CLASS, "key": lock_key(self._stream)},
                ).scalar_one()
            return held
        if self._lock_file is None:
            # SQLite: several processes on one file (uvicorn --workers) take turns by a file lock.
            path = f"{self._engine.url.database}.{self._lock_name}"
            lock_file = open(path, "ab")  # noqa: SIM115 (held for the relay's life)
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock_file.close()
                return False
            self._lock_file = lock_file
        return True

    def cursor(self) -> Position:
        row = self.connection.execute(
            select(ForwardCursor.txid, ForwardCursor.seq, ForwardCursor.event_row_id).where(
                ForwardCursor.stream == self._stream
            )
        ).one()
        return Position(*row)

    def pending(self, *, limit: int) -> Pending | None:
        """The next events to publish after the cursor, in commit order, with the published state of
        the payments they touch (what the relay needs for its next cycle, in one call); None when there
        are none."""
        if self._postgres:
            return self._pending_postgres(limit=limit)
        with self.connection.begin():
            start = self.cursor().event_row_id
            newest = self.connection.execute(select(func.max(Event.id))).scalar_one()
            if newest is not None and newest < start:
                # Retention deleted every row, so SQLite counts ids from 1 again: every row is new.
                start = 0
            rows = self.connection.execute(
                event_columns(self._raw_body).where(Event.id > start).order_by(Event.id).limit(limit)
            ).all()
            if not rows:
                return None
            events = [stored_event(row) for row in rows]
            known = self._states({(e.provider, e.payment_id) for e in events if e.payment_id is not None})
        return Pending(events, Position(0, 0, events[-1].row_id), known)

    def _pending_postgres(self, *, limit: int) -> Pending | None:
        with self.connection.begin():
            rows = self.connection.execute(
                _PENDING, {"stream": self._stream, "limit": limit, "raw_body": self._raw_body}
            ).all()
        if not rows:
            return None
        # Purged since they were recorded: nothing left to publish of those.
        present = [row for row in rows if row.id is not None]
        known = {
            (row.provider, row.payment_id): PaymentState(
                row.state_status, (row.state_rank, row.state_occurred_at, row.state_event_row_id)
            )
            for row in present
            if row.state_rank is not None
        }
        last = rows[-1]
        end = Position(last.txid, last.seq, max(row.listed_id for row in rows))
        return Pending([stored_event(row, 3) for row in present], end, known)

    def _states(self, keys: set[PaymentKey]) -> dict[PaymentKey, PaymentState]:
        if not keys:
            return {}
        table = ForwardPaymentState
        rows = self.connection.execute(
            select(
                table.provider,
                table.payment_id,
                table.status,
                table.status_rank,
                table.status_occurred_at,
                table.status_event_row_id,
            ).where(tuple_(table.provider, table.payment_id).in_(sorted(keys)))
        ).all()
        return {
            (p, pid): PaymentState(status, (rank, at, row_id)) for p, pid, status, rank, at, row_id in rows
        }

    def advance(
        self,
        pending: Pending,
        moved: dict[PaymentKey, PaymentState],
        *,
        along: Callable[[Connection], object] | None = None,
    ) -> None:
        """Everything in `pending` is in the stream: move the cursor and the published states, in one
        transaction (with `along`'s statements first, when given)."""
        write_when_free(self.connection, lambda: self._advance(pending, moved, along=along))

    def _advance(
        self,
        pending: Pending,
        moved: dict[PaymentKey, PaymentState],
        *,
        along: Callable[[Connection], object] | None,
    ) -> None:
        end = pending.end
        if self._postgres:
            # Every cursor's row locked first, in one order: two cursors' advances (the relays of two
            # streams over one database) then run one after the other, and the second's DELETE below
            # sees the first's cursor. Run at once, each saw the other's cursor as it was before,
            # and the batches both had passed stayed until the next event.
            self.connection.execute(_LOCK_CURSORS)
        if along is not None:
            along(self.connection)
        self.connection.execute(
            update(ForwardCursor)
            .where(ForwardCursor.stream == self._stream)
            .values(
                txid=end.txid,
                seq=end.seq,
                event_row_id=end.event_row_id,
                events_published=ForwardCursor.events_published + len(pending.events),
                updated_at=datetime.now(UTC),
            )
        )
        if moved:
            self.connection.execute(
                _MOVE_STATES[self.connection.dialect.name],
                {"rows": _states_parameter(moved, self.connection.dialect.name)},
            )
        if self._postgres:
            # Only what every cursor has passed: each stream's relay reads the same batches.
            self.connection.execute(
                text(
                    "DELETE FROM forward_batches WHERE (txid, seq) <= "
                    "(SELECT txid, seq FROM forward_cursor ORDER BY txid, seq LIMIT 1)"
                )
            )

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def status(connection: Connection, *, stream: str) -> Status:
    """Lag and cursor, for /metrics and `python -m cli forward-status`."""
    cursor = connection.execute(
        select(
            ForwardCursor.txid,
            ForwardCursor.seq,
            ForwardCursor.event_row_id,
            ForwardCursor.events_published,
            ForwardCursor.updated_at,
        ).where(ForwardCursor.stream == stream)
    ).one_or_none()
    if cursor is None:
        return Status(0, None, None, 0, None)
    position = Position(cursor.txid, cursor.seq, cursor.event_row_id)
    if connection.dialect.name == "postgresql":
        lag, oldest = connection.execute(
            select(
                func.coalesce(func.sum(func.cardinality(ForwardBatch.event_ids)), 0),
                func.min(ForwardBatch.recorded_at),
            ).where(tuple_(ForwardBatch.txid, ForwardBatch.seq) > tuple_(position.txid, position.seq))
        ).one()
    else:
        lag, oldest = connection.execute(
            select(func.count(), func.min(Event.received_at)).where(Event.id > position.event_row_id)
        ).one()
    return Status(int(lag), oldest, position, cursor.events_published, cursor.updated_at)


def holder(connection: Connection, *, stream: str) -> str | None:
    """Who holds the relay's lock now (PostgreSQL): its application name, address and since when."""
    if connection.dialect.name != "postgresql":
        return None
    row = connection.execute(
        text(
            """
            SELECT a.application_name, a.client_addr, a.pid, a.backend_start
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :lock_class
              AND l.objid = :key AND l.objsubid = 2 AND l.database = (
                  SELECT oid FROM pg_database WHERE datname = current_database())
            """
        ),
        {"lock_class": LOCK_CLASS, "key": lock_key(stream)},
    ).one_or_none()
    if row is None:
        return None
    since = f"{row.backend_start:%Y-%m-%d %H:%M:%S%z}"
    return f"{row.application_name} (server pid {row.pid}, from {row.client_addr or 'local'}, since {since})"
