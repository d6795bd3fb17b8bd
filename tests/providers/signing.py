"""Signed deliveries for Adyen, GoCardless, Paddle, Square, Checkout.com, Mercado Pago and Cashfree.

Where the provider publishes a Python SDK, the SDK signs or checks every delivery before it is sent:
Adyen's `Adyen.util` computes each item's hmacSignature, `gocardless_pro.webhooks.parse`,
`paddle_billing`'s `PaddleSignature.verify` and Square's `WebhooksHelper` (`verify_signature`) must accept
the signature first. Checkout.com, Mercado Pago and Cashfree publish no Python verifier; their signatures
follow each provider's documentation. The payloads are in tests/providers/data (see its README).
"""

import base64
import copy
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import Adyen.util  # type: ignore[import-untyped]
import gocardless_pro.webhooks  # type: ignore[import-untyped]
from paddle_billing.Notifications import Secret  # type: ignore[import-untyped]
from paddle_billing.Notifications.PaddleSignature import PaddleSignature  # type: ignore[import-untyped]
from square.utils.webhooks_helper import verify_signature as square_verify  # type: ignore[import-untyped]

DATA = Path(__file__).resolve().parent / "data"

ADYEN_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
GOCARDLESS_SECRET = "gc_test_webhook_endpoint_secret"
PADDLE_SECRET = "pdl_ntfset_01hv8x_test_secret_key"
SQUARE_KEY = "sq_test_signature_key_0123456789"
SQUARE_URL = "https://payments.example.com/webhooks/square"
CHECKOUT_SECRET = "cko_test_webhook_secret"
MERCADOPAGO_SECRET = "mp_test_webhook_secret"
CASHFREE_SECRET = "cf_test_client_secret"

SETTINGS: dict[str, dict[str, Any]] = {
    "adyen": {"adyen_hmac_key": [ADYEN_KEY]},
    "gocardless": {"gocardless_webhook_secret": [GOCARDLESS_SECRET]},
    "paddle": {"paddle_webhook_secret": [PADDLE_SECRET]},
    "square": {"square_signature_key": [SQUARE_KEY], "square_notification_url": SQUARE_URL},
    "checkout": {"checkout_webhook_secret": [CHECKOUT_SECRET]},
    "mercadopago": {"mercadopago_webhook_secret": [MERCADOPAGO_SECRET]},
    "cashfree": {"cashfree_client_secret": [CASHFREE_SECRET]},
}
SECRET_SETTING = {name: next(iter(settings)) for name, settings in SETTINGS.items()}


@dataclass
class Delivery:
    body: bytes
    headers: dict[str, str]
    query: dict[str, str] = field(default_factory=dict)


