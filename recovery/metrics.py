"""Recovery's counters, beside the delivery metrics on /metrics (ops/metrics.py)."""

from typing import Final

from prometheus_client import Counter

RUNS: Final = Counter(
    "recovery_runs",
    "Recovery runs by provider and outcome (ok, capped, skipped, busy, credentials_refused, "
    "provider_unavailable, storage_unavailable)",
    ["provider", "outcome"],
)
EVENTS: Final = Counter(
    "recovery_events",
    "Items read back by recovery, by provider and result (new, duplicate, unchanged, refused, would_store)",
    ["provider", "result"],
)
