"""Destinations' series on /metrics: attempts by outcome and dead events (counted by the dispatcher),
and each destination's backlog (asked of the database at scrape time, whichever instance answers)."""

from collections.abc import Iterator, Sequence
from typing import Final

from prometheus_client import Counter
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from models import DestinationDelivery

ATTEMPTS: Final = Counter(
    "destination_attempts_total",
    "Delivery attempts to destinations, by destination and outcome (delivered, or the failure's "
    "class: http_status, timeout, connect_error, connection_reset, tls_error, http_error)",
    ["destination", "outcome"],
)
DEAD: Final = Counter(
    "destination_dead_total",
    "Events that went dead for a destination (every attempt failed, or max_age_seconds passed)",
    ["destination"],
)
OUTCOMES: Final = (
    "delivered",
    "http_status",
    "timeout",
    "connect_error",
    "connection_reset",
    "tls_error",
    "http_error",
)


def initialise(names: Sequence[str]) -> None:
    for name in names:
        DEAD.labels(name)
        for outcome in OUTCOMES:
            ATTEMPTS.labels(name, outcome)


class Backlog(Collector):
    def __init__(self, engine: Engine, *, names: Sequence[str]) -> None:
        self._engine = engine
        self._names = names

    def collect(self) -> Iterator[Metric]:
        owed = DestinationDelivery
        try:
            with self._engine.connect() as connection:
                counts = dict(
                    connection.execute(
                        select(owed.destination, func.count())
                        .where(owed.state == "pending", owed.destination.in_(self._names))
                        .group_by(owed.destination)
                    ).all()
                )
        except Exception:  # the database is down: webhook_storage_ready says so; no backlog figure
            return
        gauge = GaugeMetricFamily(
            "destination_backlog",
            "Events owed to a destination and not yet delivered",
            labels=["destination"],
        )
        for name in self._names:
            gauge.add_metric([name], counts.get(name, 0))
        yield gauge
