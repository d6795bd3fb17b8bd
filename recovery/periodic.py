"""RECOVERY_INTERVAL: recovery in the service, every so many seconds, over a moving window from each
provider's high-water mark to now. Every worker and instance runs the loop; the lease in the database
lets one of them read a provider at a time, and the others skip it."""

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from datetime import UTC, datetime

from sqlalchemy import Engine

from config import Settings
from recovery import metrics, state
from recovery.run import Report, Store, run
from recovery.source import Source
from recovery.sources import build_sources
from recovery.window import lease_seconds, window_start

logger = logging.getLogger("webhooks.recovery")


class PeriodicRecovery:
    def __init__(self, *, settings: Settings, store: Store, engine: Engine) -> None:
        self.settings = settings
        self.sources: dict[str, Source] = build_sources(settings)
        self._store = store
        self._engine = engine
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:64]
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        metrics.initialise(providers=self.sources)
        if self.settings.recovery_interval <= 0:
            return
        for source in self.sources.values():
            if not source.configured:
                logger.info("%s: skipped, %s not set", source.name, source.credential_settings)
        self._task = asyncio.create_task(self._loop(), name="periodic-recovery")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as exc:  # the database unreachable for the mark: try again next time
                logger.warning("periodic recovery failed: %s", type(exc).__name__)
            await asyncio.sleep(self.settings.recovery_interval)

    async def run_once(self) -> list[Report]:
        """One pass over every configured provider, each from its high-water mark to now."""
        reports = []
        for source in self.sources.values():
            if not source.configured:
                continue
            mark = await asyncio.to_thread(state.high_water_mark, self._engine, provider=source.name)
            now = datetime.now(UTC)
            reports.append(
                await run(
                    source=source,
                    store=self._store,
                    engine=self._engine,
                    since=window_start(self.settings, mark=mark, now=now),
                    until=now,
                    owner=self._owner,
                    lease_seconds=lease_seconds(self.settings),
                )
            )
        return reports
