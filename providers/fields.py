"""Reading typed fields out of a provider's JSON, with errors that name the field.

Everything stored must fit its column on both databases (PostgreSQL refuses NUL in text and numbers
past 64 bits), so values are checked here, at the edge, rather than failing a whole write batch later.
"""

import hashlib
from datetime import UTC, datetime
from typing import Any

from errors import InvalidPayload

MAX_ID_LENGTH = 255
BIGINT_MAX = 2**63 - 1
_MISSING = object()

# The times an event may carry: every instant in this range is stored and read back exactly by both
# databases and all three drivers. Outside it, asyncpg reads year 1's first instant and year 9999's
# last as -infinity and infinity (a history cursor then points back at its own page), and Python's
# datetime ends at both years. A time outside it is how senders say "unset" (Go's zero time is
# 0001-01-01T00:00:00Z), so it is read as absent: the event falls back to its next time, as when the
# field is missing, and is stored rather than refused (the sender could not fix a refusal by retrying).
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def get_path(payload: object, path: str) -> Any:
    """`get_path(p, "data.object.id")`: the value, or None where any step is absent or not an object."""
    value: Any = payload
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def text(value: object, field: str, *, required: bool = False, max_length: int = MAX_ID_LENGTH) -> str | None:
    """An identifier-like string (ids, types, statuses). Numbers are accepted as their decimal text."""
    if value is None or value == "":
        if required:
            raise InvalidPayload(f"payload is missing the required field {field!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidPayload(f"field {field!r} must be a string")
    # Checked before str(): a huge integer would take long to format, or exceed Python's digit limit.
    if isinstance(value, int) and abs(value) >= 10**max_length:
        raise InvalidPayload(f"field {field!r} is longer than {max_length} characters")
    result = str(value)
    if len(result) > max_length:
        raise InvalidPayload(f"field {field!r} is longer than {max_length} characters")
    if not result.isprintable():
        raise InvalidPayload(f"field {field!r} contains control characters")
    return result


def header_text(value: str | None, field: str) -> str | None:
    """A header value that becomes part of what is stored (an event id), as the sender wrote it: its
    bytes read as UTF-8. Servers hand header values over decoded as latin-1, which turned `mé14` into
    `mÃ©14` and `m€15` into text with a control character."""
    if value is not None:
        try:
            value = value.encode("latin-1").decode("utf-8")
        except UnicodeEncodeError:
            pass  # not from a server: already text
        except UnicodeDecodeError as exc:
            raise InvalidPayload(f"header {field!r} is not UTF-8") from exc
    return text(value, field)


def required_text(value: object, field: str) -> str:
    result = text(value, field, required=True)
    assert result is not None  # text() raises for a missing required field
    return result


def amount(value: object, field: str) -> int | None:
    """An integer amount in minor units that fits a 64-bit column."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPayload(f"field {field!r} must be an integer amount in minor units")
    if abs(value) > BIGINT_MAX:
        raise InvalidPayload(f"field {field!r} is out of range")
    return value


def currency(value: object, field: str) -> str | None:
    code = text(value, field, max_length=3)
    if code is None:
        return None
    if len(code) != 3 or not (code.isascii() and code.isalpha()):
        raise InvalidPayload(f"field {field!r} must be a three-letter ISO 4217 code")
    return code.upper()


def _in_range(value: datetime) -> datetime | None:
    return value if EARLIEST_TIME <= value <= LATEST_TIME else None


def unix_time(value: object, field: str) -> datetime | None:
    """Unix seconds as a UTC time; None when absent or outside EARLIEST_TIME..LATEST_TIME."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPayload(f"field {field!r} must be a unix timestamp")
    # Compared before converting: past the range, fromtimestamp overflows or loses the microseconds.
    if not EARLIEST_TIME.timestamp() <= value <= LATEST_TIME.timestamp():
        return None
    return _in_range(datetime.fromtimestamp(value, UTC))


def iso_time(value: object, field: str) -> datetime | None:
    """An ISO 8601 time in UTC; None when absent or outside EARLIEST_TIME..LATEST_TIME."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidPayload(f"field {field!r} must be an ISO 8601 time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidPayload(f"field {field!r} is not an ISO 8601 time") from exc
    # A time without an offset is taken as UTC, which is what every provider here sends.
    if parsed.tzinfo is None:
        return _in_range(parsed.replace(tzinfo=UTC))
    try:
        return _in_range(parsed.astimezone(UTC))
    except OverflowError:
        # An offset that carries the time past year 1 or 9999: outside the range either way.
        return None


def derived_event_id(body: bytes) -> str:
    """The key for providers that send no event id: identical retries of one body dedupe."""
    return "sha256:" + hashlib.sha256(body).hexdigest()
