"""Test helpers shared by every test package: signed deliveries for every provider, made with each
provider's own published code where it exists, normalised events, and paging through a list.

Stripe headers come from `stripe.WebhookSignature`, Standard Webhooks headers from `standardwebhooks` and
`svix`; Razorpay signatures are checked by `razorpay`'s own verifier before they are used. Paystack
publishes no Python library, so its HMAC-SHA512 is computed per its documentation. PayPal's key and
certificate are generated here with `cryptography` and the signature follows PayPal's documented
algorithm; the certificate is pinned through PAYPAL_CERT_PATH so nothing touches the network.
"""

import base64
import hashlib
import hmac
import itertools
import json
import time
import uuid
import zlib
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import razorpay  # type: ignore[import-untyped]
import standardwebhooks.webhooks
import stripe
import svix.webhooks
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import Connection, create_engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from database import normalise_url
from models import Event
from payments import projection
from payments.events import NormalizedEvent

RAZORPAY_SECRET = "test_secret"
STRIPE_SECRET = "whsec_conformance_stripe_secret"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"conformance-standard-webhooks-k!").decode()
PAYSTACK_SECRET = "sk_test_conformance_paystack_secret"
PAYPAL_WEBHOOK_ID = "8PT597110X687430LKGECATA"
PAYPAL_CN = "messageverificationcerts.paypal.com"
PAYPAL_CERT_URL = "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-7a8abba8"


