"""Razorpay: hex HMAC-SHA256 of the raw body in X-Razorpay-Signature; event id in X-Razorpay-Event-Id.

Real deliveries carry `"entity": "event"` and no id in the body; the widely used mock payloads carry a
top-level `id` instead; failing both, the body's SHA-256 is the key (marked as derived).
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from payments.events import NormalizedEvent
from providers import fields
from providers.base import Provider
from security import HeaderMap, verify_razorpay

# Normalised status by event type. The event type, not the entity's status, says what happened: a
# payment.authorized payload is a snapshot and may already show "captured" (razorpay-python's own
# test payload does). payment.dispute.closed says nothing about who won, so it leaves the state alone.
_STATUS_BY_EVENT = {
    "payment.authorized": "authorized",
    "payment.captured": "captured",
    "payment.failed": "failed",
    "order.paid": "captured",
    "payment.dispute.created": "disputed",
    "payment.dispute.under_review": "disputed",
    "payment.dispute.action_required": "disputed",
    "payment.dispute.won": "dispute_won",
    "payment.dispute.lost": "dispute_lost",
}


def _refund_status(payment: object) -> str:
    refunded = fields.get_path(payment, "amount_refunded")
    total = fields.get_path(payment, "amount")
    if fields.get_path(payment, "refund_status") == "partial":
        return "partially_refunded"
    if isinstance(refunded, int) and isinstance(total, int) and 0 < refunded < total:
        return "partially_refunded"
    return "refunded"


class Razorpay(Provider):
    name = "razorpay"
    required_headers = (("x-razorpay-signature",),)
    stored_headers = ("x-razorpay-signature", "x-razorpay-event-id")
    signature_headers = ("x-razorpay-signature",)
    identity_headers = (("x-razorpay-event-id",),)

    @property
    def secrets(self) -> Sequence[str]:
        return self.settings.razorpay_webhook_secret

    async def verify(self, body: bytes, headers: HeaderMap, now: float) -> None:
        verify_razorpay(body, headers["x-razorpay-signature"], self.settings.razorpay_webhook_secret)

    def normalise(
        self, payload: dict[str, Any], *, body: bytes, headers: HeaderMap, received_at: datetime
    ) -> NormalizedEvent:
        event_type = fields.required_text(payload.get("event"), "event")
        event_id = fields.header_text(
            headers.get("x-razorpay-event-id"), "X-Razorpay-Event-Id"
        ) or fields.text(payload.get("id"), "id")
        payment = fields.get_path(payload, "payload.payment.entity")
        # The entity the event is about: its status and amount are the event's.
        if event_type.startswith("refund."):
            subject, subject_name = fields.get_path(payload, "payload.refund.entity"), "refund"
            payment_id = fields.get_path(subject, "payment_id")
        elif event_type.startswith("payment.dispute."):
            subject, subject_name = fields.get_path(payload, "payload.dispute.entity"), "dispute"
            payment_id = fields.get_path(subject, "payment_id")
        else:
            subject, subject_name = payment, "payment"
            payment_id = fields.get_path(payment, "id")
        prefix = f"payload.{subject_name}.entity"
        payment_id_field = f"{prefix}.id" if subject_name == "payment" else f"{prefix}.payment_id"

        status = _STATUS_BY_EVENT.get(event_type)
        if event_type == "refund.processed":
            status = _refund_status(payment)
        provider_status = fields.get_path(subject, "status")
        if event_type.startswith("order.") and provider_status is None:
            provider_status = fields.get_path(payload, "payload.order.entity.status")

        # X-Razorpay-Event-Id is not signed; the body is: its digest is the signed key, so an authentic
        # body is stored once whatever id comes with it.
        body_key = fields.derived_event_id(body)
        return NormalizedEvent(
            provider=self.name,
            event_id=event_id or body_key,
            id_derived=event_id is None,
            event_type=event_type,
            payment_id=fields.text(payment_id, payment_id_field),
            status=status,
            provider_status=fields.text(provider_status, f"{prefix}.status"),
            amount=fields.amount(fields.get_path(subject, "amount"), f"{prefix}.amount"),
            currency=fields.currency(fields.get_path(subject, "currency"), f"{prefix}.currency"),
            occurred_at=fields.unix_time(payload.get("created_at"), "created_at") or received_at,
            received_at=received_at,
            raw_body=body,
            headers=self.delivery_headers(headers),
            signed_key=body_key,
        )
