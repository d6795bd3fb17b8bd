"""Builders for signed test deliveries. Signatures are real HMACs computed per each provider's scheme."""

import hashlib
import hmac
import itertools
import json
from typing import Any

RAZORPAY_SECRET = "test_secret"
_counter = itertools.count(1)


def razorpay_signature(body: bytes, secret: str = RAZORPAY_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def razorpay_event(
    *,
    event: str = "payment.authorized",
    payment_id: str = "pay_014",
    status: str | None = None,
    amount: int = 5000,
    currency: str = "INR",
    created_at: int = 1751885965,
    event_id: str | None = None,
) -> dict[str, Any]:
    """The widely used mock shape (top-level id); pass event_id="" for the real shape (no id)."""
    payload: dict[str, Any] = {
        "event": event,
        "payload": {
            "payment": {
                "entity": {
                    "id": payment_id,
                    "status": status or event.rsplit(".", 1)[-1],
                    "amount": amount,
                    "currency": currency,
                }
            }
        },
        "created_at": created_at,
    }
    if event_id != "":
        payload["id"] = event_id or f"evt_{next(_counter):06d}"
    return payload


def razorpay_delivery(
    payload: dict[str, Any] | bytes, secret: str = RAZORPAY_SECRET
) -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return body, {
        "X-Razorpay-Signature": razorpay_signature(body, secret),
        "Content-Type": "application/json",
    }
