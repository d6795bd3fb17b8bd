"""Paystack: hex HMAC-SHA512 of the raw body with the secret key in x-paystack-signature.

Paystack sends no event id, so the key is the body's SHA-256: identical retries dedupe.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from payments.events import NormalizedEvent
from providers import fields
from providers.base import Provider
from security import HeaderMap, verify_paystack

_STATUS_BY_EVENT = {
    "charge.success": "captured",
    "charge.failed": "failed",
    "refund.processed": "refunded",
    "charge.dispute.create": "disputed",
}


class Paystack(Provider):
    name = "paystack"
    required_headers = (("x-paystack-signature",),)
    stored_headers = ("x-paystack-signature",)
    signature_headers = ("x-paystack-signature",)

    @property
    def secrets(self) -> Sequence[str]:
        return self.settings.paystack_secret_key

    async def verify(self, body: bytes, headers: HeaderMap, now: float) -> None:
        verify_paystack(body, headers["x-paystack-signature"], self.settings.paystack_secret_key)

    def normalise(
        self, payload: dict[str, Any], *, body: bytes, headers: HeaderMap, received_at: datetime
    ) -> NormalizedEvent:
        event_type = fields.required_text(payload.get("event"), "event")
        data = payload.get("data")
        # Refund events name the charge they refund in transaction_reference.
        reference_field = "transaction_reference" if event_type.startswith("refund.") else "reference"
        occurred_at = fields.iso_time(fields.get_path(data, "paid_at"), "data.paid_at") or fields.iso_time(
            fields.get_path(data, "created_at"), "data.created_at"
        )
        return NormalizedEvent(
            provider=self.name,
            event_id=fields.derived_event_id(body),
            id_derived=True,
            event_type=event_type,
            payment_id=fields.text(fields.get_path(data, reference_field), f"data.{reference_field}"),
            status=_STATUS_BY_EVENT.get(event_type),
            provider_status=fields.text(fields.get_path(data, "status"), "data.status"),
            amount=fields.amount(fields.get_path(data, "amount"), "data.amount"),
            currency=fields.currency(fields.get_path(data, "currency"), "data.currency"),
            occurred_at=occurred_at or received_at,
            received_at=received_at,
            raw_body=body,
            headers=self.delivery_headers(headers),
        )
