"""Storing events exactly once, with group commit.

A delivery queues its event and awaits the outcome. One writer task per process takes everything
waiting (up to a batch size), has the sink insert it with `INSERT ... ON CONFLICT DO NOTHING RETURNING`
and fold it into the payments projection, and commits once for the whole batch; only then does each
delivery learn whether its event was new or a duplicate. So every 2xx follows a commit, the event loop
never blocks on the database, and a burst costs one commit per batch rather than one per delivery.

A delivery that carries many events (Adyen, GoCardless) queues them as one item: they are never split
across transactions, so they are committed together or not at all, and a batch may exceed its size by
one delivery's events.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Final

from errors import SignatureReused, StorageUnavailable
from ingest import deadlines
from ingest.batch import Outcome
from ingest.sinks import RelayedError, Sink
from payments.events import NormalizedEvent

logger = logging.getLogger("webhooks.store")

_STOP: Final = object()
# One delivery's events, and what it awaits: per event, new or not.
_Pending = tuple[Sequence[NormalizedEvent], "asyncio.Future[list[bool]]"]
# A batch's outcome per event: True new, False duplicate, None refused, or the error to answer with.
_Outcome = Outcome | StorageUnavailable


class EventWriter:
    """Batches queued deliveries onto one or more sinks. Each sink writes one batch at a time; several
    sinks (PostgreSQL with `WRITE_CONCURRENCY` above 1) keep several transactions in flight, so a batch
    waiting for its commit's fsync does not hold up the next one."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        batch_max: int,
        queue_max: int,
        timeout: float,
        on_commit: Callable[[], None] | None = None,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._sinks = sinks
        # Called after each batch that stored a new event (forwarding's relay: there is something to
        # publish). It must not block: it runs on the event loop, between the commit and the answers.
        self._on_commit = on_commit
        # Called after each batch with its number of events and the seconds its write took, commit
        # included, whatever the outcome (the metrics: how group commit behaves under the load).
        self._on_batch = on_batch
        self._batch_max = batch_max
        self._queue_max = queue_max
        self._queue: asyncio.Queue[_Pending | object] = asyncio.Queue()
        self._timeout = timeout
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Open the sinks (SQLite's starts its writer process), then take deliveries."""
        for sink in self._sinks:
            await sink.open()
        self._tasks = [
            asyncio.create_task(self._run(sink), name=f"event-writer-{index}")
            for index, sink in enumerate(self._sinks)
        ]

    async def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop. Called at shutdown, after the server stopped accepting."""
        for _ in self._tasks:
            self._queue.put_nowait(_STOP)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)
        for task in self._tasks:
            task.cancel()
        for sink in self._sinks:
            await sink.close()

    async def store(self, event: NormalizedEvent) -> bool:
        """True if `event` is new, False if it was stored before; only after the commit. Raises
        StorageUnavailable when the commit is not confirmed within the writer's timeout, and
        SignatureReused when its signed key is stored with another body (nothing stored)."""
        [is_new] = await self.store_many((event,))
        return is_new

    async def store_many(self, events: Sequence[NormalizedEvent]) -> list[bool]:
        """`store` for a delivery of several events, committed in one transaction: per event, new or
        not. Raises StorageUnavailable unless every one of them is committed, and SignatureReused when
        one of them was refused."""
        if not events:
            return []
        if self._queue.qsize() >= self._queue_max:
            raise StorageUnavailable("too many deliveries are waiting for storage; retry later")
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((events, future))
        try:
            with deadlines.timeout(self._timeout):
                return await future
        except TimeoutError:
            # The timeout cancelled the future, so the writer skips it; the write may still land, and
            # the provider's retry is then answered as a duplicate.
            raise StorageUnavailable("storage did not confirm the write in time; retry later") from None

    async def _run(self, sink: Sink) -> None:
        stopping = False
        while not stopping:
            item = await self._queue.get()
            if item is _STOP:
                break
            batch: list[_Pending] = [item]  # type: ignore[list-item]
            size = len(batch[0][0])
            while size < self._batch_max and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)  # type: ignore[arg-type]
                size += len(batch[-1][0])
            began = time.perf_counter()
            outcomes = await self._write(sink, batch)
            if self._on_batch is not None:
                self._on_batch(size, time.perf_counter() - began)
            if self._on_commit is not None and True in outcomes:
                self._on_commit()
            start = 0
            for events, future in batch:
                mine, start = outcomes[start : start + len(events)], start + len(events)
                if future.done():  # the delivery gave up waiting (it answered 503)
                    continue
                stored = [outcome for outcome in mine if isinstance(outcome, bool)]
                failed = [outcome for outcome in mine if isinstance(outcome, StorageUnavailable)]
                if len(stored) == len(mine):
                    future.set_result(stored)
                elif failed:  # a delivery is answered 2xx only when all its events are committed
                    future.set_exception(StorageUnavailable(failed[0].message))
                else:
                    future.set_exception(
                        SignatureReused("this delivery's signed id was already accepted with another body")
                    )

    async def _write(self, sink: Sink, batch: list[_Pending]) -> Sequence[_Outcome]:
        """Per event of the batch, in order."""
        try:
            return await sink.write([event for events, _ in batch for event in events])
        except sink.row_errors as exc:
            # Something in one row, not the database: write the deliveries one by one so that a bad row
            # does not fail its neighbours (rare, since the adapters check every field). A delivery's
            # events stay one transaction: all of them are stored, or none.
            await sink.reset()
            if len(batch) > 1:
                return [outcome for pending in batch for outcome in await self._write(sink, [pending])]
            logger.error("an event could not be stored: %s", _name(exc))
        except Exception as exc:  # unreachable, locked, read-only, or a fault of ours: never a 2xx
            await sink.reset()
            logger.warning("storage failed for %d deliveries: %s", len(batch), _name(exc))
        unavailable = StorageUnavailable("storage is unavailable; retry later")
        return [unavailable] * sum(len(events) for events, _ in batch)


def _name(exc: Exception) -> str:
    # Only the type's name: an error's text can quote a row's values, which are payment data.
    return str(exc) if isinstance(exc, RelayedError) else type(exc).__name__
