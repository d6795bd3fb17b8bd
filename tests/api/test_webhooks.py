"""The core receiver's promises, on SQLite and PostgreSQL, with real Razorpay HMAC signatures."""

import json
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
import requests
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import create_engine, select

from config import Settings
from database import normalise_url
from models import Event
from tests.conftest import LiveServer
from tests.support import razorpay_delivery, razorpay_event, razorpay_signature


def stored_events(database_url: str) -> list[Event]:
    engine = create_engine(normalise_url(database_url))
    try:
        from sqlalchemy.orm import Session

        with Session(engine) as session:
            return list(session.scalars(select(Event).order_by(Event.id)))
    finally:
        engine.dispose()


def test_new_event_is_processed_then_duplicate(client: TestClient, database_url: str) -> None:
    body, headers = razorpay_delivery(razorpay_event(event_id="evt_auth_014"))

    first = client.post("/webhooks/razorpay", content=body, headers=headers)
    second = client.post("/webhook/payments", content=body, headers=headers)

    assert first.status_code == 200
    assert first.json() == {"status": "processed", "event_id": "evt_auth_014"}
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate", "event_id": "evt_auth_014"}
    [event] = stored_events(database_url)
    assert event.raw_body == body
    assert (event.provider, event.event_type, event.payment_id, event.amount, event.currency) == (
        "razorpay",
        "payment.authorized",
        "pay_014",
        5000,
        "INR",
    )
    assert event.occurred_at.isoformat() == "2025-07-07T10:59:25+00:00"
    assert event.received_at.tzinfo is not None
    assert event.headers["x-razorpay-signature"] == headers["X-Razorpay-Signature"]


def test_event_id_header_wins_over_body_id_and_body_hash_is_the_last_resort(
    client: TestClient, database_url: str
) -> None:
    real_shape, headers = razorpay_delivery(razorpay_event(event_id=""))
    with_header = client.post(
        "/webhooks/razorpay", content=real_shape, headers={**headers, "X-Razorpay-Event-Id": "HdrEvt123"}
    )
    derived = client.post(
        "/webhooks/razorpay",
        content=real_shape + b" ",
        headers={"X-Razorpay-Signature": razorpay_signature(real_shape + b" ")},
    )

    assert with_header.json()["event_id"] == "HdrEvt123"
    assert derived.json()["event_id"].startswith("sha256:")
    events = stored_events(database_url)
    assert [(e.event_id.startswith("sha256:"), e.id_derived) for e in events] == [
        (False, False),
        (True, True),
    ]


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("missing_signature", 403, "signature_missing"),
        ("wrong_signature", 403, "signature_invalid"),
        ("wrong_secret", 403, "signature_invalid"),
        ("garbage_signature", 403, "signature_invalid"),
        ("not_json", 400, "invalid_json"),
        ("not_utf8", 400, "invalid_json"),
        ("json_array", 400, "invalid_payload"),
        ("no_event_type", 400, "invalid_payload"),
    ],
)
def test_bad_deliveries_get_the_documented_error_and_store_nothing(
    client: TestClient, database_url: str, case: str, status: int, code: str
) -> None:
    body, headers = razorpay_delivery(razorpay_event())
    if case == "missing_signature":
        headers.pop("X-Razorpay-Signature")
    elif case == "wrong_signature":
        headers["X-Razorpay-Signature"] = razorpay_signature(body + b"x")
    elif case == "wrong_secret":
        headers["X-Razorpay-Signature"] = razorpay_signature(body, "other_secret")
    elif case == "garbage_signature":
        headers["X-Razorpay-Signature"] = "not hex at all \u00e9".encode("latin-1")  # type: ignore[assignment]
    else:
        body = {
            "not_json": b"{not json",
            "not_utf8": b'{"event": "\xff\xfe"}',
            "json_array": b"[1, 2]",
            "no_event_type": json.dumps({"payload": {}, "id": "evt_x"}).encode(),
        }[case]
        headers["X-Razorpay-Signature"] = razorpay_signature(body)

    response = client.post("/webhooks/razorpay", content=body, headers=headers)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    if case == "no_event_type":
        assert "'event'" in response.json()["error"]["message"]
    assert stored_events(database_url) == []


def test_oversize_body_is_refused(client_factory, database_url: str) -> None:
    client = client_factory(max_body_bytes=1024)
    body, headers = razorpay_delivery(razorpay_event() | {"padding": "x" * 2000})

    response = client.post("/webhooks/razorpay", content=body, headers=headers)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert stored_events(database_url) == []


def test_any_rotated_secret_verifies(client_factory) -> None:
    client = client_factory(razorpay_webhook_secret=["new_secret", "old_secret"])
    for secret in ("old_secret", "new_secret"):
        body, headers = razorpay_delivery(razorpay_event(), secret)
        assert client.post("/webhooks/razorpay", content=body, headers=headers).status_code == 200


