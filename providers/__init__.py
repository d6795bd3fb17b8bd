"""The provider registry: one adapter per provider. Adding a provider touches this list and its module."""

from config import Settings
from providers.adyen import Adyen
from providers.base import REDACTED, Provider
from providers.cashfree import Cashfree
from providers.checkout import Checkout
from providers.gocardless import GoCardless
from providers.mercadopago import MercadoPago
from providers.paddle import Paddle
from providers.paypal import PayPal
from providers.paystack import Paystack
from providers.razorpay import Razorpay
from providers.square import Square
from providers.standard import StandardWebhooks
from providers.stripe import Stripe

ADAPTERS: tuple[type[Provider], ...] = (
    Razorpay,
    Stripe,
    PayPal,
    StandardWebhooks,
    Paystack,
    Adyen,
    GoCardless,
    Paddle,
    Square,
    Checkout,
    MercadoPago,
    Cashfree,
)
# Every stored header that holds a signature, whichever provider: the read API redacts them.
SIGNATURE_HEADERS: frozenset[str] = frozenset(
    name for adapter in ADAPTERS for name in adapter.signature_headers
)


def build_registry(settings: Settings) -> dict[str, Provider]:
    return {adapter.name: adapter(settings) for adapter in ADAPTERS}


__all__ = ["ADAPTERS", "REDACTED", "SIGNATURE_HEADERS", "Provider", "build_registry"]
