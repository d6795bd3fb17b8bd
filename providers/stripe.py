"""Stripe: `Stripe-Signature: t=<unix>,v1=<hex>` over f"{t}.{body}", keyed with the whole whsec_ string.

Only snapshot (v1) events are accepted: thin v2 notifications carry no object to store.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from errors import InvalidPayload
from payments.events import NormalizedEvent
from providers import fields
from providers.base import Provider
from security import HeaderMap, verify_stripe

_STATUS_BY_EVENT = {
    "payment_intent.created": "created",
    "payment_intent.amount_capturable_updated": "authorized",
    "payment_intent.succeeded": "captured",
    "payment_intent.payment_failed": "failed",
    "payment_intent.canceled": "failed",
    "charge.captured": "captured",
    "charge.failed": "failed",
    "charge.dispute.created": "disputed",
}
# charge.dispute.closed says who won in the dispute's status; "warning_closed" and others leave it alone.
_DISPUTE_OUTCOME = {"won": "dispute_won", "lost": "dispute_lost"}


def _status(event_type: str, obj: object) -> str | None:
    if event_type == "charge.succeeded":
        # A charge that succeeded uncaptured is an authorisation (capture_method=manual).
        return "authorized" if fields.get_path(obj, "captured") is False else "captured"
    if event_type == "charge.refunded":
        return "refunded" if fields.get_path(obj, "refunded") is True else "partially_refunded"
    if event_type == "charge.dispute.closed":
        outcome = fields.get_path(obj, "status")
        return _DISPUTE_OUTCOME.get(outcome) if isinstance(outcome, str) else None
    return _STATUS_BY_EVENT.get(event_type)


def _payment_id(event_type: str, obj: object) -> tuple[object, str]:
    """payment_intent.* name the intent; charges, refunds and disputes point at theirs."""
    if event_type.startswith("payment_intent."):
        return fields.get_path(obj, "id"), "data.object.id"
    intent = fields.get_path(obj, "payment_intent")
    if intent is not None:
        return intent, "data.object.payment_intent"
    # Charges made without a PaymentIntent (the legacy Charges API) are their own payment.
    if event_type.startswith("charge.") and fields.get_path(obj, "object") == "charge":
        return fields.get_path(obj, "id"), "data.object.id"
    return fields.get_path(obj, "charge"), "data.object.charge"


class Stripe(Provider):
    name = "stripe"
    required_headers = (("stripe-signature",),)
    stored_headers = ("stripe-signature",)
    signature_headers = ("stripe-signature",)

    @property
    def secrets(self) -> Sequence[str]:
        return self.settings.stripe_webhook_secret

    async def verify(self, body: bytes, headers: HeaderMap, now: float) -> None:
        verify_stripe(
            body,
            headers["stripe-signature"],
            self.settings.stripe_webhook_secret,
            now=now,
            tolerance=self.settings.signature_tolerance_seconds,
        )

    def normalise(
        self, payload: dict[str, Any], *, body: bytes, headers: HeaderMap, received_at: datetime
    ) -> NormalizedEvent:
        if payload.get("object") == "v2.core.event":
            raise InvalidPayload("thin (v2) Stripe events are not supported: send snapshot (v1) events")
        event_type = fields.required_text(payload.get("type"), "type")
        event_id = fields.required_text(payload.get("id"), "id")
        obj = fields.get_path(payload, "data.object")
        payment_id, payment_id_field = _payment_id(event_type, obj)
        return NormalizedEvent(
            provider=self.name,
            event_id=event_id,
            id_derived=False,
            event_type=event_type,
            payment_id=fields.text(payment_id, payment_id_field),
            status=_status(event_type, obj),
            provider_status=fields.text(fields.get_path(obj, "status"), "data.object.status"),
            amount=fields.amount(fields.get_path(obj, "amount"), "data.object.amount"),
            currency=fields.currency(fields.get_path(obj, "currency"), "data.object.currency"),
            occurred_at=fields.unix_time(payload.get("created"), "created") or received_at,
            received_at=received_at,
            raw_body=body,
            headers=self.delivery_headers(headers),
        )
