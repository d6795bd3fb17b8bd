"""The normalised event every provider adapter produces, and the payment lifecycle it feeds."""

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

# The documented status vocabulary, ranked: a payment's state only moves to an equal or higher rank,
# so a late or replayed event never moves it back. `failed` ranks below `authorized` because Razorpay
# documents that `payment.failed` can arrive before a late authorisation and capture of the same
# payment. Disputes are a branch after capture: opened, then won or lost.
STATUS_RANK: Final[dict[str, int]] = {
    "created": 0,
    "failed": 1,
    "authorized": 2,
    "captured": 3,
    "partially_refunded": 4,
    "refunded": 5,
    "disputed": 6,
    "dispute_won": 7,
    "dispute_lost": 7,
}
NO_STATUS_RANK: Final = -1  # events that say nothing about the payment's state (e.g. refund.created)


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, several times
# the cost of a plain one's (BENCHMARKS.md, "Deliveries of many events"), and one is built per event on
# the delivery path. Nothing assigns to an event once it is built; its `headers` dict made it
# unhashable all along.
@dataclass(slots=True)
class NormalizedEvent:
    provider: str
    event_id: str
    id_derived: bool  # True when the provider sent no id and the key is the body's SHA-256
    event_type: str | None
    payment_id: str | None
    status: str | None  # from STATUS_RANK's vocabulary
    provider_status: str | None  # exactly as the provider said it
    amount: int | None  # minor units of `currency`
    currency: str | None  # upper-case ISO 4217
    occurred_at: datetime
    received_at: datetime
    raw_body: bytes
    headers: dict[str, str]
    # A second identity, one the signature binds where the event id may not be (PayPal's transmission
    # id, the SHA-256 of a Razorpay body): unique per provider in the database, so an authentic delivery
    # cannot be stored twice under different ids, nor a signature reused for another body.
    signed_key: str | None = None
    # How it arrived: a signed delivery ("webhook") or read back from the provider's API ("recovery").
    origin: Literal["webhook", "recovery"] = "webhook"