def test_history_is_chronological_by_occurred_at_then_receipt(client: TestClient) -> None:
    # Delivered out of order: capture first, then the earlier authorisation, then a same-second event.
    for event, created_at in [
        ("payment.captured", 200),
        ("payment.authorized", 100),
        ("payment.failed", 200),
    ]:
        body, headers = razorpay_delivery(
            razorpay_event(event=event, created_at=created_at, payment_id="pay_h")
        )
        assert client.post("/webhooks/razorpay", content=body, headers=headers).status_code == 200

    history = client.get("/payments/pay_h/events").json()

    assert [item["event_type"] for item in history] == [
        "payment.authorized",
        "payment.captured",
        "payment.failed",
    ]
    assert history[0]["occurred_at"] == "1970-01-01T00:01:40Z"
    assert set(history[0]) >= {
        "event_id",
        "event_type",
        "status",
        "amount",
        "currency",
        "occurred_at",
        "received_at",
    }
    assert client.get("/payments/pay_unknown/events").json() == []


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_unknown_route_uses_the_error_shape(client: TestClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"APP_ENV": "production"}, "RAZORPAY_WEBHOOK_SECRET"),
        (
            {"APP_ENV": "production", "RAZORPAY_WEBHOOK_SECRET": "test_secret", "API_TOKENS": "t"},
            "RAZORPAY_WEBHOOK_SECRET",
        ),
        ({"APP_ENV": "production", "RAZORPAY_WEBHOOK_SECRET": "live_secret"}, "API_TOKENS"),
    ],
)
def test_production_refuses_to_start_without_real_secrets(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    for name in ("RAZORPAY_WEBHOOK_SECRET", "API_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=variable):
        Settings()


def test_development_defaults_to_the_prototype_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAZORPAY_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("RAZORPAY_WEBHOOK_SECRET", "a, b")
    assert Settings().razorpay_webhook_secret == ["a", "b"]
    monkeypatch.delenv("RAZORPAY_WEBHOOK_SECRET")
    assert Settings(app_env="development").razorpay_webhook_secret == ["test_secret"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://user@host:5432/db", "postgresql+psycopg://user@host:5432/db"),
        ("postgres://user@host/db", "postgresql+psycopg://user@host/db"),
        ("postgresql+psycopg://user@host/db", "postgresql+psycopg://user@host/db"),
        ("sqlite:///./webhooks.db", "sqlite:///./webhooks.db"),
    ],
)
def test_database_urls_from_hosting_platforms_work_as_given(given: str, expected: str) -> None:
    assert normalise_url(given).render_as_string() == expected


def test_one_hundred_concurrent_deliveries_store_one_row(live_server: LiveServer, database_url: str) -> None:
    body, headers = razorpay_delivery(razorpay_event(event_id="evt_race"))
    start = Barrier(100)

    def deliver(_: int) -> int:
        with requests.Session() as session:
            start.wait(timeout=30)
            return session.post(
                live_server.url + "/webhooks/razorpay", data=body, headers=headers, timeout=30
            ).status_code

    with ThreadPoolExecutor(max_workers=100) as pool:
        statuses = list(pool.map(deliver, range(100)))

    assert statuses == [200] * 100
    assert [event.event_id for event in stored_events(database_url)] == ["evt_race"]


def test_prototype_client_keeps_working(live_server: LiveServer) -> None:
    """The prototype's own client: json.dumps(event) to /webhook/payments, then the history."""
    import hashlib
    import hmac

    events = [
        {
            "event": "payment.authorized",
            "payload": {
                "payment": {
                    "entity": {"id": "pay_014", "status": "authorized", "amount": 5000, "currency": "INR"}
                }
            },
            "created_at": 1751885965,
            "id": "evt_auth_014",
        },
        {
            "event": "payment.captured",
            "payload": {
                "payment": {
                    "entity": {"id": "pay_014", "status": "captured", "amount": 5000, "currency": "INR"}
                }
            },
            "created_at": 1751886085,
            "id": "evt_cap_014",
        },
    ]
    for event in events:
        payload = json.dumps(event)
        signature = hmac.new(b"test_secret", payload.encode(), hashlib.sha256).hexdigest()
        response = requests.post(
            live_server.url + "/webhook/payments",
            data=payload,
            headers={"Content-Type": "application/json", "X-Razorpay-Signature": signature},
            timeout=10,
        )
        assert response.status_code == 200

    history = requests.get(live_server.url + "/payments/pay_014/events", timeout=10).json()
    assert [(item["event_type"], item["event_id"]) for item in history] == [
        ("payment.authorized", "evt_auth_014"),
        ("payment.captured", "evt_cap_014"),
    ]
    assert all("received_at" in item for item in history)
