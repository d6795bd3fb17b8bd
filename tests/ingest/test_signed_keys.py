"""A signature is accepted with one body only, an authentic body is stored once whatever unsigned id comes
with it, and readers are never handed a signature. On both databases, through the API and the sinks.

The forgeries are real: PayPal signs `transmission_id|time|webhook_id|crc32(body)`, and
`crc32_forgery` makes a new body with the genuine one's CRC32.
"""

import asyncio
import hashlib
import json
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from config import Settings
from ingest.sinks import make_sinks
from payments.events import NormalizedEvent
from providers.paypal import PayPal
from tests.conftest import make_settings
from tests.support import (
    PAYPAL_WEBHOOK_ID,
    all_provider_settings,
    crc32_forgery,
    paypal_headers,
    paystack_headers,
    razorpay_headers,
    standard_headers,
    stored_event,
    stored_events,
    stripe_headers,
    write_paypal_cert,
)

# What the read API shows in place of a signature (docs/providers.md).
REDACTED = "[redacted]"


def genuine_capture(event_id: str = "WH-GENUINE-9", capture_id: str = "CAP-9") -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "event_type": "PAYMENT.CAPTURE.COMPLETED",
            "resource_type": "capture",
            "create_time": "2025-07-07T12:00:00Z",
            "resource": {
                "id": capture_id,
                "status": "COMPLETED",
                "amount": {"value": "10.99", "currency_code": "USD"},
            },
        },
        separators=(",", ":"),
    ).encode()


def forged_refund(genuine: bytes, *, event_id: str = "WH-FORGED-1", capture_id: str = "CAP-9") -> bytes:
    """A refund of the capture, valid JSON, ending in a string field whose letters match the CRC32."""
    head = json.dumps(
        {
            "id": event_id,
            "event_type": "PAYMENT.CAPTURE.REFUNDED",
            "resource_type": "refund",
            "create_time": "2025-07-07T13:00:00Z",
            "resource": {
                "id": "REF-FORGED",
                "status": "COMPLETED",
                "amount": {"value": "10.99", "currency_code": "USD"},
                "links": [{"rel": "up", "href": f"https://api.paypal.com/v2/payments/captures/{capture_id}"}],
            },
            "x": "",
        },
        separators=(",", ":"),
    ).encode()
    return crc32_forgery(head[: -len(b'"}')], b'"}', zlib.crc32(genuine))


def paypal_settings(tmp_path: Path) -> dict[str, Any]:
    return {"paypal_webhook_id": [PAYPAL_WEBHOOK_ID], "paypal_cert_path": write_paypal_cert(tmp_path)}


def error_code(response: Any) -> tuple[int, str | None]:
    return response.status_code, response.json().get("error", {}).get("code")


# --- PayPal: a transmission's signature, with a body forged to its CRC32 --------------------------------


def test_the_forgery_helper_matches_the_crc32_with_valid_json() -> None:
    genuine = genuine_capture()
    forged = forged_refund(genuine)

    assert zlib.crc32(forged) == zlib.crc32(genuine)
    assert forged != genuine
    assert json.loads(forged)["event_type"] == "PAYMENT.CAPTURE.REFUNDED"


@pytest.mark.parametrize("forged_id", ["WH-FORGED-1", "WH-GENUINE-9"], ids=["new_event_id", "same_event_id"])
def test_a_paypal_signature_is_refused_with_a_body_forged_to_its_crc32(
    client_factory: Callable[..., TestClient], tmp_path: Path, database_url: str, forged_id: str
) -> None:
    settings = paypal_settings(tmp_path)
    genuine = genuine_capture()
    headers = paypal_headers(genuine)
    first = client_factory(**settings)
    assert first.post("/webhooks/paypal", content=genuine, headers=headers).json() == {
        "status": "processed",
        "event_id": "WH-GENUINE-9",
    }

    # The forger holds the genuine delivery's headers and posts to another instance on the same
    # database (as after a restart): the database remembers the transmission id, not the process.
    second = client_factory(**settings)
    forged = forged_refund(genuine, event_id=forged_id)
    response = second.post("/webhooks/paypal", content=forged, headers=headers)

    assert error_code(response) == (403, "signature_invalid"), response.text
    assert "already accepted with another body" in response.json()["error"]["message"]
    [stored] = stored_events(database_url, "paypal")
    assert (stored.event_id, stored.raw_body) == ("WH-GENUINE-9", genuine)
    payment = second.get("/payments/CAP-9").json()
    assert (payment["status"], payment["event_count"]) == ("captured", 1)
    # The genuine delivery itself, sent again, is still an ordinary duplicate.
    again = second.post("/webhooks/paypal", content=genuine, headers=headers)
    assert again.json() == {"status": "duplicate", "event_id": "WH-GENUINE-9"}


