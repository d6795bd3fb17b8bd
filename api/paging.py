"""Keyset paging: opaque cursors and the `Link: <...>; rel="next"` header.

A cursor is the sort key of the last row a page returned, so the next page is one index range scan
that starts right after it: no OFFSET (which rereads every skipped row) and no COUNT. It is urlsafe
base64 of a small JSON array tagged with its kind, so a cursor from one list is refused by another.
"""

import base64
import binascii
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, urlencode

import orjson
from starlette.requests import Request

from errors import InvalidCursor

HISTORY: Final = "h"  # a payment's events: (occurred_at, row id), oldest first
FEED: Final = "f"  # all events: row id, newest first
MAX_ROW_ID: Final = 2**63 - 1  # BIGINT: a larger number would be a database error, not a 422


def encode(kind: str, *key: datetime | int) -> str:
    values = [kind, *(value.isoformat() if isinstance(value, datetime) else value for value in key)]
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def _refuse() -> InvalidCursor:
    return InvalidCursor("query.after: not a cursor this API issued for this list")


def _values(cursor: str, kind: str, size: int) -> list[Any]:
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):  # orjson.JSONDecodeError is a ValueError
        raise _refuse() from None
    if not (isinstance(values, list) and len(values) == size + 1 and values[0] == kind):
        raise _refuse()
    return values[1:]


def _row_id(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ROW_ID:
        raise _refuse()
    return value


def decode_history(cursor: str) -> tuple[datetime, int]:
    """The (occurred_at, row id) after which the page starts; `InvalidCursor` unless this API issued it."""
    occurred_at, row_id = _values(cursor, HISTORY, 2)
    try:
        when = datetime.fromisoformat(occurred_at)
        if when.tzinfo is None:
            raise ValueError("naive")
        when = when.astimezone(UTC)
    except (TypeError, ValueError, OverflowError):
        raise _refuse() from None
    return when, _row_id(row_id)


def decode_feed(cursor: str) -> int:
    (row_id,) = _values(cursor, FEED, 1)
    return _row_id(row_id)


def decode_row_id(cursor: str, kind: str) -> int:
    """A cursor of a list keyed by one row id (the feed's, a destination's dead list)."""
    (row_id,) = _values(cursor, kind, 1)
    return _row_id(row_id)


def next_link(request: Request, cursor: str) -> str:
    """The same request with `after` set to `cursor`, as a relative URL (right behind any proxy)."""
    query = [(name, value) for name, value in request.query_params.multi_items() if name != "after"]
    query.append(("after", cursor))
    return f'<{quote(request.scope["path"])}?{urlencode(query)}>; rel="next"'
