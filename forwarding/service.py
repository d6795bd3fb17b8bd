"""Forwarding as the service process runs it: the relay in the background, the backlog on /metrics."""

import asyncio
from functools import partial

from sqlalchemy import Engine

from config import Settings
from forwarding import metrics
from forwarding.outbox import Outbox
from forwarding.relay import Relay
from ops.metrics import SCRAPE_COLLECTORS


class Forwarding:
    def __init__(self, relay: Relay | None, outbox: Outbox) -> None:
        self._relay = relay
        self._outbox = outbox

    @classmethod
    def configure(cls, engine: Engine, settings: Settings) -> "Forwarding | None":
        """None while NATS_URL is unset: the service stores and answers as without forwarding. With
        FORWARD_IN_PROCESS=false the relay runs elsewhere (`python -m cli relay`) and this process
        wakes nobody, but still reports the backlog."""
        if not settings.nats_url:
            return None
        metrics.initialise()
        SCRAPE_COLLECTORS["forward_backlog"] = partial(metrics.Backlog, stream=settings.nats_stream)
        relay = Relay(engine, settings) if settings.forward_in_process else None
        return cls(relay, Outbox(engine, stream=settings.nats_stream, raw_body=False))

    def wake(self) -> None:
        if self._relay is not None:
            self._relay.wake()

    async def start(self) -> None:
        if self._relay is not None:
            await self._relay.start()
            return
        # The relay runs elsewhere: still, what this process stores from now on is to be published.
        await asyncio.to_thread(self._outbox.start)
        await asyncio.to_thread(self._outbox.close)

    async def stop(self) -> None:
        SCRAPE_COLLECTORS.pop("forward_backlog", None)
        if self._relay is not None:
            await self._relay.stop()
