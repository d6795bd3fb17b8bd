"""When a failed delivery is tried again, and when it is dead: exponential backoff with full jitter,
`Retry-After` honoured on 429 and 503, bounded by the destination's max_attempts and max_age_seconds."""

import email.utils
import random
from datetime import UTC, datetime, timedelta

from destinations.file import Destination

# A Retry-After larger than this is read as this: a receiver cannot park an event for days.
RETRY_AFTER_CAP_SECONDS = 3600.0
RETRY_AFTER_STATUSES = frozenset({429, 503})


def backoff_seconds(destination: Destination, *, round_attempts: int, rng: random.Random) -> float:
    """Full jitter: a uniform wait in [0, min(max, base * 2**(n-1))] after the n-th failed attempt."""
    ceiling = destination.backoff_base_seconds * 2 ** min(round_attempts - 1, 62)
    return rng.uniform(0, min(destination.backoff_max_seconds, ceiling))


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """Seconds from `Retry-After` (delta-seconds or an HTTP date); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), RETRY_AFTER_CAP_SECONDS)


def next_attempt(
    destination: Destination,
    *,
    round_attempts: int,
    queued_at: datetime,
    now: datetime,
    status_code: int | None,
    retry_after: str | None,
    rng: random.Random,
) -> datetime | None:
    """When to try again after the `round_attempts`-th failed attempt; None when the event is dead."""
    if round_attempts >= destination.max_attempts:
        return None
    deadline = queued_at + timedelta(seconds=destination.max_age_seconds)
    if now >= deadline:
        return None
    wait = backoff_seconds(destination, round_attempts=round_attempts, rng=rng)
    if status_code in RETRY_AFTER_STATUSES:
        asked = retry_after_seconds(retry_after, now=now)
        if asked is not None:
            wait = asked
    # The last attempt comes no later than the deadline; if it fails, the event is dead.
    return min(now + timedelta(seconds=wait), deadline)
