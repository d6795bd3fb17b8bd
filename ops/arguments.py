"""Argument types shared by `python -m cli`'s commands."""

import argparse
from datetime import UTC, datetime


def utc_time(value: str) -> datetime:
    """An ISO 8601 date or time; UTC when it gives no offset."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
