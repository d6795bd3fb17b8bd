"""Adyen standard notifications: `notificationItems[]`, each item signed on its own.

Each `NotificationRequestItem` carries `additionalData.hmacSignature`: base64 HMAC-SHA256, keyed with
the hex-decoded HMAC key, over eight of its fields joined by ':' (security.adyen_signed_string). Every
item must verify, or the whole delivery is refused; optional Basic auth comes first. Adyen expects the
body `[accepted]` once the items are stored. Adyen sends no event id: the documented key of a
notification is its pspReference, eventCode and success, so that is the event id here.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from config import Settings
from errors import InvalidJson, InvalidPayload
from payments.events import NormalizedEvent
from providers import fields
from providers.base import Answer, ManyEventsProvider
from security import HeaderMap, decode_hex_key, require_header, verify_adyen_item, verify_basic_auth

_STATUS_ON_SUCCESS = {
    "AUTHORISATION": "authorized",
    "CAPTURE": "captured",
    "CANCELLATION": "failed",
    "REFUND": "refunded",
    "REQUEST_FOR_INFORMATION": "disputed",
    "NOTIFICATION_OF_CHARGEBACK": "disputed",
    "CHARGEBACK": "disputed",
    "CHARGEBACK_REVERSED": "dispute_won",
    "PREARBITRATION_WON": "dispute_won",
    "SECOND_CHARGEBACK": "dispute_lost",
    "PREARBITRATION_LOST": "dispute_lost",
}
# CANCEL_OR_REFUND says which it did in additionalData.
_CANCEL_OR_REFUND = {"cancel": "failed", "refund": "refunded"}


def _status(item: Mapping[str, Any], event_code: str, success: str | None) -> str | None:
    if event_code == "AUTHORISATION" and success == "false":
        return "failed"
    if success != "true":
        return None
    if event_code == "CANCEL_OR_REFUND":
        action = fields.get_path(item, "additionalData")
        action = action.get("modification.action") if isinstance(action, dict) else None
        return _CANCEL_OR_REFUND.get(action) if isinstance(action, str) else None
    return _STATUS_ON_SUCCESS.get(event_code)


def notification_items(payload: object) -> list[dict[str, Any]]:
    items = payload.get("notificationItems") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not items:
        raise InvalidPayload("field 'notificationItems' must be a non-empty list")
    unwrapped = [item.get("NotificationRequestItem") if isinstance(item, dict) else None for item in items]
    if not all(isinstance(item, dict) for item in unwrapped):
        raise InvalidPayload("every notification item must hold a NotificationRequestItem object")
    return unwrapped  # type: ignore[return-value]


class Adyen(ManyEventsProvider):
    name = "adyen"
    required_headers = ()
    stored_headers = ()
    signature_headers = ()  # each item's signature is in the body: additionalData.hmacSignature

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        # Decoded once: a key that is not hex stops the service at start-up, not at a delivery.
        self._keys = [decode_hex_key(key, setting="ADYEN_HMAC_KEY") for key in settings.adyen_hmac_key]

    @property
    def secrets(self) -> Sequence[str]:
        return self.settings.adyen_hmac_key

    def check_headers(self, headers: HeaderMap) -> None:
        if self.settings.adyen_basic_auth:
            verify_basic_auth(require_header(headers, "authorization"), self.settings.adyen_basic_auth)

    async def verify(self, body: bytes, headers: HeaderMap, now: float) -> None:
        # The signatures are inside the body, so it is parsed here (and again by the route: Adyen sends
        # few notifications, and each adapter's verify stays a function of the bytes received).
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidJson("body is not valid UTF-8 JSON") from exc
        for item in notification_items(payload):
            verify_adyen_item(item, self._keys)

    def items(self, payload: dict[str, Any]) -> Sequence[Any]:
        return notification_items(payload)

    def item_event(
        self, payload: dict[str, Any], *, body: bytes, kept: dict[str, str], received_at: datetime
    ) -> NormalizedEvent:
        """One NotificationRequestItem; `body` is its JSON (it carries its own signature)."""
        event_code = fields.required_text(payload.get("eventCode"), "eventCode")
        psp_reference = fields.required_text(payload.get("pspReference"), "pspReference")
        success = fields.text(payload.get("success"), "success", max_length=5)
        # A modification (capture, refund, chargeback) names the payment in originalReference.
        original = fields.text(payload.get("originalReference"), "originalReference")
        return NormalizedEvent(
            provider=self.name,
            event_id=fields.required_text(f"{event_code}:{psp_reference}:{success or ''}", "event id"),
            id_derived=True,
            event_type=event_code,
            payment_id=original or psp_reference,
            status=_status(payload, event_code, success),
            provider_status=success,
            amount=fields.amount(fields.get_path(payload, "amount.value"), "amount.value"),
            currency=fields.currency(fields.get_path(payload, "amount.currency"), "amount.currency"),
            occurred_at=fields.iso_time(payload.get("eventDate"), "eventDate") or received_at,
            received_at=received_at,
            raw_body=body,
            headers=kept,
        )

    def accepted(self, events: Sequence[NormalizedEvent], new: Sequence[bool]) -> Answer:
        return Answer(200, b"[accepted]", "text/plain")
