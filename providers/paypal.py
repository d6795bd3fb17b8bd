"""PayPal: RSA (SHA256withRSA) over "transmission_id|transmission_time|webhook_id|crc32(body)".

Verified offline with `cryptography`, never by calling PayPal's verify API. The signing certificate is
either pinned (PAYPAL_CERT_PATH) or fetched from PAYPAL-CERT-URL, which must be https on an allow-listed
PayPal host (PAYPAL_CERT_HOSTS); either way it must be currently valid and issued to a *.paypal.com name.
Fetched certificates are cached until they expire.

Payment id by resource type (from `resource`): capture, sale, order and authorization events use
`resource.id`; refunds and reversals use the capture (or sale) they refund, from the `up` link or
`sale_id`, falling back to `resource.id`.
"""

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from config import Settings
from errors import InvalidPayload, SignatureInvalid
from payments.events import NormalizedEvent
from providers import fields
from providers.base import Provider
from providers.money import decimal_to_minor
from security import (
    HeaderMap,
    check_paypal_cert_url,
    load_paypal_certificate,
    parse_paypal_headers,
    paypal_certificate_key,
    paypal_public_key,
    require_header,
    verify_paypal,
)

_HEADERS = (
    "paypal-transmission-id",
    "paypal-transmission-time",
    "paypal-transmission-sig",
    "paypal-cert-url",
    "paypal-auth-algo",
)
_FETCH_TIMEOUT_SECONDS = 5
_MAX_CACHED_CERTS = 16

_STATUS_BY_EVENT = {
    "CHECKOUT.ORDER.APPROVED": "authorized",
    "PAYMENT.AUTHORIZATION.CREATED": "authorized",
    "PAYMENT.AUTHORIZATION.VOIDED": "failed",
    "PAYMENT.CAPTURE.PENDING": "created",
    "PAYMENT.CAPTURE.COMPLETED": "captured",
    "PAYMENT.CAPTURE.DENIED": "failed",
    "PAYMENT.CAPTURE.DECLINED": "failed",
    "PAYMENT.CAPTURE.REFUNDED": "refunded",
    "PAYMENT.CAPTURE.REVERSED": "refunded",
    "PAYMENT.SALE.PENDING": "created",
    "PAYMENT.SALE.COMPLETED": "captured",
    "PAYMENT.SALE.DENIED": "failed",
    "PAYMENT.SALE.REFUNDED": "refunded",
    "PAYMENT.SALE.REVERSED": "refunded",
    "CUSTOMER.DISPUTE.CREATED": "disputed",
}


def load_pinned_certificate(path: str) -> x509.Certificate:
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"PAYPAL_CERT_PATH {path!r} cannot be read: {exc.strerror}") from exc
    try:
        return load_paypal_certificate(pem)
    except SignatureInvalid as exc:
        raise ValueError(f"PAYPAL_CERT_PATH {path!r} is not a PEM certificate") from exc


def _refunded_payment_id(resource: object) -> object:
    """v2 refunds link `up` to their capture; v1 refunds name their sale in `sale_id`."""
    links = fields.get_path(resource, "links")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("rel") == "up" and isinstance(link.get("href"), str):
            return link["href"].rstrip("/").rsplit("/", 1)[-1]
    return fields.get_path(resource, "sale_id") or fields.get_path(resource, "id")


def _is_refund(event_type: str, resource_type: object) -> bool:
    return resource_type == "refund" or event_type.endswith((".REFUNDED", ".REVERSED"))


