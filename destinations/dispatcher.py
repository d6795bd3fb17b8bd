"""The dispatcher: reads forwarding's outbox (the events table, in commit order, from a cursor of its
own) and owes each new event to every destination whose filters it matches; then each destination's
worker delivers what it is owed.

The intake repeats nothing twice over (a delivery row is unique per destination and event), and moves
its cursor only after the rows are committed, so after a crash it resumes from durable state. With
several instances over one database, one dispatcher leads (the outbox's lock: an advisory lock on
PostgreSQL, a file lock on SQLite) and the others wait to take over when its process dies.
"""

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from destinations import attempts
from destinations.file import Destination
from destinations.worker import Worker
from forwarding.outbox import Outbox

logger = logging.getLogger("webhooks.destinations")

# The intake's cursor row in forward_cursor: a name no NATS stream can have ('/' is not allowed there).
INTAKE: Final = "http/destinations"
INTAKE_BATCH: Final = 1000
LINGER_SECONDS: Final = 0.005
STOP_WAIT_SECONDS: Final = 10.0
# The deliveries table's statistics are refreshed each time the intake has owed as many rows as it had
# owed at the last refresh, and this many at least: a few times while a backlog grows, rarely after.
ANALYZE_AFTER_ROWS: Final = 1000


class Dispatcher:
    def __init__(self, engine: Engine, destinations: list[Destination], *, poll_seconds: float) -> None:
        self._engine = engine
        self._destinations = destinations
        self._poll_seconds = poll_seconds
        self._outbox = Outbox(engine, stream=INTAKE, raw_body=False, lock_name="destinations-lock")
        self._workers = {
            destination.name: Worker(engine, destination, poll_seconds=poll_seconds)
            for destination in destinations
        }
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._leading = False
        self._database_down = False
        self._owed_rows = 0
        self._owed_rows_at_analyze = 0
        self._analyzing: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """After a commit: there may be new events to owe."""
        self._wake.set()

    def wake_destination(self, name: str) -> None:
        """After a replay or a resume in this process: there is work now."""
        if (worker := self._workers.get(name)) is not None:
            worker.wake()

    async def start(self) -> None:
        """Create the intake's cursor (from now on every commit is owed) and the destinations' rows."""
        await asyncio.to_thread(self._outbox.start)
        await asyncio.to_thread(self._prepare)
        self._task = asyncio.create_task(self._run(), name="destinations-intake")

    def _prepare(self) -> None:
        with self._engine.begin() as connection:
            attempts.ensure_status(connection, self._workers, now=datetime.now(UTC))

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_WAIT_SECONDS)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.gather(*(worker.stop() for worker in self._workers.values()), return_exceptions=True)
        await asyncio.gather(*self._worker_tasks, return_exceptions=True)
        if self._analyzing is not None:
            await asyncio.gather(self._analyzing, return_exceptions=True)
        await asyncio.to_thread(self._outbox.close)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                if not self._leading:
                    self._leading = await asyncio.to_thread(self._outbox.try_lead)
                    if not self._leading:
                        await self._idle()
                        continue
                    logger.info("destinations: delivering to %s", ", ".join(self._workers) or "none")
                    self._worker_tasks = [
                        asyncio.create_task(worker.run(), name=f"destination-{name}")
                        for name, worker in self._workers.items()
                    ]
                owed = await self._intake()
                self._database_down = False
            except SQLAlchemyError as exc:
                if not self._database_down:
                    logger.warning("destinations: database error (%s); retrying", type(exc).__name__)
                    self._database_down = True
                with contextlib.suppress(SQLAlchemyError):
                    await asyncio.to_thread(self._outbox.close)
                if self._leading and self._engine.dialect.name == "postgresql":
                    # The advisory lock went with the connection: stop delivering until it is held again.
                    await self._stop_workers()
                    self._leading = False
                await self._idle()
                continue
            except Exception:  # a fault of ours: logged, and the intake goes on from its cursor
                logger.exception("destinations: unexpected error in the intake; retrying")
                await self._idle()
                continue
            if not owed:
                await self._idle()
            elif owed < INTAKE_BATCH:
                # Let commits gather: under load each turn then owes many events in one transaction.
                await asyncio.sleep(LINGER_SECONDS)

    async def _stop_workers(self) -> None:
        for worker in self._workers.values():
            await worker.stop()
        await asyncio.gather(*self._worker_tasks, return_exceptions=True)
        self._worker_tasks = []
        self._workers = {
            d.name: Worker(self._engine, d, poll_seconds=self._poll_seconds) for d in self._destinations
        }

    async def _intake(self) -> int:
        """Owe the next committed events and move the cursor past them; how many events were read."""
        pending = await asyncio.to_thread(self._outbox.pending, limit=INTAKE_BATCH)
        if pending is None:
            return 0
        now = datetime.now(UTC)

        offered = 0

        def owe(connection: Connection) -> None:
            nonlocal offered
            offered = attempts.enqueue(connection, self._destinations, pending.events, now=now)

        # The rows owed and the cursor past them, in one transaction.
        await asyncio.to_thread(self._outbox.advance, pending, {}, along=owe)
        self._owed_rows += offered
        since = self._owed_rows - self._owed_rows_at_analyze
        if since >= max(ANALYZE_AFTER_ROWS, self._owed_rows_at_analyze) and self._analyzing is None:
            # Beside the intake, not in its way: the events owed meanwhile do not wait for it.
            self._owed_rows_at_analyze = self._owed_rows
            self._analyzing = asyncio.create_task(
                asyncio.to_thread(self._analyze), name="destinations-analyze"
            )
            self._analyzing.add_done_callback(self._analyzed)
        for worker in self._workers.values():
            worker.wake()
        return len(pending.events)

    def _analyze(self) -> None:
        with self._engine.begin() as connection:
            attempts.refresh_statistics(connection)

    def _analyzed(self, task: "asyncio.Task[None]") -> None:
        self._analyzing = None
        if not task.cancelled() and (error := task.exception()) is not None:
            # Only the planner's view is stale: the next refresh tries again.
            logger.warning("destinations: refreshing statistics failed (%s)", type(error).__name__)

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
        self._wake.clear()
