"""Paddle Billing: `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=...]`, HMAC-SHA256 of f"{ts}:{body}" keyed
with the notification destination's secret key. Several h1 arrive while a secret is rotated; ts must be
within the replay window. Amounts are strings of minor units ("1000" is 10.00 USD).
"""

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from errors import InvalidPayload
from payments.events import NormalizedEvent
from providers import fields
from providers.base import Provider
from security import HeaderMap, verify_paddle

_STATUS_BY_EVENT = {
    "transaction.created": "created",
    "transaction.paid": "captured",
    "transaction.completed": "captured",
    "transaction.payment_failed": "failed",
    "transaction.canceled": "failed",
}
# adjustment.* once approved: a refund (full or partial) or a chargeback and its reversal.
_ADJUSTMENT = {
    ("refund", "full"): "refunded",
    ("refund", "partial"): "partially_refunded",
    ("chargeback", "full"): "disputed",
    ("chargeback", "partial"): "disputed",
    ("chargeback_reverse", "full"): "dispute_won",
    ("chargeback_reverse", "partial"): "dispute_won",
}

_MINOR_UNITS = re.compile(r"-?[0-9]{1,19}")


def _status(event_type: str, data: object) -> str | None:
    if event_type.startswith("adjustment."):
        if fields.get_path(data, "status") != "approved":
            return None
        return _ADJUSTMENT.get((fields.get_path(data, "action"), fields.get_path(data, "type")))
    return _STATUS_BY_EVENT.get(event_type)


def minor_units(value: object, field: str) -> int | None:
    """Paddle writes amounts as strings of an integer in minor units."""
    if value is None or isinstance(value, int):
        return fields.amount(value, field)
    if not isinstance(value, str) or not _MINOR_UNITS.fullmatch(value):
        raise InvalidPayload(f"field {field!r} must be an integer amount in minor units")
    return fields.amount(int(value), field)


class Paddle(Provider):
    name = "paddle"
    required_headers = (("paddle-signature",),)
    stored_headers = ("paddle-signature",)
    signature_headers = ("paddle-signature",)

    @property
    def secrets(self) -> Sequence[str]:
        return self.settings.paddle_webhook_secret

    async def verify(self, body: bytes, headers: HeaderMap, now: float) -> None:
        verify_paddle(
            body,
            headers["paddle-signature"],
            self.settings.paddle_webhook_secret,
            now=now,
            tolerance=self.settings.signature_tolerance_seconds,
        )

    def normalise(
        self, payload: dict[str, Any], *, body: bytes, headers: HeaderMap, received_at: datetime
    ) -> NormalizedEvent:
        event_type = fields.required_text(payload.get("event_type"), "event_type")
        data = payload.get("data")
        adjustment = event_type.startswith("adjustment.")
        # An adjustment names the transaction it adjusts; its own totals are the amount adjusted.
        payment_path = "transaction_id" if adjustment else "id"
        amount_path = "totals.total" if adjustment else "details.totals.grand_total"
        return NormalizedEvent(
            provider=self.name,
            event_id=fields.required_text(payload.get("event_id"), "event_id"),
            id_derived=False,
            event_type=event_type,
            payment_id=fields.text(fields.get_path(data, payment_path), f"data.{payment_path}"),
            status=_status(event_type, data),
            provider_status=fields.text(fields.get_path(data, "status"), "data.status"),
            amount=minor_units(fields.get_path(data, amount_path), f"data.{amount_path}"),
            currency=fields.currency(fields.get_path(data, "currency_code"), "data.currency_code"),
            occurred_at=fields.iso_time(payload.get("occurred_at"), "occurred_at") or received_at,
            received_at=received_at,
            raw_body=body,
            headers=self.delivery_headers(headers),
        )
