"""SQLite's writer, in a process of its own.

sqlite3 has no asynchronous driver, so SQLite's batches cannot run on the event loop. On a thread of the
same process they did, and, measured, the thread and the event loop mostly took turns on the one GIL:
the process stayed at one core whatever the load (BENCHMARKS.md). A process has a GIL of its own.

The app's sink (sinks.SqliteProcessSink) starts it as `python -m ingest.sqlite_writer`, with a pipe on each
side: the event loop writes each batch, pickled, to its stdin and awaits the reply on its stdout, which
the process writes only after the commit. It exits when its stdin closes: when the app closes the sink,
and when the app dies. This module imports neither SQLAlchemy (the app hands the process its compiled
statements and the connection's arguments) nor asyncio, so the process starts in a few hundredths of a
second and stays small.
"""

import contextlib
import os
import pickle
import signal
import sqlite3
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any, BinaryIO, Final

import orjson

from ingest.batch import Batch, Outcome, SignedKey
from payments.events import NormalizedEvent
from payments.fold import fold

# How often a writer tries for SQLite's write lock while another connection holds it (take_write_lock):
# at first, and at most; the pause doubles between.
LOCK_POLL_SECONDS: Final = 0.0005
LOCK_POLL_MAX_SECONDS: Final = 0.002

# A message: its length, then the pickled value. Pickle only ever crosses the pipes between the app and
# the process it started.
MESSAGE_SIZE: Final = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class WriterSetup:
    """What the writer process needs from the app: the batch statements, compiled from their Core
    definitions (sinks.SqliteSql), and the connection the engine would open (its sqlite3.connect
    arguments and pragmas)."""

    insert_events: str
    upsert_payments: str
    signed_key_holders: str
    count_deliveries: str
    connect_args: tuple[Any, ...]
    connect_kwargs: dict[str, Any]
    pragmas: tuple[str, ...]
    lock_wait_seconds: float  # how long a batch waits for the write lock (as busy_timeout would)


class SqliteBatches:
    """Writes batches to SQLite, one at a time, on one long-lived connection: the writer process is its
    only user. Each batch is two statements, each reading its rows from one parameter: the events, then
    their fold into payments (`fold`), then the commit; between them, only when some events were not
    stored and carry a signed key, a read of the rows holding those keys, and only when some deliveries
    were not stored, the count of those on the rows they deliver again (sinks.count_deliveries)."""

    def __init__(self, setup: WriterSetup) -> None:
        self._setup = setup
        self._connection: sqlite3.Connection | None = None
        # orjson refuses an integer past 64 bits or a lone surrogate; sqlite_time a naive time, and
        # event_parameters a NUL, with a ValueError. Like the driver's own two, each blames one row.
        self.row_errors: tuple[type[Exception], ...] = (
            sqlite3.IntegrityError,
            sqlite3.DataError,
            orjson.JSONEncodeError,
            ValueError,
        )

    def write(self, events: Sequence[NormalizedEvent]) -> list[Outcome]:
        if self._connection is None:
            self._connection = self._connect()
        batch = Batch.plan(events)
        # Another process may hold the lock: a second writer (`python -m cli recover`, another
        # instance), forwarding's relay, a destination's worker.
        take_write_lock(self._connection, wait_seconds=self._setup.lock_wait_seconds)
        cursor = self._connection.cursor()
        try:
            cursor.execute(self._setup.insert_events, event_parameters(batch.unique, batch.delivered))
            inserted = {(provider, event_id): row_id for row_id, provider, event_id in cursor.fetchall()}
            holders: dict[SignedKey, bytes | None] = {}
            # In the batch's transaction, which holds SQLite's write lock: every row is visible.
            if unsettled := batch.unsettled(inserted):
                cursor.execute(self._setup.signed_key_holders, signed_key_parameters(unsettled))
                holders = {(provider, key): body for provider, key, body in cursor.fetchall()}
            if uncounted := batch.uncounted(inserted):
                cursor.execute(self._setup.count_deliveries, delivery_parameters(uncounted))
            new = [(inserted[key], e) for e in batch.unique if (key := (e.provider, e.event_id)) in inserted]
            if payments := fold(new):
                cursor.execute(self._setup.upsert_payments, payment_parameters(payments))
        except BaseException:
            self._connection.rollback()
            raise
        finally:
            cursor.close()
        self._connection.commit()  # only now may a delivery of this batch be acknowledged
        return batch.outcomes(inserted, holders)

    def reset(self) -> None:
        """Drop the connection after an error; the next write opens a new one."""
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    def _connect(self) -> sqlite3.Connection:
        connection: sqlite3.Connection = sqlite3.connect(
            *self._setup.connect_args, **self._setup.connect_kwargs
        )
        for pragma in self._setup.pragmas:
            connection.execute(pragma)
        return connection