def test_a_paypal_retry_under_a_new_transmission_is_a_duplicate(
    client_factory: Callable[..., TestClient], tmp_path: Path, database_url: str
) -> None:
    client = client_factory(**paypal_settings(tmp_path))
    genuine = genuine_capture()

    answers = [
        client.post("/webhooks/paypal", content=genuine, headers=paypal_headers(genuine)).json()["status"]
        for _ in range(2)
    ]

    assert answers == ["processed", "duplicate"]
    assert len(stored_events(database_url, "paypal")) == 1


def adapter_events(tmp_path: Path, *bodies: bytes, headers: dict[str, str]) -> list[NormalizedEvent]:
    """`bodies` as the PayPal adapter hands them to the store, all sent with `headers`."""
    adapter = PayPal(Settings(**paypal_settings(tmp_path)))
    lower = {name.lower(): value for name, value in headers.items()}
    return [
        adapter.normalise(json.loads(body), body=body, headers=lower, received_at=datetime.now(UTC))
        for body in bodies
    ]


def test_a_forgery_in_the_same_batch_as_the_genuine_delivery_is_refused(
    migrated_engine: Engine, tmp_path: Path
) -> None:
    genuine = genuine_capture()
    events = adapter_events(tmp_path, genuine, forged_refund(genuine), headers=paypal_headers(genuine))

    async def write() -> list[bool | None]:
        [sink] = make_sinks(migrated_engine, make_settings(_url(migrated_engine), write_concurrency=1))
        try:
            return await sink.write(events)
        finally:
            await sink.close()

    assert asyncio.run(write()) == [True, None]


def test_a_forgery_racing_the_genuine_delivery_in_another_transaction_is_refused(
    migrated_engine: Engine, tmp_path: Path
) -> None:
    """Two sinks (two connections; on SQLite two writer processes), each with one of the pair, at once:
    whichever commits first is stored, the other is refused. Several rounds, each its own transmission."""
    rounds = []
    for index in range(5):
        genuine = genuine_capture(f"WH-RACE-{index}", f"CAP-RACE-{index}")
        forged = forged_refund(genuine, event_id=f"WH-RACE-FORGED-{index}", capture_id=f"CAP-RACE-{index}")
        rounds.append(adapter_events(tmp_path, genuine, forged, headers=paypal_headers(genuine)))

    async def race() -> list[list[bool | None]]:
        settings = make_settings(_url(migrated_engine), write_concurrency=1)
        [one], [other] = make_sinks(migrated_engine, settings), make_sinks(migrated_engine, settings)
        try:
            await asyncio.gather(one.open(), other.open())
            outcomes = []
            for genuine, forged in rounds:
                first, second = await asyncio.gather(one.write([genuine]), other.write([forged]))
                outcomes.append(first + second)
            return outcomes
        finally:
            await asyncio.gather(one.close(), other.close())

    for outcome in asyncio.run(race()):
        assert sorted(outcome, key=str) == [None, True]
    stored = stored_events(_url(migrated_engine), "paypal")
    assert len(stored) == len(rounds)
    assert len({event.signed_key for event in stored}) == len(rounds)


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


# --- Razorpay: X-Razorpay-Event-Id is not signed ---------------------------------------------------------


def razorpay_body(*, with_id: bool) -> bytes:
    payload: dict[str, Any] = {
        "entity": "event",
        "event": "payment.captured",
        "payload": {
            "payment": {
                "entity": {"id": "pay_replay", "status": "captured", "amount": 5000, "currency": "INR"}
            }
        },
        "created_at": 1751885965,
    }
    if with_id:
        payload["id"] = "evt_1"
    return json.dumps(payload).encode()


