"""What every provider's recovery source provides, and the shared parts of building recovered events."""

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import ClassVar, Final

import orjson

from config import Settings
from payments.events import NormalizedEvent
from recovery.http import ApiClient

RECOVERY: Final = "recovery"


@dataclass
class Page:
    """One page of a provider's list, normalised. `refused` counts items the adapter could not read."""

    events: list[NormalizedEvent] = field(default_factory=list)
    refused: int = 0


class Source(ABC):
    name: ClassVar[str]
    # True where the provider has no events API and each item is an observation of a payment's state at
    # fetch time (Razorpay, Paystack): stored only when it differs from ours.
    observes: ClassVar[bool] = False
    # The settings a run needs, as environment variables, for the "skipped" line and 401 messages.
    credential_settings: ClassVar[str]

    def __init__(self, settings: Settings, *, sleep: Callable[[float], None] | None = None) -> None:
        self.settings = settings
        self.client = ApiClient(
            base=self.base,
            credential=self.credential_settings,
            timeout=settings.recovery_timeout_seconds,
            max_retries=settings.recovery_max_retries,
        )
        if sleep is not None:
            self.client.sleep = sleep

    @property
    @abstractmethod
    def base(self) -> str: ...

    @property
    @abstractmethod
    def configured(self) -> bool: ...

    @abstractmethod
    def pages(self, *, since: datetime, until: datetime) -> Iterator[Page]:
        """The provider's items created in [since, until), a page at a time, as it pages them."""

    def payment(self, payment_id: str) -> NormalizedEvent | None:
        """One payment's state now, as an observation; None when the provider does not know it."""
        raise NotImplementedError


def iso_utc(value: datetime) -> str:
    """A time as the APIs take it in query parameters: ISO 8601 in UTC, `2026-11-01T00:00:00Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def recovered(event: NormalizedEvent, *, source: str) -> NormalizedEvent:
    """An adapter's event marked as recovered: the headers say where it was read, not a delivery's."""
    return replace(event, origin=RECOVERY, headers={"recovered-from": source})


def observation(
    *,
    provider: str,
    payment_id: str,
    status: str | None,
    provider_status: str | None,
    amount: int | None,
    currency: str | None,
    entity: object,
    key: str,
    source: str,
) -> NormalizedEvent:
    """A payment's state at fetch time as an event: a derived id per (payment, state), so observing the
    same state again is a duplicate; `recovery.<status>` as its type; the fetch time as its time."""
    now = datetime.now(UTC)
    return NormalizedEvent(
        provider=provider,
        event_id=f"recovered:{payment_id}:{key}",
        id_derived=True,
        event_type=f"recovery.{status or 'unknown'}",
        payment_id=payment_id,
        status=status,
        provider_status=provider_status,
        amount=amount,
        currency=currency,
        occurred_at=now,
        received_at=now,
        raw_body=orjson.dumps(entity),
        headers={"recovered-from": source},
        origin=RECOVERY,
    )
