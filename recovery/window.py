"""Which window a run reads, and how long its lease lasts: the CLI and the periodic runner agree."""

from datetime import datetime, timedelta

from config import Settings


def window_start(settings: Settings, *, mark: datetime | None, now: datetime) -> datetime:
    """From the high-water mark less the overlap, or, before any run, RECOVERY_LOOKBACK_SECONDS ago."""
    if mark is None:
        return now - timedelta(seconds=settings.recovery_lookback_seconds)
    return mark - timedelta(seconds=settings.recovery_overlap_seconds)


def lease_seconds(settings: Settings) -> float:
    """Long enough to outlast a page's retries four times over: a run renews it after the first page
    that ends once a quarter of it has passed (run._leased_run)."""
    return max(120.0, settings.recovery_timeout_seconds * (settings.recovery_max_retries + 1) * 4)
