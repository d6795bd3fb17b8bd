"""Destinations as the service process runs them: the file read at start-up, the dispatcher in the
background, the backlog on /metrics."""

from functools import partial

from sqlalchemy import Engine

from config import Settings
from destinations import file, metrics
from destinations.dispatcher import Dispatcher
from destinations.file import Destination
from ops.metrics import SCRAPE_COLLECTORS


class Destinations:
    def __init__(self, destinations: list[Destination], dispatcher: Dispatcher) -> None:
        self.destinations = {destination.name: destination for destination in destinations}
        self._dispatcher = dispatcher

    @classmethod
    def configure(cls, engine: Engine, settings: Settings) -> "Destinations | None":
        """None while DESTINATIONS_FILE is unset: nothing is forwarded over HTTP. A file that does not
        validate raises DestinationsFileInvalid, which stops start-up."""
        if not settings.destinations_file:
            return None
        destinations = file.load(settings.destinations_file)
        names = [destination.name for destination in destinations]
        metrics.initialise(names)
        SCRAPE_COLLECTORS["destination_backlog"] = partial(metrics.Backlog, names=names)
        dispatcher = Dispatcher(
            engine,
            destinations,
            poll_seconds=settings.destinations_poll_seconds,
            deliver=settings.destinations_in_process,
        )
        return cls(destinations, dispatcher)

    def wake(self) -> None:
        self._dispatcher.wake()

    def wake_destination(self, name: str) -> None:
        self._dispatcher.wake_destination(name)

    async def start(self) -> None:
        await self._dispatcher.start()

    async def stop(self) -> None:
        SCRAPE_COLLECTORS.pop("destination_backlog", None)
        await self._dispatcher.stop()