class PayPal(Provider):
    name = "paypal"
    required_headers = tuple((name,) for name in _HEADERS)
    stored_headers = _HEADERS
    signature_headers = ("paypal-transmission-sig",)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        # A pinned certificate is read once: an unreadable file stops the service at start-up.
        pinned = settings.paypal_cert_path
        self._pinned = load_pinned_certificate(pinned) if pinned else None
        self._cache: dict[str, tuple[rsa.RSAPublicKey, datetime]] = {}
        self._lock = threading.Lock()

    @property
    def secrets(self) -> Sequence[str]:
        return self.settings.paypal_webhook_id

    def _fetch_pem(self, url: str) -> bytes:
        try:
            response = requests.get(url, timeout=_FETCH_TIMEOUT_SECONDS, allow_redirects=False)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise SignatureInvalid("PayPal certificate could not be fetched") from exc
        return response.content

    async def _public_key(self, cert_url: str, now: datetime) -> rsa.RSAPublicKey:
        if self._pinned is not None:
            return paypal_certificate_key(self._pinned, now=now)[0]
        check_paypal_cert_url(cert_url, allowed_hosts=self.settings.paypal_cert_hosts)
        with self._lock:
            cached = self._cache.get(cert_url)
        if cached is not None and now <= cached[1]:
            return cached[0]
        pem = await anyio.to_thread.run_sync(self._fetch_pem, cert_url)
        key, expires = paypal_public_key(pem, now=now)
        with self._lock:
            if len(self._cache) >= _MAX_CACHED_CERTS:
                self._cache.clear()
            self._cache[cert_url] = (key, expires)
        return key

    async def verify(self, body: bytes, headers: HeaderMap, now: float) -> None:
        fields = {
            "transmission_id": require_header(headers, "paypal-transmission-id"),
            "transmission_time": require_header(headers, "paypal-transmission-time"),
            "signature_b64": require_header(headers, "paypal-transmission-sig"),
            "auth_algo": require_header(headers, "paypal-auth-algo"),
        }
        # Malformed headers are refused before a certificate is fetched on the delivery's behalf.
        parse_paypal_headers(**fields)
        cert_url = require_header(headers, "paypal-cert-url")
        key = await self._public_key(cert_url, datetime.fromtimestamp(now, UTC))
        verify_paypal(
            body,
            **fields,
            webhook_ids=self.secrets,
            public_key=key,
            now=now,
            tolerance=self.settings.signature_tolerance_seconds,
        )

    def normalise(
        self, payload: dict[str, Any], *, body: bytes, headers: HeaderMap, received_at: datetime
    ) -> NormalizedEvent:
        event_type = fields.required_text(payload.get("event_type"), "event_type")
        resource = payload.get("resource")
        if _is_refund(event_type, payload.get("resource_type")):
            payment_id = _refunded_payment_id(resource)
        else:
            payment_id = fields.get_path(resource, "id")
        # v2 resources say `status` and amount {value, currency_code}; v1 say `state` and {total, currency}.
        status = _first_present(resource, "status", "state")
        currency_code = _first_present(resource, "amount.currency_code", "amount.currency")
        currency = fields.currency(currency_code, "resource.amount.currency_code")
        value = _first_present(resource, "amount.value", "amount.total")
        return NormalizedEvent(
            provider=self.name,
            event_id=fields.required_text(payload.get("id"), "id"),
            id_derived=False,
            event_type=event_type,
            payment_id=fields.text(payment_id, "resource.id"),
            status=_STATUS_BY_EVENT.get(event_type),
            provider_status=fields.text(status, "resource.status"),
            amount=_minor(value, currency),
            currency=currency,
            occurred_at=fields.iso_time(payload.get("create_time"), "create_time") or received_at,
            received_at=received_at,
            raw_body=body,
            headers=self.delivery_headers(headers),
            # The signature binds the transmission id but only a CRC32 of the body, which a forger can
            # match: a transmission id is accepted with one body only. A delivery always has one
            # (check_headers); an event read back from PayPal's API (recovery) has none.
            signed_key=fields.text(headers.get("paypal-transmission-id"), "PAYPAL-TRANSMISSION-ID"),
        )


def _first_present(resource: object, *paths: str) -> object:
    """The first field present (even if empty, so an empty value is refused rather than skipped)."""
    for path in paths:
        value = fields.get_path(resource, path)
        if value is not None:
            return value
    return None


def _minor(value: object, currency: str | None) -> int | None:
    """PayPal sends decimal strings ("10.99"); converted with the currency's ISO 4217 exponent."""
    if value is None or currency is None:
        return None
    if not isinstance(value, str):
        raise InvalidPayload("field 'resource.amount.value' must be a decimal string")
    try:
        return fields.amount(decimal_to_minor(value, currency), "resource.amount.value")
    except ValueError as exc:
        raise InvalidPayload(f"field 'resource.amount.value': {exc}") from exc
