"""The recovery sources, one per provider that has an API to read back from. Standard Webhooks senders
have none: their events cannot be recovered here (README, "Missed webhooks")."""

from collections.abc import Callable

from config import Settings
from recovery.paypal import PayPalSource
from recovery.paystack import PaystackSource
from recovery.razorpay import RazorpaySource
from recovery.source import Source
from recovery.stripe import StripeSource

SOURCES: tuple[type[Source], ...] = (StripeSource, PayPalSource, RazorpaySource, PaystackSource)
NAMES: tuple[str, ...] = tuple(source.name for source in SOURCES)


def build_sources(settings: Settings, *, sleep: Callable[[float], None] | None = None) -> dict[str, Source]:
    return {source.name: source(settings, sleep=sleep) for source in SOURCES}