def take_write_lock(connection: sqlite3.Connection, *, wait_seconds: float) -> None:
    """Begin a transaction that holds SQLite's write lock (BEGIN IMMEDIATE), taken as soon as it is
    free: SQLite's own busy handler sleeps longer and longer between tries (up to 100 ms at a time), so
    a writer that found the lock held a few times went on waiting tens of milliseconds after it was
    free, and every delivery of its batch with it (BENCHMARKS.md, "Recovery" and "Forwarding to NATS").
    Here SQLite answers "busy" at once, and the lock is tried again after LOCK_POLL_SECONDS, the pause
    doubling up to LOCK_POLL_MAX_SECONDS, for up to `wait_seconds`; then SQLite's "database is locked"
    is raised. Holding the lock from the start, the transaction's statements never wait for it. The
    connection's busy_timeout is `wait_seconds` again afterwards."""
    deadline = time.monotonic() + wait_seconds
    pause = LOCK_POLL_SECONDS
    connection.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, LOCK_POLL_MAX_SECONDS)
    finally:
        connection.execute(f"PRAGMA busy_timeout={round(wait_seconds * 1000)}")


def event_parameters(
    events: Sequence[NormalizedEvent], delivered: Callable[[NormalizedEvent], tuple[int, datetime | None]]
) -> dict[str, Any]:
    """The parameters of `insert_events` (sinks.sqlite_json_rows): the rows as one JSON array, in the form
    SQLite stores them (times as `sqlite_time`, booleans as 0/1), and the bodies as one BLOB, each row
    naming its slice. `delivered(event)` is its delivery count and last delivery (Batch.delivered)."""
    rows: list[dict[str, Any]] = []
    bodies: list[bytes] = []
    at = 1  # SQLite's substr() counts from 1
    for event in events:
        delivery_count, last_delivered_at = delivered(event)
        texts = (
            event.provider,
            event.event_id,
            event.event_type,
            event.payment_id,
            event.status,
            event.provider_status,
            event.currency,
            event.signed_key,
        )
        if any(value and "\x00" in value for value in texts):
            # SQLite's JSON functions would cut the text off at the NUL: refused, as PostgreSQL does.
            raise ValueError("NUL in an event's text")
        rows.append(
            {
                "provider": event.provider,
                "event_id": event.event_id,
                "id_derived": event.id_derived,
                "event_type": event.event_type,
                "payment_id": event.payment_id,
                "status": event.status,
                "provider_status": event.provider_status,
                "amount": event.amount,
                "currency": event.currency,
                "occurred_at": sqlite_time(event.occurred_at),
                "received_at": sqlite_time(event.received_at),
                "raw_body_at": at,
                "raw_body_length": len(event.raw_body),
                "headers": event.headers,
                "signed_key": event.signed_key,
                "origin": event.origin,
                "delivery_count": delivery_count,
                "last_delivered_at": None if last_delivered_at is None else sqlite_time(last_delivered_at),
            }
        )
        bodies.append(event.raw_body)
        at += len(event.raw_body)
    return {"rows": orjson.dumps(rows).decode(), "bodies": b"".join(bodies)}


