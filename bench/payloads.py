"""Pre-signed Razorpay deliveries and the raw HTTP requests that carry them.

Everything is signed before the clock starts, so the load generator only copies bytes and the server's
work is the only work being timed.
"""

import hashlib
import hmac
import random
import time
from dataclasses import dataclass

import orjson

SECRET = "bench_secret"
WEBHOOK_PATH = "/webhooks/razorpay"
DUPLICATE_RATIO = 0.10


@dataclass(frozen=True, slots=True)
class Delivery:
    event_id: str
    payment_id: str
    event_type: str
    status: str
    amount: int
    body: bytes
    signature: str


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.digest(secret.encode(), body, hashlib.sha256).hex()


def unique_delivery(*, index: int, tag: str, created_at: int) -> Delivery:
    """Event `index` of a run: payments get two events each, authorized then captured (one in ten fails)."""
    payment_no = index // 2
    if index % 2 == 0:
        event_type, status = "payment.authorized", "authorized"
    elif payment_no % 10 == 0:
        event_type, status = "payment.failed", "failed"
    else:
        event_type, status = "payment.captured", "captured"
    payment_id = f"pay_{tag}{payment_no:09d}"
    event_id = f"evt_{tag}{index:010d}"
    amount = 5000 + (payment_no % 50) * 100
    entity = {"id": payment_id, "status": status, "amount": amount, "currency": "INR"}
    document = {
        "event": event_type,
        "payload": {"payment": {"entity": entity}},
        "created_at": created_at,
        "id": event_id,
    }
    body = orjson.dumps(document)  # compact, as providers send it; and fast enough to sign 1M events
    return Delivery(event_id, payment_id, event_type, status, amount, body, sign(body))


def deliveries(
    *, count: int, tag: str, duplicate_ratio: float = DUPLICATE_RATIO, seed: int = 1
) -> list[Delivery]:
    """`count` deliveries, of which round(count * ratio) repeat an earlier one byte for byte (a retry)."""
    rng = random.Random(seed)
    duplicate_slots = (
        set(rng.sample(range(1, count), k=round(count * duplicate_ratio))) if count > 1 else set()
    )
    created_at = int(time.time())
    sent: list[Delivery] = []
    uniques: list[Delivery] = []
    for position in range(count):
        if position in duplicate_slots:
            sent.append(rng.choice(uniques))
            continue
        delivery = unique_delivery(index=len(uniques), tag=tag, created_at=created_at)
        uniques.append(delivery)
        sent.append(delivery)
    return sent


def webhook_request(delivery: Delivery) -> bytes:
    # Real Razorpay deliveries name the event in X-Razorpay-Event-Id as well; the body's `id` is the
    # widely used mock format. Both carry the same id, so either way of deduplicating sees one event.
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        "Content-Type: application/json\r\n"
        f"X-Razorpay-Signature: {delivery.signature}\r\n"
        f"X-Razorpay-Event-Id: {delivery.event_id}\r\n"
        f"Content-Length: {len(delivery.body)}\r\n\r\n"
    )
    return head.encode() + delivery.body


def get_request(path: str, headers: dict[str, str]) -> bytes:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}\r\n".encode()
