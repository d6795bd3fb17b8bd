"""GoCardless: `Webhook-Signature`, hex HMAC-SHA256 of the raw body with the endpoint's secret.

One delivery carries up to 250 `events`, stored together (one transaction) or not at all. GoCardless
expects 204 once they are stored and 498 when the signature is not valid. Events name the resource
that changed and carry no amount: GoCardless's own advice is to fetch the resource from its API.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from errors import ApiError, InvalidPayload, SignatureError
from payments.events import NormalizedEvent
from providers import fields
from providers.base import Answer, ManyEventsProvider
from security import HeaderMap, verify_gocardless

_STATUS_BY_EVENT = {
    "payments.created": "created",
    "payments.confirmed": "captured",
    "payments.paid_out": "captured",
    "payments.failed": "failed",
    "payments.cancelled": "failed",
    "payments.customer_approval_denied": "failed",
    "payments.charged_back": "disputed",
    "payments.chargeback_cancelled": "dispute_won",
    "payments.chargeback_settled": "dispute_lost",
    "refunds.paid": "refunded",
}
_TOKEN_INVALID = 498  # GoCardless's documented answer to a delivery whose signature does not match


class GoCardless(ManyEventsProvider):
    name = "gocardless"
    required_headers = (("webhook-signature",),)
    stored_headers = ("webhook-signature", "origin")
    signature_headers = ("webhook-signature",)

    @property
    def secrets(self) -> Sequence[str]:
        return self.settings.gocardless_webhook_secret

    async def verify(self, body: bytes, headers: HeaderMap, now: float) -> None:
        verify_gocardless(body, headers["webhook-signature"], self.settings.gocardless_webhook_secret)

    def items(self, payload: dict[str, Any]) -> Sequence[Any]:
        items = payload.get("events")
        if not isinstance(items, list) or not items:
            raise InvalidPayload("field 'events' must be a non-empty list")
        return items

    def item_event(
        self, payload: dict[str, Any], *, body: bytes, kept: dict[str, str], received_at: datetime
    ) -> NormalizedEvent:
        """One element of `events`."""
        if not isinstance(payload, dict):
            raise InvalidPayload("every element of 'events' must be an object")
        resource = fields.required_text(payload.get("resource_type"), "events[].resource_type")
        action = fields.required_text(payload.get("action"), "events[].action")
        event_type = f"{resource}.{action}"
        return NormalizedEvent(
            provider=self.name,
            event_id=fields.required_text(payload.get("id"), "events[].id"),
            id_derived=False,
            event_type=event_type,
            payment_id=fields.text(fields.get_path(payload, "links.payment"), "events[].links.payment"),
            status=_STATUS_BY_EVENT.get(event_type),
            provider_status=action,
            amount=None,
            currency=None,
            occurred_at=fields.iso_time(payload.get("created_at"), "events[].created_at") or received_at,
            received_at=received_at,
            raw_body=body,
            headers=kept,
        )

    def accepted(self, events: Sequence[NormalizedEvent], new: Sequence[bool]) -> Answer:
        return Answer(204, b"", None)

    def refusal_status(self, error: ApiError) -> int | None:
        return _TOKEN_INVALID if isinstance(error, SignatureError) else None
