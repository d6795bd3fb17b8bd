"""Prometheus metrics: deliveries by provider and outcome, handling time, and storage readiness.

Each worker process counts its own deliveries. With several workers, prometheus-client's multiprocess
mode (PROMETHEUS_MULTIPROC_DIR: set before start, one empty directory per start) keeps the counts in
files that /metrics adds up, so a scrape sees every worker's deliveries whichever worker answers it.
"""

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from database import ping

logger = logging.getLogger("webhooks")

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

# Every outcome a delivery can have: its error code, or processed / duplicate.
OUTCOMES: Final = (
    "processed",
    "duplicate",
    "signature_missing",
    "signature_invalid",
    "signature_expired",
    "invalid_json",
    "invalid_payload",
    "payload_too_large",
    "request_timeout",
    "client_disconnected",
    "storage_unavailable",
    "provider_not_configured",
    "internal_error",
)
UNKNOWN_PROVIDER: Final = "unknown"  # the label for path segments that name no provider

DELIVERIES: Final = Counter(
    "webhook_deliveries_total",
    "Webhook deliveries answered, by provider and outcome",
    ["provider", "outcome"],
)
HANDLING_SECONDS: Final = Histogram(
    "webhook_delivery_duration_seconds",
    "Time from request to answer for a webhook delivery, including the wait for its commit",
    ["provider"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# Group commit under the load: how many events each batch carried, and how long its write took, from the
# statement's start to the commit's confirmation.
# Labelled by database, which also keeps their values from being made at import: with several workers
# they live in PROMETHEUS_MULTIPROC_DIR, which initialise() makes.
BATCH_EVENTS: Final = Histogram(
    "webhook_batch_events",
    "Events per write batch (one transaction)",
    ["database"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
BATCH_SECONDS: Final = Histogram(
    "webhook_batch_write_seconds",
    "Time to write and commit one batch",
    ["database"],
    buckets=(0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.25, 0.5, 1.0, 5.0),
)


@lru_cache(maxsize=256)
def _series(provider: str, outcome: str) -> tuple[Counter, Histogram]:
    # labels() looks its child up under a lock on every call; the set of label pairs is small and
    # fixed (provider names are checked before they get here), so each pair is looked up once.
    return DELIVERIES.labels(provider, outcome), HANDLING_SECONDS.labels(provider)


def observe_delivery(*, provider: str, outcome: str, duration_s: float) -> None:
    """On the hot path: one counter increment and one histogram observation."""
    deliveries, handling = _series(provider, outcome)
    deliveries.inc()
    handling.observe(duration_s)


@lru_cache(maxsize=4)
def _batch_series(database: str) -> tuple[Histogram, Histogram]:
    return BATCH_EVENTS.labels(database), BATCH_SECONDS.labels(database)


def observe_batch(database: str, events: int, seconds: float) -> None:
    """Once per write batch, on the event loop (the event writer's `on_batch`, with the database bound)."""
    counted, timed = _batch_series(database)
    counted.observe(events)
    timed.observe(seconds)


def initialise(*, providers: Iterable[str]) -> None:
    """Create every series at zero, so that rate() sees the first delivery of each kind."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        os.makedirs(directory, exist_ok=True)
    elif multiprocessing.parent_process() is not None:
        # uvicorn --workers N starts workers with multiprocessing: without the shared directory each
        # worker would answer /metrics with its own counts only.
        logger.warning("%s is not set: /metrics counts this worker only", MULTIPROC_ENV)
    for provider in providers:
        HANDLING_SECONDS.labels(provider)
        for outcome in OUTCOMES:
            DELIVERIES.labels(provider, outcome)
    DELIVERIES.labels(UNKNOWN_PROVIDER, "unknown_provider")


class _Readiness(Collector):
    """Asked at scrape time, by the worker answering: is the database reachable from here now?"""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        try:
            ping(self._engine)
            ready = 1.0
        except Exception:  # any failure to reach the database means not ready, as /readyz says
            ready = 0.0
        yield GaugeMetricFamily("webhook_storage_ready", "1 when the database answers, else 0", value=ready)


# Collectors asked at scrape time beside readiness, each made for the app's engine (forwarding's
# backlog registers one when NATS_URL is set).
SCRAPE_COLLECTORS: Final[dict[str, Callable[[Engine], Collector]]] = {}


class _Forward(Collector):
    """The process-wide registry (single-process mode), inside the per-scrape registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def exposition(*, engine: Engine, accept: str) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Forward())
    registry.register(_Readiness(engine))
    for make_collector in SCRAPE_COLLECTORS.values():
        registry.register(make_collector(engine))
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
