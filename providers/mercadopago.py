"""Mercado Pago: `x-signature: ts=<unix>,v1=<hex>`, HMAC-SHA256 keyed with the webhook's secret over the
manifest `id:{data.id};request-id:{x-request-id};ts:{ts};`, where data.id comes from the notification
URL's query string (lower-cased when alphanumeric). The body itself is not signed by Mercado Pago, so
its `data.id` must name the same resource as the signed one. ts must be within the replay window.

Notifications name what changed and carry no status or amount (Mercado Pago's advice is to fetch the
payment from its API): they are stored with the provider's `action` and no normalised status, except
`payment.created`.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson

from errors import InvalidJson, SignatureInvalid, SignatureMissing
from payments.events import NormalizedEvent
from providers import fields
from providers.base import Provider
from security import HeaderMap, verify_mercadopago

_STATUS_BY_ACTION = {"payment.created": "created"}


class MercadoPago(Provider):
    name = "mercadopago"
    required_headers = (("x-signature",),)
    stored_headers = ("x-signature", "x-request-id")
    signature_headers = ("x-signature",)

    @property
    def secrets(self) -> Sequence[str]:
        return self.settings.mercadopago_webhook_secret

    async def authenticate(self, body: bytes, headers: HeaderMap, now: float, *, query_string: bytes) -> None:
        # Read as Starlette reads a query string: latin-1 bytes, blank values kept, the last of a name.
        query = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
        data_id = query.get("data.id") or query.get("id")
        if not data_id:
            raise SignatureMissing("missing data.id in the notification URL's query string")
        verify_mercadopago(
            headers["x-signature"],
            data_id=data_id,
            request_id=headers.get("x-request-id"),
            secrets=self.settings.mercadopago_webhook_secret,
            now=now,
            tolerance=self.settings.signature_tolerance_seconds,
        )
        self._check_body(body, data_id)

    async def verify(self, body: bytes, headers: HeaderMap, now: float) -> None:
        await self.authenticate(body, headers, now, query_string=b"")

    @staticmethod
    def _check_body(body: bytes, data_id: str) -> None:
        # Parsed here as well as by the route: the signed id must be the body's, or the body could be
        # any other notification's, replayed under this one's signature.
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidJson("body is not valid UTF-8 JSON") from exc
        body_id = fields.get_path(payload, "data.id")
        if (
            isinstance(body_id, bool)
            or not isinstance(body_id, str | int)
            or str(body_id).lower() != data_id.lower()
        ):
            raise SignatureInvalid("the body's data.id is not the one signed in the notification URL")

    def normalise(
        self, payload: dict[str, Any], *, body: bytes, headers: HeaderMap, received_at: datetime
    ) -> NormalizedEvent:
        action = fields.text(payload.get("action"), "action")
        kind = fields.text(payload.get("type"), "type")
        event_type = action or kind
        is_payment = kind == "payment"
        return NormalizedEvent(
            provider=self.name,
            event_id=fields.required_text(payload.get("id"), "id"),
            id_derived=False,
            event_type=event_type,
            payment_id=fields.text(fields.get_path(payload, "data.id"), "data.id") if is_payment else None,
            status=_STATUS_BY_ACTION.get(event_type or ""),
            provider_status=action,
            amount=None,
            currency=None,
            occurred_at=fields.iso_time(payload.get("date_created"), "date_created") or received_at,
            received_at=received_at,
            raw_body=body,
            headers=self.delivery_headers(headers),
        )