def delivery_parameters(deliveries: Sequence[NormalizedEvent]) -> dict[str, Any]:
    """The parameters of `count_deliveries` (sinks.DELIVERIES): as `event_parameters` gives them, each
    body only where a signed key needs it compared."""
    rows: list[dict[str, Any]] = []
    bodies: list[bytes] = []
    at = 1
    for event in deliveries:
        body = b"" if event.signed_key is None else event.raw_body
        rows.append(
            {
                "provider": event.provider,
                "event_id": event.event_id,
                "signed_key": event.signed_key,
                "raw_body_at": at,
                "raw_body_length": len(body),
                "received_at": sqlite_time(event.received_at),
            }
        )
        bodies.append(body)
        at += len(body)
    return {"rows": orjson.dumps(rows).decode(), "bodies": b"".join(bodies)}


def signed_key_parameters(keys: Sequence[SignedKey]) -> dict[str, Any]:
    """The parameters of `signed_key_holders`, on either database: the keys as one JSON array."""
    return {"rows": orjson.dumps([{"provider": p, "signed_key": k} for p, k in keys]).decode()}


def payment_parameters(payments: list[dict[str, Any]]) -> dict[str, Any]:
    """The parameters of `upsert_payments`: `fold`'s rows as one JSON array."""
    for payment in payments:
        for name in ("first_seen_at", "last_event_at", "status_occurred_at"):
            payment[name] = sqlite_time(payment[name])
    return {"rows": orjson.dumps(payments).decode()}


def sqlite_time(value: datetime) -> str:
    """What UTCDateTime stores on SQLite for `value`: SQLAlchemy's DATETIME text of the naive UTC time.
    Written in one step for the batch writer, where SQLAlchemy's two-stage type conversion cost about
    three times as much (BENCHMARKS.md); tests/ingest/test_sinks.py holds the two equal."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    utc = value.astimezone(UTC)
    return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (  # noqa: UP031  # measured faster than an f-string
        utc.year,
        utc.month,
        utc.day,
        utc.hour,
        utc.minute,
        utc.second,
        utc.microsecond,
    )


def serve(incoming: BinaryIO, outgoing: BinaryIO) -> None:
    """The writer process's loop: the setup, then a batch in and its outcomes out after the commit,
    until `incoming` closes."""
    state = _State()
    # Ctrl+C reaches the whole process group: the app stops, and closes the pipe, by itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, state.on_terminate)
    with contextlib.suppress(SystemExit, BrokenPipeError, EOFError):
        batches = SqliteBatches(WriterSetup(**pickle.loads(_read_message(incoming))))  # noqa: S301 (from the app)
        _write_message(outgoing, ("ready", None))
        # Between batches nothing is uncommitted: however the loop ends, there is nothing to roll back.
        while not state.stopping:
            events = pickle.loads(_read_message(incoming))  # noqa: S301 (from the app)
            state.busy = True
            try:
                reply: tuple[str, object] = ("stored", batches.write(events))
            except batches.row_errors as exc:
                batches.reset()
                reply = ("refused", type(exc).__name__)
            except Exception as exc:
                batches.reset()
                reply = ("failed", type(exc).__name__)
            _write_message(outgoing, reply)
            state.busy = False


def _read_message(incoming: BinaryIO) -> bytes:
    header = incoming.read(MESSAGE_SIZE.size)
    if len(header) < MESSAGE_SIZE.size:
        raise EOFError  # the app closed the pipe, or died
    (size,) = MESSAGE_SIZE.unpack(header)
    payload = incoming.read(size)
    if len(payload) < size:
        raise EOFError
    return payload


def message(value: object) -> bytes:
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return MESSAGE_SIZE.pack(len(payload)) + payload


def _write_message(outgoing: BinaryIO, value: object) -> None:
    outgoing.write(message(value))
    outgoing.flush()


class _State:
    """SIGTERM (a supervisor stopping the whole service) ends the process between batches, never inside
    one: a batch in hand is committed and answered first."""

    def __init__(self) -> None:
        self.busy = False
        self.stopping = False

    def on_terminate(self, _signum: int, _frame: FrameType | None) -> None:
        if not self.busy:
            raise SystemExit(0)
        self.stopping = True


if __name__ == "__main__":
    # The replies get the process's stdout to themselves: anything else written there goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, replies)