def payload(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def _hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _b64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


# --- Adyen: the SDK computes each item's signature ---------------------------------------------------


def adyen_sign(notification: dict[str, Any], *, key: str = ADYEN_KEY) -> dict[str, Any]:
    signed = copy.deepcopy(notification)
    for wrapper in signed["notificationItems"]:
        item = wrapper["NotificationRequestItem"]
        item.setdefault("additionalData", {})["hmacSignature"] = Adyen.util.generate_notification_sig(
            item, key
        ).decode()
        assert Adyen.util.is_valid_hmac_notification(item, key)
    return signed


def adyen(notification: dict[str, Any], *, key: str = ADYEN_KEY) -> Delivery:
    body = json.dumps(adyen_sign(notification, key=key)).encode()
    return Delivery(body, {"Content-Type": "application/json"})


def adyen_items(count: int) -> dict[str, Any]:
    template = payload("adyen_authorisation.json")["notificationItems"][0]["NotificationRequestItem"]
    items = []
    for index in range(count):
        item = copy.deepcopy(template)
        item["pspReference"] = f"88{index:014d}"
        items.append({"NotificationRequestItem": item})
    return {"live": "false", "notificationItems": items}


# --- GoCardless: signed by hand, accepted by gocardless_pro.webhooks.parse first -----------------------


def gocardless(events: dict[str, Any] | bytes, *, secret: str = GOCARDLESS_SECRET) -> Delivery:
    body = events if isinstance(events, bytes) else json.dumps(events).encode()
    signature = _hex(secret.encode(), body)
    gocardless_pro.webhooks.parse(body, secret, signature)  # raises InvalidSignatureError otherwise
    return Delivery(body, {"Content-Type": "application/json", "Webhook-Signature": signature})


def gocardless_events(count: int, *, start: int = 0) -> dict[str, Any]:
    template = payload("gocardless_events.json")["events"][0]
    events = []
    for index in range(start, start + count):
        event = copy.deepcopy(template)
        event["id"] = f"EV{index:08d}"
        event["links"] = {"payment": f"PM{index:08d}"}
        events.append(event)
    return {"events": events, "meta": {"webhook_id": f"WB{start:08d}"}}


# --- Paddle: ts=..;h1=.. accepted by paddle_billing's PaddleSignature first -----------------------------


def paddle(
    body_or_payload: Any, *, secrets: tuple[str, ...] = (PADDLE_SECRET,), at: int | None = None
) -> Delivery:
    body = body_or_payload if isinstance(body_or_payload, bytes) else json.dumps(body_or_payload).encode()
    stamp = int(time.time()) if at is None else at
    signatures = [_hex(secret.encode(), f"{stamp}:".encode() + body) for secret in secrets]
    header = ";".join([f"ts={stamp}", *(f"h1={signature}" for signature in signatures)])
    assert PaddleSignature().verify(header, body.decode(), Secret(secrets[0]))
    return Delivery(body, {"Content-Type": "application/json", "Paddle-Signature": header})


# --- Square: signed by hand, accepted by Square's WebhooksHelper first --------------------------------


def square(body_or_payload: Any, *, key: str = SQUARE_KEY, url: str = SQUARE_URL) -> Delivery:
    body = body_or_payload if isinstance(body_or_payload, bytes) else json.dumps(body_or_payload).encode()
    signature = _b64(key.encode(), url.encode() + body)
    assert square_verify(
        request_body=body.decode(), signature_header=signature, signature_key=key, notification_url=url
    )
    return Delivery(body, {"Content-Type": "application/json", "x-square-hmacsha256-signature": signature})


# --- Checkout.com, Mercado Pago, Cashfree: per their documentation -------------------------------------


def checkout(
    body_or_payload: Any, *, secret: str = CHECKOUT_SECRET, authorization: str | None = None
) -> Delivery:
    body = body_or_payload if isinstance(body_or_payload, bytes) else json.dumps(body_or_payload).encode()
    headers = {"Content-Type": "application/json", "Cko-Signature": _hex(secret.encode(), body)}
    if authorization is not None:
        headers["Authorization"] = authorization
    return Delivery(body, headers)


def mercadopago(
    body_or_payload: Any,
    *,
    secret: str = MERCADOPAGO_SECRET,
    at: int | None = None,
    request_id: str = "bb56a2f1-6aae-46ac-982e-9dcd3581d08e",
    data_id: str | None = None,
) -> Delivery:
    body = body_or_payload if isinstance(body_or_payload, bytes) else json.dumps(body_or_payload).encode()
    signed_id = data_id if data_id is not None else str(json.loads(body)["data"]["id"])
    stamp = str(int(time.time()) if at is None else at)
    manifest = f"id:{signed_id.lower()};request-id:{request_id};ts:{stamp};"
    headers = {
        "Content-Type": "application/json",
        "x-signature": f"ts={stamp},v1={_hex(secret.encode(), manifest.encode())}",
        "x-request-id": request_id,
    }
    return Delivery(body, headers, {"data.id": signed_id, "type": "payment"})


def cashfree(body_or_payload: Any, *, secret: str = CASHFREE_SECRET, at_ms: int | None = None) -> Delivery:
    body = body_or_payload if isinstance(body_or_payload, bytes) else json.dumps(body_or_payload).encode()
    stamp = str(int(time.time() * 1000) if at_ms is None else at_ms)
    headers = {
        "Content-Type": "application/json",
        "x-webhook-signature": _b64(secret.encode(), stamp.encode() + body),
        "x-webhook-timestamp": stamp,
        "x-webhook-version": "2023-08-01",
    }
    return Delivery(body, headers)
