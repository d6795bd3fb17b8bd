"""Square: `x-square-hmacsha256-signature`, base64 HMAC-SHA256 keyed with the subscription's signature
key over the notification URL (SQUARE_NOTIFICATION_URL, exactly as the subscription has it) followed by
the raw body. No timestamp is signed, so a replay is a duplicate `event_id`.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from payments.events import NormalizedEvent
from providers import fields
from providers.base import Provider
from security import HeaderMap, verify_square

_PAYMENT_STATUS = {
    "PENDING": "created",
    "APPROVED": "authorized",
    "COMPLETED": "captured",
    "FAILED": "failed",
    "CANCELED": "failed",
}
_REFUND_STATUS = {"COMPLETED": "refunded"}
_DISPUTE_STATE = {"WON": "dispute_won", "LOST": "dispute_lost", "ACCEPTED": "dispute_lost"}
# Per kind of object: its key under data.object, and the path of the payment it belongs to.
_PAYMENT_PATH = {"payment": "id", "refund": "payment_id", "dispute": "disputed_payment.payment_id"}


def _status(kind: str, state: str | None) -> str | None:
    if kind == "payment":
        return _PAYMENT_STATUS.get(state or "")
    if kind == "refund":
        return _REFUND_STATUS.get(state or "")
    if kind == "dispute":
        return _DISPUTE_STATE.get(state or "", "disputed")
    return None


class Square(Provider):
    name = "square"
    required_headers = (("x-square-hmacsha256-signature",),)
    stored_headers = ("x-square-hmacsha256-signature", "square-version", "square-initial-delivery-timestamp")
    signature_headers = ("x-square-hmacsha256-signature",)

    @property
    def secrets(self) -> Sequence[str]:
        # Both the key and the URL are needed to verify: without the URL, Square is not configured.
        return self.settings.square_signature_key if self.settings.square_notification_url else ()

    async def verify(self, body: bytes, headers: HeaderMap, now: float) -> None:
        verify_square(
            body,
            headers["x-square-hmacsha256-signature"],
            self.settings.square_signature_key,
            notification_url=self.settings.square_notification_url or "",
        )

    def normalise(
        self, payload: dict[str, Any], *, body: bytes, headers: HeaderMap, received_at: datetime
    ) -> NormalizedEvent:
        event_type = fields.required_text(payload.get("type"), "type")
        kind = fields.text(fields.get_path(payload, "data.type"), "data.type") or ""
        obj = fields.get_path(payload, f"data.object.{kind}") if kind in _PAYMENT_PATH else None
        state_key = "state" if kind == "dispute" else "status"
        where = f"data.object.{kind}"
        state = fields.text(fields.get_path(obj, state_key), f"{where}.{state_key}")
        payment_path = _PAYMENT_PATH.get(kind, "id")
        return NormalizedEvent(
            provider=self.name,
            event_id=fields.required_text(payload.get("event_id"), "event_id"),
            id_derived=False,
            event_type=event_type,
            payment_id=fields.text(fields.get_path(obj, payment_path), f"{where}.{payment_path}"),
            status=_status(kind, state),
            provider_status=state,
            amount=fields.amount(fields.get_path(obj, "amount_money.amount"), f"{where}.amount_money.amount"),
            currency=fields.currency(
                fields.get_path(obj, "amount_money.currency"), f"{where}.amount_money.currency"
            ),
            occurred_at=fields.iso_time(payload.get("created_at"), "created_at") or received_at,
            received_at=received_at,
            raw_body=body,
            headers=self.delivery_headers(headers),
        )
