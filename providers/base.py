"""What every provider adapter provides: which headers it needs, how it verifies, how it normalises."""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from config import Settings
from payments.events import NormalizedEvent
from providers import fields
from security import HeaderMap, require_header

# Headers worth keeping with every stored event: they identify the delivery and never hold a secret.
# Authorization, cookies and anything else not listed are never stored.
COMMON_STORED_HEADERS = ("content-type", "user-agent", "x-request-id")
# What the read API shows in place of a signature header's value.
REDACTED = "[redacted]"


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