@pytest.mark.parametrize("with_id", [True, False], ids=["id_in_body", "id_in_header"])
def test_a_stored_razorpay_body_sent_again_under_new_event_ids_is_a_duplicate(
    client: TestClient, database_url: str, with_id: bool
) -> None:
    body = razorpay_body(with_id=with_id)
    headers = razorpay_headers(body, event_id=None if with_id else "evt_1")
    assert client.post("/webhooks/razorpay", content=body, headers=headers).json()["status"] == "processed"

    signature = headers["X-Razorpay-Signature"]
    answers = [
        client.post(
            "/webhooks/razorpay",
            content=body,
            headers={"X-Razorpay-Signature": signature, "X-Razorpay-Event-Id": replay_id},
        )
        for replay_id in ("replay-0", "replay-1")
    ]

    assert [(a.status_code, a.json()["status"]) for a in answers] == [(200, "duplicate")] * 2
    assert [event.event_id for event in stored_events(database_url, "razorpay")] == ["evt_1"]
    assert client.get("/payments/pay_replay").json()["event_count"] == 1


def test_different_razorpay_bodies_are_different_events(client: TestClient, database_url: str) -> None:
    # The body's digest is the key: a changed byte is a different (authentic) event.
    bodies = [
        razorpay_body(with_id=False),
        razorpay_body(with_id=False).replace(b"1751885965", b"1751885966"),
    ]

    answers = [
        client.post("/webhooks/razorpay", content=body, headers=razorpay_headers(body, event_id=f"evt_{n}"))
        for n, body in enumerate(bodies)
    ]

    assert [a.json()["status"] for a in answers] == ["processed", "processed"]
    assert len(stored_events(database_url, "razorpay")) == 2


# --- readers never see a signature ------------------------------------------------------------------------


def _standard_body() -> bytes:
    return b'{"type":"payment.succeeded","data":{"id":"pay_std_redact","status":"captured"}}'


DELIVERIES: dict[str, Callable[[], tuple[str, str, bytes, dict[str, str], list[str]]]] = {
    # provider -> (route's provider, event id, body, headers, the headers holding a signature)
    "razorpay": lambda: (
        "razorpay",
        "evt_redact",
        (body := json.dumps({"event": "payment.captured", "id": "evt_redact"}).encode()),
        razorpay_headers(body),
        ["x-razorpay-signature"],
    ),
    "stripe": lambda: (
        "stripe",
        "evt_redact",
        (body := b'{"id":"evt_redact","object":"event","type":"charge.updated","data":{"object":{}}}'),
        stripe_headers(body),
        ["stripe-signature"],
    ),
    "paypal": lambda: (
        "paypal",
        "WH-GENUINE-9",
        (body := genuine_capture()),
        paypal_headers(body),
        ["paypal-transmission-sig"],
    ),
    "standard": lambda: (
        "standard",
        "msg_redact",
        (body := _standard_body()),
        standard_headers(body, msg_id="msg_redact"),
        ["webhook-signature"],
    ),
    "svix": lambda: (
        "standard",
        "msg_redact",
        (body := _standard_body()),
        standard_headers(body, msg_id="msg_redact", prefix="svix"),
        ["svix-signature"],
    ),
    "paystack": lambda: (
        "paystack",
        "sha256:" + hashlib.sha256(body := b'{"event":"charge.success","data":{}}').hexdigest(),
        body,
        paystack_headers(body),
        ["x-paystack-signature"],
    ),
}


@pytest.mark.parametrize("sender", sorted(DELIVERIES))
def test_readers_see_that_a_signature_was_sent_but_not_its_value(
    client_factory: Callable[..., TestClient], tmp_path: Path, database_url: str, sender: str
) -> None:
    provider, event_id, body, headers, signature_headers = DELIVERIES[sender]()
    client = client_factory(**all_provider_settings(tmp_path))
    assert client.post(f"/webhooks/{provider}", content=body, headers=headers).status_code == 200

    response = client.get(f"/events/{provider}/{event_id}")

    shown = response.json()["headers"]
    kept = stored_event(database_url, provider, event_id).headers
    sent = {name.lower(): value for name, value in headers.items()}
    for name in signature_headers:
        assert shown[name] == REDACTED
        assert kept[name] == sent[name]  # the evidence stays in the database
        assert sent[name] not in response.text
    # What is not a signature is shown as sent: PayPal's transmission id and time identify the delivery
    # (and are worthless to a forger without the signature), the content type, Standard's message id.
    unsigned = {name: value for name, value in kept.items() if name not in signature_headers}
    assert {name: shown[name] for name in unsigned} == unsigned