def as_body(payload: dict[str, Any] | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


# --- Razorpay -----------------------------------------------------------------------------------------


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
    """A signed Razorpay delivery: the body and its headers."""
    body = as_body(payload)
    return body, razorpay_headers(body, secret=secret)


def razorpay_headers(
    body: bytes, *, secret: str = RAZORPAY_SECRET, event_id: str | None = None
) -> dict[str, str]:
    signature = razorpay_signature(body, secret)
    # Razorpay's own verifier must agree with the signature before it is sent (it raises otherwise).
    razorpay.Client(auth=("rzp_test_conformance", secret)).utility.verify_webhook_signature(
        body.decode(), signature, secret
    )
    headers = {"X-Razorpay-Signature": signature, "Content-Type": "application/json"}
    if event_id is not None:
        headers["X-Razorpay-Event-Id"] = event_id
    return headers


# --- Stripe -------------------------------------------------------------------------------------------


def stripe_headers(
    body: bytes, *, secret: str = STRIPE_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=stamp)
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


# --- Standard Webhooks / Svix -------------------------------------------------------------------------


def standard_headers(
    body: bytes,
    *,
    secret: str = STANDARD_SECRET,
    msg_id: str | None = None,
    timestamp: int | None = None,
    prefix: str = "webhook",
) -> dict[str, str]:
    """`prefix="svix"` signs with the svix library and sends svix-* header names."""
    stamp = int(time.time()) if timestamp is None else timestamp
    signer = svix.webhooks.Webhook(secret) if prefix == "svix" else standardwebhooks.webhooks.Webhook(secret)
    message_id = msg_id or f"msg_{uuid.uuid4().hex}"
    signature = signer.sign(message_id, datetime.fromtimestamp(stamp, UTC), body.decode())
    return {
        f"{prefix}-id": message_id,
        f"{prefix}-timestamp": str(stamp),
        f"{prefix}-signature": signature,
        "Content-Type": "application/json",
    }


# --- Paystack -----------------------------------------------------------------------------------------


def paystack_headers(body: bytes, *, secret: str = PAYSTACK_SECRET) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()
    return {"x-paystack-signature": signature, "Content-Type": "application/json"}


# --- PayPal -------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def paypal_key() -> rsa.RSAPrivateKey:
    """One key per test run: generating RSA keys is the slow part."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def paypal_cert_pem(
    *,
    common_name: str = PAYPAL_CN,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> bytes:
    """A self-signed certificate for `paypal_key()`, valid from a day ago for 30 days unless told."""
    now = datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(paypal_key().public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=30))
        .sign(paypal_key(), hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def write_paypal_cert(directory: Path, **cert_options: Any) -> str:
    path = directory / "paypal-cert.pem"
    path.write_bytes(paypal_cert_pem(**cert_options))
    return str(path)


def paypal_transmission_time(at: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if at is None else at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def paypal_headers(
    body: bytes,
    *,
    webhook_id: str = PAYPAL_WEBHOOK_ID,
    transmission_id: str | None = None,
    transmission_time: str | None = None,
    cert_url: str = PAYPAL_CERT_URL,
) -> dict[str, str]:
    """Signed as PayPal documents: RSA PKCS#1 v1.5 / SHA-256 over "id|time|webhook_id|crc32(body)"."""
    sent_id = transmission_id or str(uuid.uuid1())
    sent_time = transmission_time or paypal_transmission_time()
    message = f"{sent_id}|{sent_time}|{webhook_id}|{zlib.crc32(body)}".encode()
    signature = paypal_key().sign(message, padding.PKCS1v15(), hashes.SHA256())
    return {
        "PAYPAL-TRANSMISSION-ID": sent_id,
        "PAYPAL-TRANSMISSION-TIME": sent_time,
        "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
        "PAYPAL-CERT-URL": cert_url,
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
        "Content-Type": "application/json",
    }


def crc32_forgery(head: bytes, tail: bytes, target: int, *, letters: int = 64) -> bytes:
    """`head`, then `letters` ASCII letters, then `tail`, with the letters chosen so that the CRC32 of the
    whole is `target`: what a forger appends to reuse a PayPal signature, which covers only a CRC32.

    CRC32 is affine over GF(2): for messages of one length, flipping a set of bits changes the CRC by the
    XOR of what flipping each bit alone changes. Each letter is "a" or "A" (one bit apart), so the letters
    to capitalise are a solution of 32 linear equations in `letters` unknowns, found by elimination."""
    base = head + b"a" * letters + tail
    miss = zlib.crc32(base) ^ target
    # pivot bit -> (the CRC change, the letters whose flips make it), each change's highest bit its pivot
    basis: dict[int, tuple[int, int]] = {}
    for index in range(letters):
        flipped = bytearray(base)
        flipped[len(head) + index] ^= 0x20
        change, chosen = zlib.crc32(bytes(flipped)) ^ zlib.crc32(base), 1 << index
        for bit in sorted(basis, reverse=True):
            if change >> bit & 1:
                change, chosen = change ^ basis[bit][0], chosen ^ basis[bit][1]
        if change:
            basis[change.bit_length() - 1] = (change, chosen)
    chosen = 0
    for bit in sorted(basis, reverse=True):
        if miss >> bit & 1:
            miss, chosen = miss ^ basis[bit][0], chosen ^ basis[bit][1]
    assert miss == 0, "the letters' flips do not span every CRC32: use more letters"
    filler = bytes(ord("A") if chosen >> index & 1 else ord("a") for index in range(letters))
    forged = head + filler + tail
    assert zlib.crc32(forged) == target
    return forged


def all_provider_settings(cert_dir: Path, **overrides: Any) -> dict[str, Any]:
    """Settings with every provider configured (PayPal's certificate pinned in `cert_dir`)."""
    settings: dict[str, Any] = {
        "razorpay_webhook_secret": [RAZORPAY_SECRET],
        "stripe_webhook_secret": [STRIPE_SECRET],
        "standard_webhook_secret": [STANDARD_SECRET],
        "paystack_secret_key": [PAYSTACK_SECRET],
        "paypal_webhook_id": [PAYPAL_WEBHOOK_ID],
        "paypal_cert_path": write_paypal_cert(cert_dir),
    }
    settings.update(overrides)
    return settings


# --- reading back what was stored ---------------------------------------------------------------------


def stored_events(database_url: str, provider: str | None = None) -> list[Event]:
    engine = create_engine(normalise_url(database_url))
    try:
        with Session(engine) as session:
            stmt = select(Event).order_by(Event.id)
            if provider is not None:
                stmt = stmt.where(Event.provider == provider)
            return list(session.scalars(stmt))
    finally:
        engine.dispose()


def stored_event(database_url: str, provider: str, event_id: str) -> Event:
    [event] = [e for e in stored_events(database_url, provider) if e.event_id == event_id]
    return event


# --- normalised events and paging ---------------------------------------------------------------------

_event_ids = itertools.count(1)


def event_row(event_id: str) -> dict[str, Any]:
    """A captured Razorpay event of a payment of its own, as a row of the events table: for tests that
    write rows directly, around the writer (the outbox's transactions, the relay's cycles)."""
    now = datetime.now(UTC)
    return {
        "provider": "razorpay",
        "event_id": event_id,
        "id_derived": False,
        "event_type": "payment.captured",
        "payment_id": f"pay_{event_id}",
        "status": "captured",
        "occurred_at": now,
        "received_at": now,
        "raw_body": b"{}",
        "headers": {},
    }


def an_event(**changes: object) -> NormalizedEvent:
    """A normalised event as an adapter gives it, for storing without a delivery; each gets its own
    event id and payment id unless `changes` names them."""
    number = next(_event_ids)
    values: dict[str, object] = {
        "provider": "razorpay",
        "event_id": f"evt_made_{number}",
        "id_derived": False,
        "event_type": "payment.captured",
        "payment_id": f"pay_made_{number}",
        "status": "captured",
        "provider_status": "captured",
        "amount": 5000,
        "currency": "INR",
        "occurred_at": datetime(2025, 7, 7, 10, 59, 25, tzinfo=UTC),
        "received_at": datetime.now(UTC),
        "raw_body": b'{"event": "payment.captured"}',
        "headers": {"content-type": "application/json"},
    }
    values.update(changes)
    return NormalizedEvent(**values)  # type: ignore[arg-type]


def next_url(response: Any) -> str | None:
    """The URL in a page's `Link: <...>; rel="next"` header, or None on the last page."""
    link = response.headers.get("link")
    if link is None:
        return None
    target, relation = link.split(";")
    assert relation.strip() == 'rel="next"'
    return str(target.strip().removeprefix("<").removesuffix(">"))


def walk(client: Any, url: str) -> list[dict[str, Any]]:
    """Every row of a paged list, following `Link: rel="next"` to the end."""
    rows: list[dict[str, Any]] = []
    for _ in range(1_000):
        response = client.get(url)
        assert response.status_code == 200, response.text
        rows += response.json()
        following = next_url(response)
        if following is None:
            return rows
        url = following
    raise AssertionError("paging did not end")


def store_directly(connection: Connection, events: list[NormalizedEvent]) -> list[bool]:
    """Insert events and fold them, as the writer does, without a running app (for rows no webhook
    can produce: other providers, bytes that are not UTF-8, statuses outside today's vocabulary)."""
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(Event).on_conflict_do_nothing(index_elements=["provider", "event_id"])
    stored = []
    for one in events:
        delivered = one.origin == "webhook"  # a recovered copy is not a delivery (ingest/batch.py)
        row = {
            **asdict(one),
            "delivery_count": int(delivered),
            "last_delivered_at": one.received_at if delivered else None,
        }
        row_id = connection.execute(stmt.returning(Event.id), row).scalar_one_or_none()
        if row_id is not None:
            stored.append((row_id, one))
    projection.apply(connection, stored)
    return [any(one is new for _, new in stored) for one in events]
