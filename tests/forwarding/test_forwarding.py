"""Forwarding's promises through the app: each stored event in the stream once, on its subject, with
its headers; payment status changes on payments.state.*; nothing when NATS_URL is unset."""

import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.forwarding.nats_support import NatsServer, msg_ids, read_stream, stream_count
from tests.support import razorpay_delivery, razorpay_event


def post(client: TestClient, **fields: object) -> str:
    payload = razorpay_event(**fields)  # type: ignore[arg-type]
    body, headers = razorpay_delivery(payload)
    response = client.post("/webhooks/razorpay", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(payload["id"])


def wait_for_messages(url: str, count: int, deadline_s: float = 15.0) -> None:
    deadline = time.monotonic() + deadline_s
    while stream_count(url) < count and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the stream until the relay has published, not a wait for a race
    assert stream_count(url) >= count


def test_each_stored_event_is_published_once_with_its_state_changes(
    client_factory: Callable[..., TestClient], nats_server: NatsServer
) -> None:
    client = client_factory(nats_url=nats_server.url)
    authorized = post(
        client, event="payment.authorized", payment_id="pay_1", event_id="evt_a", created_at=100
    )
    captured = post(client, event="payment.captured", payment_id="pay_1", event_id="evt_c", created_at=200)
    # Late, and a repeat: neither moves the state, so neither publishes a state message.
    post(client, event="payment.authorized", payment_id="pay_1", event_id="evt_late", created_at=150)
    post(client, event="payment.captured", payment_id="pay_1", event_id="evt_c", created_at=200)

    wait_for_messages(nats_server.url, 5)
    messages = read_stream(nats_server.url)
    assert msg_ids(messages) == {
        f"razorpay:{authorized}": 1,
        f"razorpay:{captured}": 1,
        "razorpay:evt_late": 1,
        f"state:razorpay:{authorized}": 1,
        f"state:razorpay:{captured}": 1,
    }
    events = [m for m in messages if m.subject.startswith("payments.events.")]
    assert [m.subject for m in events] == [
        "payments.events.razorpay.payment_authorized",
        "payments.events.razorpay.payment_captured",
        "payments.events.razorpay.payment_authorized",
    ]
    first = events[0]
    assert first.headers["Webhook-Payment-Id"] == "pay_1"
    assert int(first.headers["Webhook-Event-Row-Id"]) > 0
    assert set(first.body) == {
        "provider",
        "event_id",
        "event_type",
        "payment_id",
        "status",
        "provider_status",
        "amount",
        "currency",
        "occurred_at",
        "received_at",
    }
    states = [m.body for m in messages if m.subject == "payments.state.razorpay"]
    assert [(s["from"], s["to"], s["event_id"]) for s in states] == [
        (None, "authorized", authorized),
        ("authorized", "captured", captured),
    ]


def test_raw_body_is_published_only_when_asked(
    client_factory: Callable[..., TestClient], nats_server: NatsServer
) -> None:
    client = client_factory(nats_url=nats_server.url, forward_raw_body=True)
    post(client, event="refund.created", payment_id="pay_2", event_id="evt_r")
    wait_for_messages(nats_server.url, 1)
    (message,) = read_stream(nats_server.url, subject="payments.events.>")
    assert message.body["raw_body"]


def test_event_types_with_wildcards_dots_spaces_and_non_ascii_reach_the_stream(
    client_factory: Callable[..., TestClient], nats_server: NatsServer
) -> None:
    client = client_factory(nats_url=nats_server.url)
    for index, event_type in enumerate(["a.b", "pay*ment", "x>y", "with space", "paiement.capturé"]):
        post(client, event=event_type, payment_id=f"pay_{index}", event_id=f"evt_{index}")
    wait_for_messages(nats_server.url, 5)
    subjects = {m.subject for m in read_stream(nats_server.url, subject="payments.events.>")}
    assert subjects == {
        "payments.events.razorpay.a_b",
        "payments.events.razorpay.pay_ment",
        "payments.events.razorpay.x_y",
        "payments.events.razorpay.with_space",
        "payments.events.razorpay.paiement_captur_",
    }


@pytest.mark.parametrize(
    ("event_type", "token"),
    [
        ("payment.captured", "payment_captured"),
        ("a*b", "a_b"),
        ("x>y", "x_y"),
        ("with space", "with_space"),
        ("paiement.capturé", "paiement_captur_"),
        ("", "_"),
        (None, "_"),
        ("ok-Type_9", "ok-Type_9"),
    ],
)
def test_any_event_type_makes_a_valid_subject(event_type: str | None, token: str) -> None:
    from datetime import UTC, datetime

    from forwarding.messages import StoredEvent, event_message

    now = datetime.now(UTC)
    event = StoredEvent(
        1, "razorpay", "evt\r\n1", event_type, "pay_1", None, None, None, None, now, now, None
    )
    message = event_message(event, prefix="payments")
    assert message.subject == f"payments.events.razorpay.{token}"
    assert message.headers["Nats-Msg-Id"] == "razorpay:evt%0D%0A1"
