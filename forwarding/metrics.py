"""Forwarding's series on /metrics: publish outcomes (counted by the relay), and the backlog (asked of
the database at scrape time, so every instance reports the same lag whichever relay publishes)."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Final

from prometheus_client import Counter
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from forwarding import outbox

PUBLISHED: Final = Counter(
    "forward_publish_total",
    "Messages offered to the NATS stream, by kind (event, state) and outcome "
    "(published, duplicate, timeout, refused, unavailable)",
    ["kind", "outcome"],
)


def initialise() -> None:
    for kind in ("event", "state"):
        for outcome in ("published", "duplicate", "timeout", "refused", "unavailable"):
            PUBLISHED.labels(kind, outcome)


class Backlog(Collector):
    def __init__(self, engine: Engine, *, stream: str) -> None:
        self._engine = engine
        self._stream = stream

    def collect(self) -> Iterator[Metric]:
        try:
            with self._engine.connect() as connection:
                status = outbox.status(connection, stream=self._stream)
        except Exception:  # the database is down: webhook_storage_ready says so; no lag figure
            return
        oldest = 0.0
        if status.oldest_unpublished is not None:
            oldest = max(0.0, (datetime.now(UTC) - status.oldest_unpublished).total_seconds())
        yield GaugeMetricFamily(
            "forward_lag_events", "Stored events not yet in the NATS stream", value=status.lag_events
        )
        yield GaugeMetricFamily(
            "forward_oldest_unpublished_seconds",
            "Age of the oldest stored event not yet in the NATS stream (0 when none)",
            value=oldest,
        )
