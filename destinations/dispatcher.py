"""The dispatcher: writes the destinations' filters, so that each new event is owed to the destinations
it matches in the transaction that stores it (destinations/filters.py), then runs each destination's
worker, which delivers what it is owed, and wakes the workers after each commit.

With several instances over one database, one dispatcher leads (an advisory lock on PostgreSQL, a file
lock on SQLite, as forwarding's relay) and the others wait to take over when its process dies. Every
instance's writer owes its own events; only the leader's workers send.
"""

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from destinations import attempts, filters
from destinations.file import Destination
from destinations.worker import Worker
from forwarding.outbox import Outbox
from ops.signals import until_stopped

logger = logging.getLogger("webhooks.destinations")

# The leader's lock: the outbox's lock (forwarding/outbox.py) under a name of its own, one no NATS
# stream can have ('/' is not allowed there).
LOCK_STREAM: Final = "http/destinations"
STOP_WAIT_SECONDS: Final = 10.0


class Dispatcher:
    def __init__(
        self, engine: Engine, destinations: list[Destination], *, poll_seconds: float, deliver: bool = True
    ) -> None:
        """`deliver`: False in a service whose deliveries `python -m cli destinations run` sends: it
        writes the filters at start-up and sends nothing."""
        self._engine = engine
        self._deliver = deliver
        self._destinations = destinations
        self._poll_seconds = poll_seconds
        self._lock = Outbox(engine, stream=LOCK_STREAM, raw_body=False, lock_name="destinations-lock")
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
        self._analyzing: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """After a commit: the events it stored may be owed, and due now."""
        if self._leading:
            for worker in self._workers.values():
                worker.owed()

    def wake_destination(self, name: str) -> None:
        """After a replay or a resume in this process: there is work now."""
        if (worker := self._workers.get(name)) is not None:
            worker.wake()

    async def start(self) -> None:
        """Write the filters (from now on every commit is owed as the file says) and the destinations'
        rows, before the first delivery is taken."""
        await asyncio.to_thread(self._prepare)
        if self._deliver:
            self._task = asyncio.create_task(self._run(), name="destinations-leader")

    def _prepare(self) -> None:
        with self._engine.begin() as connection:
            filters.write(connection, self._destinations)
            if owed := filters.catch_up(connection):
                logger.info("destinations: owed %d deliveries stored before this version", owed)
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
        await asyncio.to_thread(self._lock.close)

    async def _run(self) -> None:
        """Take the lead when it is free, then, once a poll, check that it is still held (on PostgreSQL
        the lock lives with its connection) and whether the planner's statistics need refreshing."""
        while not self._stopping:
            try:
                if not self._leading:
                    self._leading = await asyncio.to_thread(self._lock.try_lead)
                    if self._leading:
                        logger.info("destinations: delivering to %s", ", ".join(self._workers) or "none")
                        self._worker_tasks = [
                            asyncio.create_task(worker.run(), name=f"destination-{name}")
                            for name, worker in self._workers.items()
                        ]
                else:
                    stale = await asyncio.to_thread(self._statistics_stale)
                    if stale and self._analyzing is None:
                        # Beside the workers, not in their way: their reads do not wait for it.
                        self._analyzing = asyncio.create_task(
                            asyncio.to_thread(self._analyze), name="destinations-analyze"
                        )
                        self._analyzing.add_done_callback(self._analyzed)
                self._database_down = False
            except SQLAlchemyError as exc:
                if not self._database_down:
                    logger.warning("destinations: database error (%s); retrying", type(exc).__name__)
                    self._database_down = True
                with contextlib.suppress(SQLAlchemyError):
                    await asyncio.to_thread(self._lock.close)
                if self._leading and self._engine.dialect.name == "postgresql":
                    # The advisory lock went with the connection: stop delivering until it is held again.
                    await self._stop_workers()
                    self._leading = False
            except Exception:  # a fault of ours: logged, and the dispatcher goes on
                logger.exception("destinations: unexpected error; retrying")
            await self._idle()

    async def _stop_workers(self) -> None:
        for worker in self._workers.values():
            await worker.stop()
        await asyncio.gather(*self._worker_tasks, return_exceptions=True)
        self._worker_tasks = []
        self._workers = {
            d.name: Worker(self._engine, d, poll_seconds=self._poll_seconds) for d in self._destinations
        }

    def _statistics_stale(self) -> bool:
        # On the lock's connection: a statement on it also shows the lock's connection is alive.
        with self._lock.connection.begin():
            return attempts.statistics_stale(self._lock.connection)

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


async def run_alone(engine: Engine, destinations: list[Destination], *, poll_seconds: float) -> None:
    """The dispatcher in a process of its own (`python -m cli destinations run`), until SIGTERM or
    SIGINT. No commit of this process wakes its workers: they find new events within `poll_seconds`."""
    dispatcher = Dispatcher(engine, destinations, poll_seconds=poll_seconds)
    await dispatcher.start()
    try:
        await until_stopped()
    finally:
        await dispatcher.stop()
