"""Recovery's counters, beside the delivery metrics on /metrics (ops/metrics.py)."""

from collections.abc import Iterable
from typing import Final

from prometheus_client import Counter

RUNS: Final = Counter(
    "recovery_runs",
    "Recovery runs by provider and outcome",
    ["provider", "outcome"],
)
EVENTS: Final = Counter(
    "recovery_events",
    "Items read back by recovery, by provider and result",
    ["provider", "result"],
)

OUTCOMES: Final = (
    "ok",
    "capped",
    "skipped",
    "busy",
    "credentials_refused",
    "provider_unavailable",
    "storage_unavailable",
    "lease_lost",
    "failed",
)
RESULTS: Final = ("new", "duplicate", "unchanged", "refused", "would_store")


def initialise(*, providers: Iterable[str]) -> None:
    """Every series at zero, so that rate() and increase() see the first run of each kind."""
    for provider in providers:
        for outcome in OUTCOMES:
            RUNS.labels(provider, outcome)
        for result in RESULTS:
            EVENTS.labels(provider, result)
