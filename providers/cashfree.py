"""Cashfree Payments: `x-webhook-signature`, base64 HMAC-SHA256 keyed with the client secret over the
`x-webhook-timestamp` header followed by the raw body; the timestamp must be within the replay window.

Cashfree sends no event id, so the key is the body's SHA-256: identical retries dedupe. A payment here is
Cashfree's order (`order_id`), which payment, refund and dispute events all name. Amounts are decimals.
"""

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from errors import InvalidPayload
from payments.events import NormalizedEvent
from providers import fields
from providers.base import Provider
from providers.money import decimal_to_minor
from security import HeaderMap, verify_cashfree

_STATUS_BY_EVENT = {
    "PAYMENT_SUCCESS_WEBHOOK": "captured",
    "PAYMENT_FAILED_WEBHOOK": "failed",
    "PAYMENT_USER_DROPPED_WEBHOOK": "failed",
    "DISPUTE_CREATED": "disputed",
}
_DISPUTE_OUTCOME = {"DISPUTE_MERCHANT_WON": "dispute_won", "DISPUTE_MERCHANT_LOST": "dispute_lost"}
# Where each kind of event keeps its object: (object, payment id, status, amount, currency).
_PATHS = {
    "PAYMENT": (
        "data.payment",
        "data.order.order_id",
        "payment_status",
        "payment_amount",
        "payment_currency",
    ),
    "REFUND": ("data.refund", "data.refund.order_id", "refund_status", "refund_amount", "refund_currency"),
    "DISPUTE": (
        "data.dispute",
        "data.order_details.order_id",
        "dispute_status",
        "dispute_amount",
        "dispute_amount_currency",
    ),
}


def _status(event_type: str, provider_status: str | None) -> str | None:
    if event_type == "REFUND_STATUS_WEBHOOK":
        return "refunded" if provider_status == "SUCCESS" else None
    if event_type in ("DISPUTE_UPDATED", "DISPUTE_CLOSED"):
        return _DISPUTE_OUTCOME.get(provider_status or "", "disputed")
    return _STATUS_BY_EVENT.get(event_type)


def decimal_amount(value: object, currency: str | None, field: str) -> int | None:
    """A JSON number or string in major units (2.00 INR) -> minor units (200), exactly."""
    if value is None or currency is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidPayload(f"field {field!r} must be a decimal amount")
    # repr of a float is its shortest round-trip form: 10.99 stays "10.99", never 10.9900000001.
    text = str(value) if not isinstance(value, float) else format(Decimal(repr(value)), "f")
    try:
        return fields.amount(decimal_to_minor(text, currency), field)
    except ValueError as exc:
        raise InvalidPayload(f"field {field!r} is not an exact amount in {currency}") from exc


class Cashfree(Provider):
    name = "cashfree"
    required_headers = (("x-webhook-signature",), ("x-webhook-timestamp",))
    stored_headers = ("x-webhook-signature", "x-webhook-timestamp", "x-webhook-version")
    signature_headers = ("x-webhook-signature",)

    @property
    def secrets(self) -> Sequence[str]:
        return self.settings.cashfree_client_secret

    async def verify(self, body: bytes, headers: HeaderMap, now: float) -> None:
        verify_cashfree(
            body,
            signature=headers["x-webhook-signature"],
            timestamp=headers["x-webhook-timestamp"],
            secrets=self.settings.cashfree_client_secret,
            now=now,
            tolerance=self.settings.signature_tolerance_seconds,
        )

    def normalise(
        self, payload: dict[str, Any], *, body: bytes, headers: HeaderMap, received_at: datetime
    ) -> NormalizedEvent:
        event_type = fields.required_text(payload.get("type"), "type")
        obj_path, payment_path, status_key, amount_key, currency_key = _PATHS.get(
            event_type.split("_", 1)[0], _PATHS["PAYMENT"]
        )
        obj = fields.get_path(payload, obj_path)
        provider_status = fields.text(fields.get_path(obj, status_key), f"{obj_path}.{status_key}")
        currency = fields.currency(fields.get_path(obj, currency_key), f"{obj_path}.{currency_key}")
        return NormalizedEvent(
            provider=self.name,
            event_id=fields.derived_event_id(body),
            id_derived=True,
            event_type=event_type,
            payment_id=fields.text(fields.get_path(payload, payment_path), payment_path),
            status=_status(event_type, provider_status),
            provider_status=provider_status,
            amount=decimal_amount(fields.get_path(obj, amount_key), currency, f"{obj_path}.{amount_key}"),
            currency=currency,
            occurred_at=fields.iso_time(payload.get("event_time"), "event_time") or received_at,
            received_at=received_at,
            raw_body=body,
            headers=self.delivery_headers(headers),
        )
