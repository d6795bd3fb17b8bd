"""The read API's parameters, each validated (a bad value is a 422 naming it, never a 500) and described
for /docs. Shared by every read route so that the same name always means the same thing."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator
from starlette.convertors import Convertor, register_url_convertor

from payments.events import STATUS_RANK

# No control characters: PostgreSQL refuses NUL in text (a 500 if it got that far), and the rest only
# ever arrives by mistake or as an attack on logs and terminals.
TEXT = r"^[^\x00-\x1f\x7f]+$"
PROVIDER_NAME = r"^[a-z0-9_-]+$"


class IdConvertor(Convertor[str]):
    """`{name:id}`: the rest of the path, "/" included, as Starlette's `path`, and line breaks too: ids
    are the providers' own, and a "%0A" that `path` would not match must reach the id's validation
    (422 naming it), as it does on the history's hot route, not fall through to a 404."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("id", IdConvertor())


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    # A time without an offset is read as UTC, so `since=2025-07-07` works as typed in a terminal.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date is out of range once converted to UTC") from None


def _known_status(value: str | None) -> str | None:
    if value is not None and value not in STATUS_RANK:
        raise ValueError(f"unknown status; use one of {', '.join(STATUS_RANK)}")
    return value


PaymentId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=255,
        pattern=TEXT,
        description="The provider's payment id (1-255 characters, no control characters)",
        examples=["pay_014"],
    ),
]
ProviderName = Annotated[
    str,
    Path(
        max_length=32,
        pattern=PROVIDER_NAME,
        description="The provider's name in this service",
        examples=["razorpay"],
    ),
]
EventId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=255,
        pattern=TEXT,
        description="The event id as stored: the provider's own id, or `sha256:<hex>` when it sent none",
        examples=["evt_auth_014"],
    ),
]
ProviderFilter = Annotated[
    str | None,
    Query(
        max_length=32, pattern=PROVIDER_NAME, description="Only this provider's events", examples=["razorpay"]
    ),
]
EventTypeFilter = Annotated[
    str | None,
    Query(
        max_length=255,
        pattern=TEXT,
        description="Only events of this type, exactly as the provider names it",
        examples=["payment.captured"],
    ),
]
StatusFilter = Annotated[
    str | None,
    Query(
        max_length=32,
        description="Only events that reported this normalised status",
        examples=["captured"],
        json_schema_extra={"enum": list(STATUS_RANK)},
    ),
    AfterValidator(_known_status),
]
Limit = Annotated[int, Query(ge=1, le=1000, description="Rows per page, 1 to 1000", examples=[100])]


def provider_choice(description: str) -> object:
    """A `provider` query parameter that picks one provider's payment (the state route, the recover
    route): each route says in `description` when it is needed."""
    return Query(max_length=32, pattern=PROVIDER_NAME, description=description, examples=["razorpay"])


def cursor_param(example: str) -> object:
    return Query(
        max_length=200,
        description='The cursor from the previous page\'s `Link: <...>; rel="next"` header; opaque',
        examples=[example],
    )


HistoryAfter = Annotated[str | None, cursor_param("WyJoIiwiMjAyNS0wNy0wN1QxMDo1OToyNSswMDowMCIsMTJd")]
FeedAfter = Annotated[str | None, cursor_param("WyJmIiwxMjNd")]


def time_bound(description: str, example: str) -> object:
    """A `since`/`until` parameter: ISO 8601, UTC when it has no offset."""
    return Query(description=f"{description} (ISO 8601; UTC when no offset is given)", examples=[example])


HistorySince = Annotated[
    datetime | None,
    time_bound("Events that occurred at or after this time", "2025-07-07T10:00:00Z"),
    AfterValidator(_utc),
]
HistoryUntil = Annotated[
    datetime | None,
    time_bound("Events that occurred before this time", "2025-07-08T00:00:00Z"),
    AfterValidator(_utc),
]
FeedSince = Annotated[
    datetime | None,
    time_bound("Events this service stored at or after this time", "2025-07-07T10:00:00Z"),
    AfterValidator(_utc),
]
FeedUntil = Annotated[
    datetime | None,
    time_bound("Events this service stored before this time", "2025-07-08T00:00:00Z"),
    AfterValidator(_utc),
]
