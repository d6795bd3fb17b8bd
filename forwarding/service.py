"""Forwarding as the service process runs it: the relay in the background, the backlog on /metrics."""

from functools import partial

from sqlalchemy import Engine

from config import Settings
from forwarding import metrics
from forwarding.relay import Relay
from ops.metrics import SCRAPE_COLLECTORS


class Forwarding:
    def __init__(self, relay: Relay | None) -> None:
        self._relay = relay

    @classmethod
    def configure(cls, engine: Engine, settings: Settings) -> "Forwarding | None":
        """None while NATS_URL is unset: the service stores and answers as without forwarding. With
        FORWARD_IN_PROCESS=false the relay runs elsewhere (`python -m cli relay`) and this process
        wakes nobody, but still reports the backlog."""
        if not settings.nats_url:
            return None
        metrics.initialise()
        SCRAPE_COLLECTORS["forward_backlog"] = partial(metrics.Backlog, stream=settings.nats_stream)
        return cls(Relay(engine, settings) if settings.forward_in_process else None)

    def wake(self) -> None:
        if self._relay is not None:
            self._relay.wake()

    async def start(self) -> None:
        if self._relay is not None:
            await self._relay.start()

    async def stop(self) -> None:
        SCRAPE_COLLECTORS.pop("forward_backlog", None)
        if self._relay is not None:
            await self._relay.stop()
