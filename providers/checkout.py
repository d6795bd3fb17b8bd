"""Checkout.com: `Cko-Signature`, hex HMAC-SHA256 of the raw body with the webhook's secret key; when
CHECKOUT_AUTHORIZATION_KEY is set, the `Authorization` header must equal one of its values as well.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from payments.events import NormalizedEvent
from providers import fields
from providers.base import Provider
from security import HeaderMap, require_header, verify_checkout, verify_static_key

_STATUS_BY_EVENT = {
    "payment_pending": "created",
    "payment_approved": "authorized",
    "payment_captured": "captured",
    "payment_paid": "captured",
    "payment_declined": "failed",
    "payment_expired": "failed",
    "payment_canceled": "failed",
    "payment_voided": "failed",
    "payment_refunded": "refunded",
    "dispute_received": "disputed",
    "dispute_evidence_required": "disputed",
    "dispute_won": "dispute_won",
    "dispute_lost": "dispute_lost",
    "dispute_accepted": "dispute_lost",
}


class Checkout(Provider):
    name = "checkout"
    required_headers = (("cko-signature",),)
    stored_headers = ("cko-signature",)
    signature_headers = ("cko-signature",)

    @property
    def secrets(self) -> Sequence[str]:
        return self.settings.checkout_webhook_secret

    def check_headers(self, headers: HeaderMap) -> None:
        super().check_headers(headers)
        if keys := self.settings.checkout_authorization_key:
            verify_static_key(require_header(headers, "authorization"), keys, header="Authorization")

    async def verify(self, body: bytes, headers: HeaderMap, now: float) -> None:
        verify_checkout(body, headers["cko-signature"], self.settings.checkout_webhook_secret)

    def normalise(
        self, payload: dict[str, Any], *, body: bytes, headers: HeaderMap, received_at: datetime
    ) -> NormalizedEvent:
        event_type = fields.required_text(payload.get("type"), "type")
        data = payload.get("data")
        # Payment events describe the payment itself; dispute events point at theirs.
        payment_path = "payment_id" if event_type.startswith("dispute_") else "id"
        return NormalizedEvent(
            provider=self.name,
            event_id=fields.required_text(payload.get("id"), "id"),
            id_derived=False,
            event_type=event_type,
            payment_id=fields.text(fields.get_path(data, payment_path), f"data.{payment_path}"),
            status=_STATUS_BY_EVENT.get(event_type),
            provider_status=fields.text(
                fields.get_path(data, "status") or fields.get_path(data, "response_summary"), "data.status"
            ),
            amount=fields.amount(fields.get_path(data, "amount"), "data.amount"),
            currency=fields.currency(fields.get_path(data, "currency"), "data.currency"),
            occurred_at=fields.iso_time(payload.get("created_on"), "created_on") or received_at,
            received_at=received_at,
            raw_body=body,
            headers=self.delivery_headers(headers),
        )
