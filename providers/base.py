"""What every provider adapter provides: which headers it needs, how it verifies, how it normalises."""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import orjson

from config import Settings
from errors import ApiError
from payments.events import NormalizedEvent
from providers import fields
from security import HeaderMap, require_header

# Headers worth keeping with every stored event: they identify the delivery and never hold a secret.
# Authorization, cookies and anything else not listed are never stored.
COMMON_STORED_HEADERS = ("content-type", "user-agent", "x-request-id")
# What the read API shows in place of a signature header's value.
REDACTED = "[redacted]"


@dataclass(frozen=True, slots=True)
class Answer:
    """What a stored delivery is answered with; the route turns it into the HTTP response."""

    status_code: int
    body: bytes
    media_type: str | None = "application/json"


class Provider(ABC):
    name: ClassVar[str]
    # Each tuple is one required header with its accepted aliases; all must be present before the
    # body is read, so a delivery with no signature costs nothing.
    required_headers: ClassVar[tuple[tuple[str, ...], ...]]
    # Provider headers stored with the event (signatures and ids are not secret; they are evidence).
    stored_headers: ClassVar[tuple[str, ...]]
    # Of those, the ones holding a signature: kept in the database, shown to readers as REDACTED, since a
    # signature that verifies is what a forger needs (PayPal's covers only a CRC32 of the body).
    signature_headers: ClassVar[tuple[str, ...]]
    # Headers whose value becomes the event id (each with its aliases): checked with the other headers,
    # before the signature, so a delivery is never refused after it proved authentic for an id that
    # its sender would send again on every retry.
    identity_headers: ClassVar[tuple[tuple[str, ...], ...]] = ()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    @abstractmethod
    def secrets(self) -> Sequence[str]:
        """The configured secrets (or webhook ids); empty means the provider is not configured."""

    def check_headers(self, headers: HeaderMap) -> None:
        for names in self.required_headers:
            require_header(headers, *names)
        for names in self.identity_headers:
            fields.header_text(first_header(headers, *names), names[0])

    @abstractmethod
    async def verify(self, body: bytes, headers: HeaderMap, now: float) -> None:
        """Raise a `errors.SignatureError` unless the body is authentic."""

    async def authenticate(self, body: bytes, headers: HeaderMap, now: float, *, query_string: bytes) -> None:
        """The route's call: `verify`, for providers that sign the body and headers only. One that also
        signs part of the URL (Mercado Pago's `data.id`) overrides this to parse the raw query string,
        which no other provider pays for."""
        await self.verify(body, headers, now)

    @abstractmethod
    def normalise(
        self, payload: dict[str, Any], *, body: bytes, headers: HeaderMap, received_at: datetime
    ) -> NormalizedEvent:
        """Raise `errors.InvalidPayload` naming the field when the provider's own format is not met."""

    def delivery_headers(self, headers: HeaderMap) -> dict[str, str]:
        return {
            name: _as_sent(value)
            for name in (*COMMON_STORED_HEADERS, *self.stored_headers)
            if (value := headers.get(name)) is not None
        }

    def events(
        self, payload: dict[str, Any], *, body: bytes, headers: HeaderMap, received_at: datetime
    ) -> list[NormalizedEvent]:
        """The delivery's events: one, unless the provider batches them (Adyen, GoCardless)."""
        return [self.normalise(payload, body=body, headers=headers, received_at=received_at)]

    def accepted(self, events: Sequence[NormalizedEvent], new: Sequence[bool]) -> Answer:
        """The answer once every event is committed; providers that expect another override it."""
        if len(events) == 1:
            status = "processed" if new[0] else "duplicate"
            return Answer(200, orjson.dumps({"status": status, "event_id": events[0].event_id}))
        listed = [
            {"event_id": event.event_id, "status": "processed" if is_new else "duplicate"}
            for event, is_new in zip(events, new, strict=True)
        ]
        status = "processed" if any(new) else "duplicate"
        return Answer(200, orjson.dumps({"status": status, "events": listed}))

    def refusal_status(self, error: ApiError) -> int | None:
        """The HTTP status for a refused delivery when the provider documents its own (GoCardless's
        498 for an invalid signature); None keeps the error's. The body keeps the one error shape."""
        return None


def first_header(headers: HeaderMap, *names: str) -> str | None:
    """The first of `names` present and non-empty, as require_header picks it; None when there is none."""
    return next((value for name in names if (value := headers.get(name))), None)


def _as_sent(value: str) -> str:
    # Kept as evidence: UTF-8 where the bytes are UTF-8 (what the sender wrote, and what the event id
    # was read as), else each byte as the server decoded it.
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


class ManyEventsProvider(Provider):
    """A provider whose deliveries carry a list of events (Adyen, GoCardless): each element is stored as
    an event of its own, its JSON as its raw body, with the delivery's kept headers, read once a
    delivery rather than once an event."""

    @abstractmethod
    def items(self, payload: dict[str, Any]) -> Sequence[Any]:
        """The delivery's elements, each to become an event; `errors.InvalidPayload` when there are none."""

    @abstractmethod
    def item_event(
        self, payload: dict[str, Any], *, body: bytes, kept: dict[str, str], received_at: datetime
    ) -> NormalizedEvent:
        """One element; `body` is its JSON, `kept` the delivery's kept headers (`delivery_headers`)."""

    def events(
        self, payload: dict[str, Any], *, body: bytes, headers: HeaderMap, received_at: datetime
    ) -> list[NormalizedEvent]:
        kept = self.delivery_headers(headers)
        return [
            self.item_event(item, body=orjson.dumps(item), kept=kept, received_at=received_at)
            for item in self.items(payload)
        ]

    def normalise(
        self, payload: dict[str, Any], *, body: bytes, headers: HeaderMap, received_at: datetime
    ) -> NormalizedEvent:
        """One element on its own; `body` is that element's JSON (the delivery's body holds them all)."""
        kept = self.delivery_headers(headers)
        return self.item_event(payload, body=body, kept=kept, received_at=received_at)
