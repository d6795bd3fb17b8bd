"""Standard Webhooks (Svix and the providers that adopted the spec).

`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64> [v1,<base64> ...]` (or the same with
the `svix-` prefix), signed over f"{id}.{timestamp}.{body}" with the base64-decoded `whsec_` secret.
Bodies are free-form: where the payment fields live is configurable (STANDARD_*_PATH settings), and a
body without `type` is stored with no type.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from config import Settings
from payments.events import STATUS_RANK, NormalizedEvent
from providers import fields
from providers.base import Provider
from security import HeaderMap, decode_standard_secret, require_header, unix_seconds, verify_standard

_ID = ("webhook-id", "svix-id")
_TIMESTAMP = ("webhook-timestamp", "svix-timestamp")
_SIGNATURE = ("webhook-signature", "svix-signature")


class StandardWebhooks(Provider):
    name = "standard"
    required_headers = (_ID, _TIMESTAMP, _SIGNATURE)
    stored_headers = (*_ID, *_TIMESTAMP, *_SIGNATURE)
    signature_headers = _SIGNATURE
    identity_headers = (_ID,)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        # Decoded once: a secret that is not base64 stops the service at start-up, not at a delivery.
        self._keys = [decode_standard_secret(secret) for secret in settings.standard_webhook_secret]

    @property
    def secrets(self) -> Sequence[str]:
        return self.settings.standard_webhook_secret

    async def verify(self, body: bytes, headers: HeaderMap, now: float) -> None:
        verify_standard(
            body,
            msg_id=require_header(headers, *_ID),
            timestamp=require_header(headers, *_TIMESTAMP),
            signature_header=require_header(headers, *_SIGNATURE),
            keys=self._keys,
            now=now,
            tolerance=self.settings.signature_tolerance_seconds,
        )

    def normalise(
        self, payload: dict[str, Any], *, body: bytes, headers: HeaderMap, received_at: datetime
    ) -> NormalizedEvent:
        settings = self.settings
        status_path, id_path = settings.standard_status_path, settings.standard_payment_id_path
        amount_path, currency_path = settings.standard_amount_path, settings.standard_currency_path
        status = fields.text(fields.get_path(payload, status_path), status_path)
        signed_at = unix_seconds(require_header(headers, *_TIMESTAMP))
        occurred_at = fields.iso_time(payload.get("timestamp"), "timestamp") or (
            fields.unix_time(signed_at, "webhook-timestamp") if signed_at is not None else None
        )
        return NormalizedEvent(
            provider=self.name,
            event_id=fields.required_text(
                fields.header_text(require_header(headers, *_ID), "webhook-id"), "webhook-id"
            ),
            id_derived=False,
            event_type=fields.text(payload.get("type"), "type"),
            payment_id=fields.text(fields.get_path(payload, id_path), id_path),
            # A status from the documented vocabulary moves the payment; anything else is kept as said.
            status=status if status in STATUS_RANK else None,
            provider_status=status,
            amount=fields.amount(fields.get_path(payload, amount_path), amount_path),
            currency=fields.currency(fields.get_path(payload, currency_path), currency_path),
            occurred_at=occurred_at or received_at,
            received_at=received_at,
            raw_body=body,
            headers=self.delivery_headers(headers),
        )
