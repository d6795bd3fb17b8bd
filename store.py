"""Storing events exactly once, with group commit.

Deliveries hand their event to one writer thread per process and await the outcome. The writer takes
everything waiting (up to a batch size), inserts it with `INSERT ... ON CONFLICT DO NOTHING RETURNING`,
updates the payments projection, and commits once for the whole batch; only then does each delivery
learn whether its event was new or a duplicate. So every 2xx follows a commit, the event loop never
blocks on the database, and a burst costs one fsync per batch rather than one per delivery.
"""

import asyncio
import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, Final

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

import projection
from database import dialect_insert
from errors import StorageUnavailable
from events import NormalizedEvent
from models import Event

logger = logging.getLogger("webhooks.store")

_STOP: Final = object()
_Pending = tuple[NormalizedEvent, "asyncio.Future[bool]"]
# A batch's outcome per delivery: True new, False duplicate, or the error to answer with.
_Outcome = bool | StorageUnavailable


def write_events(connection: Connection, events: Sequence[NormalizedEvent]) -> list[bool]:
    """Insert `events` and fold the new ones into the projection, in the caller's transaction.

    Returns, per event, whether it was new. Within one call the first of several equal keys is the
    new one; the rest are duplicates, as if they had arrived just after it.
    """
    first_index: dict[tuple[str, str], int] = {}
    for index, event in enumerate(events):
        first_index.setdefault((event.provider, event.event_id), index)
    # Sorted keys: concurrent writers (other processes) take the unique-index locks in the same order.
    keys = sorted(first_index)
    stmt = (
        dialect_insert(connection.engine, Event.__table__)  # type: ignore[arg-type]
        .on_conflict_do_nothing(index_elements=["provider", "event_id"])
        .returning(Event.id, Event.provider, Event.event_id)
    )
    rows = [_row(events[first_index[key]]) for key in keys]
    inserted = {(row.provider, row.event_id): row.id for row in connection.execute(stmt, rows)}
    projection.apply(connection, ((row_id, events[first_index[key]]) for key, row_id in inserted.items()))
    return [
        first_index[key] == index and key in inserted
        for index, key in enumerate((event.provider, event.event_id) for event in events)
    ]


_COLUMNS: Final = tuple(field.name for field in fields(NormalizedEvent))


def _row(event: NormalizedEvent) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies, which the hot path does not need.
    return {name: getattr(event, name) for name in _COLUMNS}


class EventWriter:
    def __init__(self, engine: Engine, *, batch_max: int, queue_max: int) -> None:
        self._engine = engine
        self._batch_max = batch_max
        self._queue_max = queue_max
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connection: Connection | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop. Called at shutdown, after the server stopped accepting."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    async def store(self, event: NormalizedEvent, *, timeout: float) -> bool:
        """True if `event` is new, False if it was stored before; only after the commit."""
        if self._queue.qsize() >= self._queue_max:
            raise StorageUnavailable("too many deliveries are waiting for storage; retry later")
        assert self._loop is not None, "EventWriter.start() was not called"
        future: asyncio.Future[bool] = self._loop.create_future()
        self._queue.put((event, future))
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            # The write may still land; the provider's retry will then be answered as a duplicate.
            raise StorageUnavailable("storage did not confirm the write in time; retry later") from None

    # --- the writer thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            batch: list[_Pending] = [item]
            while len(batch) < self._batch_max:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            outcomes = self._write(batch)
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(_resolve, batch, outcomes)
            except RuntimeError:  # the loop closed during shutdown; nobody is waiting any more
                return
        if self._connection is not None:
            self._connection.close()

    def _write(self, batch: list[_Pending]) -> Sequence[_Outcome]:
        try:
            return self._transaction([event for event, _ in batch])
        except (IntegrityError, DataError) as exc:
            # Something in one row, not the database: write the rows one by one so that a bad row
            # does not fail its neighbours (rare, since the adapters check every field).
            self._discard_connection()
            if len(batch) > 1:
                return [outcome for pending in batch for outcome in self._write([pending])]
            logger.error("an event could not be stored: %s", type(exc).__name__)
        except Exception as exc:  # unreachable, locked, read-only, or a fault of ours: never a 2xx
            self._discard_connection()
            logger.warning("storage failed for %d deliveries: %s", len(batch), type(exc).__name__)
        unavailable = StorageUnavailable("storage is unavailable; retry later")
        return [unavailable] * len(batch)

    def _transaction(self, events: Sequence[NormalizedEvent]) -> list[bool]:
        if self._connection is None:
            self._connection = self._engine.connect()
        with self._connection.begin():
            return write_events(self._connection, events)

    def _discard_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.invalidate()
                self._connection.close()
            except SQLAlchemyError:
                pass
            self._connection = None


def _resolve(batch: list[_Pending], outcomes: Sequence[_Outcome]) -> None:
    """On the event loop: wake each waiting delivery (unless it already gave up)."""
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if future.done():
            continue
        if isinstance(outcome, StorageUnavailable):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
