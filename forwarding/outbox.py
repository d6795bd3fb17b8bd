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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Final, cast

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Row,
    Select,
    Table,
    any_,
    bindparam,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY

from forwarding.messages import StoredEvent
from forwarding.states import PaymentKey, PaymentState
from models import Event, ForwardBatch, ForwardCursor, ForwardPaymentState

# The advisory lock's first key (the second is the stream's): 'FW'.
LOCK_CLASS: Final = 0x4657

_PENDING_BATCHES: Final = text(
    """
    SELECT txid, seq, event_ids FROM (
        SELECT txid, seq, event_ids,
               sum(cardinality(event_ids)) OVER (ORDER BY txid, seq) - cardinality(event_ids) AS before
        FROM forward_batches
        WHERE (txid, seq) > (:txid, :seq)
          AND txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
    ) AS pending
    WHERE before < :limit
    ORDER BY txid, seq
    """
)


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


@dataclass(frozen=True, slots=True)
class Status:
    lag_events: int
    oldest_unpublished: datetime | None
    cursor: Position | None
    events_published: int
    updated_at: datetime | None


def lock_key(stream: str) -> int:
    return zlib.crc32(stream.encode()) & 0x7FFFFFFF


def event_columns(raw_body: bool) -> Select[Any]:
    table = cast(Table, Event.__table__)
    names = [
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
    ]
    return select(*(table.c[name] for name in names), *([table.c.raw_body] if raw_body else []))


def stored_event(row: Row[Any]) -> StoredEvent:
    values = row._mapping
    return StoredEvent(
        row_id=values["id"],
        provider=values["provider"],
        event_id=values["event_id"],
        event_type=values["event_type"],
        payment_id=values["payment_id"],
        status=values["status"],
        provider_status=values["provider_status"],
        amount=values["amount"],
        currency=values["currency"],
        occurred_at=values["occurred_at"],
        received_at=values["received_at"],
        raw_body=values.get("raw_body"),
    )


class Outbox:
    def __init__(self, engine: Engine, *, stream: str, raw_body: bool, lock_name: str = "relay-lock") -> None:
        self._engine = engine
        self._stream = stream
        # SQLite's lock file is `{database}.{lock_name}`: each reader of the outbox (the NATS relay,
        # destinations' intake) has its own cursor row and its own lock.
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
                # The relay's reads may wait behind nothing; its own statements are short.
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
        """The next events to publish after the cursor, in commit order; None when there are none."""
        with self.connection.begin():
            after = self.cursor()
            if not self._postgres:
                start = after.event_row_id
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
                return Pending(events, Position(0, 0, events[-1].row_id))
            batches = self.connection.execute(
                _PENDING_BATCHES, {"txid": after.txid, "seq": after.seq, "limit": limit}
            ).all()
            if not batches:
                return None
            ids = [event_id for _, _, event_ids in batches for event_id in event_ids]
            rows = self.connection.execute(
                event_columns(self._raw_body).where(
                    Event.id == any_(bindparam("ids", ids, type_=ARRAY(BigInteger)))
                )
            ).all()
        by_id = {row.id: stored_event(row) for row in rows}
        # Purged since they were recorded: nothing left to publish of those.
        events = [by_id[event_id] for event_id in ids if event_id in by_id]
        txid, seq, _ = batches[-1]
        return Pending(events, Position(txid, seq, max(ids)))

    def states(self, keys: set[PaymentKey]) -> dict[PaymentKey, PaymentState]:
        if not keys:
            return {}
        table = ForwardPaymentState
        with self.connection.begin():
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
        transaction (with `along`'s statements first: destinations' intake records what it owes in it)."""
        end = pending.end
        with self.connection.begin():
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
                insert = (postgresql.insert if self._postgres else sqlite.insert)(ForwardPaymentState)
                rows = [
                    {
                        "provider": provider,
                        "payment_id": payment_id,
                        "status": state.status,
                        "status_rank": state.order[0],
                        "status_occurred_at": state.order[1],
                        "status_event_row_id": state.order[2],
                    }
                    for (provider, payment_id), state in sorted(moved.items())
                ]
                self.connection.execute(
                    insert.on_conflict_do_update(
                        index_elements=["provider", "payment_id"],
                        set_={
                            name: insert.excluded[name]
                            for name in ("status", "status_rank", "status_occurred_at", "status_event_row_id")
                        },
                    ),
                    rows,
                )
            if self._postgres:
                # Only what every cursor has passed: destinations' intake reads the same batches.
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
