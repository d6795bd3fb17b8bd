"""The provider registry: one adapter per provider. Adding a provider touches this list and its module."""

from config import Settings
from providers.base import Provider
from providers.paypal import PayPal
from providers.paystack import Paystack
from providers.razorpay import Razorpay
from providers.standard import StandardWebhooks
from providers.stripe import Stripe

ADAPTERS: tuple[type[Provider], ...] = (Razorpay, Stripe, PayPal, StandardWebhooks, Paystack)


def build_registry(settings: Settings) -> dict[str, Provider]:
    return {adapter.name: adapter(settings) for adapter in ADAPTERS}


__all__ = ["ADAPTERS", "Provider", "build_registry"]
