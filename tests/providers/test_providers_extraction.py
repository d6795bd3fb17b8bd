"""What each adapter extracts, through the API on both databases: Paystack's derived ids, Standard Webhooks'
configurable paths and optional type, Stripe's payment id and status per object."""

import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import (
    all_provider_settings,
    paystack_headers,
    standard_headers,
    stored_event,
    stored_events,
    stripe_headers,
)


@pytest.fixture
def client(client_factory: Callable[..., TestClient], tmp_path: Path) -> TestClient:
    return client_factory(**all_provider_settings(tmp_path))


# --- Paystack -----------------------------------------------------------------------------------------

CHARGE_SUCCESS: dict[str, Any] = {
    "event": "charge.success",
    "data": {
        "id": 302961,
        "reference": "qTPrJoy9Bx",
        "status": "success",
        "amount": 10000,
        "currency": "NGN",
        "paid_at": "2016-09-30T21:10:19.000Z",
        "created_at": "2016-09-30T21:09:56.000Z",
    },
}


def test_paystack_identical_retries_dedupe_on_the_body_hash(client: TestClient, database_url: str) -> None:
    body = json.dumps(CHARGE_SUCCESS).encode()
    other = json.dumps({**CHARGE_SUCCESS, "data": {**CHARGE_SUCCESS["data"], "reference": "other"}}).encode()

    first = client.post("/webhooks/paystack", content=body, headers=paystack_headers(body))
    retry = client.post("/webhooks/paystack", content=body, headers=paystack_headers(body))
    different = client.post("/webhooks/paystack", content=other, headers=paystack_headers(other))

    key = "sha256:" + hashlib.sha256(body).hexdigest()
    assert first.json() == {"status": "processed", "event_id": key}
    assert retry.json() == {"status": "duplicate", "event_id": key}
    assert different.json()["status"] == "processed"
    assert different.json()["event_id"] == "sha256:" + hashlib.sha256(other).hexdigest()
    event = stored_event(database_url, "paystack", key)
    assert event.id_derived is True
    assert event.occurred_at == datetime(2016, 9, 30, 21, 10, 19, tzinfo=UTC)
    assert len(stored_events(database_url, "paystack")) == 2


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            {
                "event": "charge.success",
                "data": {k: v for k, v in CHARGE_SUCCESS["data"].items() if k != "paid_at"},
            },
            ("qTPrJoy9Bx", "captured", datetime(2016, 9, 30, 21, 9, 56, tzinfo=UTC)),
        ),
        (
            {
                "event": "refund.processed",
                "data": {
                    "status": "processed",
                    "transaction_reference": "qTPrJoy9Bx",
                    "refund_reference": "rf_1",
                    "amount": 10000,
                    "currency": "NGN",
                    "created_at": "2016-10-01T08:00:00.000Z",
                },
            },
            ("qTPrJoy9Bx", "refunded", datetime(2016, 10, 1, 8, tzinfo=UTC)),
        ),
        ({"event": "subscription.create", "data": {"subscription_code": "SUB_1"}}, (None, None, None)),
    ],
    ids=["created_at_when_unpaid", "refund_names_its_charge", "unknown_event_is_stored"],
)
def test_paystack_fields(
    client: TestClient, database_url: str, payload: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    body = json.dumps(payload).encode()

    response = client.post("/webhooks/paystack", content=body, headers=paystack_headers(body))

    assert response.status_code == 200, response.text
    event = stored_event(database_url, "paystack", response.json()["event_id"])
    occurred = expected[2] or event.received_at
    assert (event.event_type, event.payment_id, event.status, event.occurred_at) == (
        payload["event"],
        expected[0],
        expected[1],
        occurred,
    )


# --- Standard Webhooks --------------------------------------------------------------------------------


def test_standard_body_without_type_is_stored_with_no_type(client: TestClient, database_url: str) -> None:
    body = json.dumps({"data": {"id": "pay_free_form", "status": "authorized"}}).encode()
    signed_at = int(time.time())

    response = client.post(
        "/webhooks/standard",
        content=body,
        headers=standard_headers(body, msg_id="msg_no_type", timestamp=signed_at),
    )

    assert response.json() == {"status": "processed", "event_id": "msg_no_type"}
    event = stored_event(database_url, "standard", "msg_no_type")
    assert (event.event_type, event.payment_id, event.status) == (None, "pay_free_form", "authorized")
    # No `timestamp` in the body: the signed webhook-timestamp says when it happened.
    assert event.occurred_at == datetime.fromtimestamp(signed_at, UTC)


def test_standard_json_paths_are_configurable(
    client_factory: Callable[..., TestClient], tmp_path: Path, database_url: str
) -> None:
    client = client_factory(
        **all_provider_settings(
            tmp_path,
            standard_payment_id_path="object.payment.reference",
            standard_status_path="object.payment.state",
            standard_amount_path="object.totals.minor",
            standard_currency_path="object.totals.ccy",
        )
    )
    body = json.dumps(
        {
            "type": "invoice.paid",
            "timestamp": "2025-07-07T12:00:00+00:00",
            "object": {
                "payment": {"reference": "ref-42", "state": "captured"},
                "totals": {"minor": 1234, "ccy": "gbp"},
            },
            "data": {"id": "not-this-one", "status": "failed"},
        }
    ).encode()

    response = client.post(
        "/webhooks/standard", content=body, headers=standard_headers(body, msg_id="msg_paths")
    )

    assert response.status_code == 200, response.text
    event = stored_event(database_url, "standard", "msg_paths")
    assert (
        event.event_type,
        event.payment_id,
        event.status,
        event.provider_status,
        event.amount,
        event.currency,
    ) == ("invoice.paid", "ref-42", "captured", "captured", 1234, "GBP")
    assert event.occurred_at == datetime(2025, 7, 7, 12, tzinfo=UTC)


def test_standard_status_outside_the_vocabulary_is_kept_but_moves_nothing(
    client: TestClient, database_url: str
) -> None:
    body = json.dumps(
        {"type": "payment.updated", "data": {"id": "pay_s", "status": "requires_action"}}
    ).encode()

    client.post("/webhooks/standard", content=body, headers=standard_headers(body, msg_id="msg_status"))

    event = stored_event(database_url, "standard", "msg_status")
    assert (event.status, event.provider_status) == (None, "requires_action")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"id": "p", "amount": "12.00"}, "data.amount"),
        ({"id": "p", "currency": "euro"}, "data.currency"),
        ({"id": {"nested": 1}}, "data.id"),
    ],
)
def test_standard_configured_fields_of_the_wrong_type_are_invalid(
    client: TestClient, database_url: str, data: dict[str, Any], field: str
) -> None:
    body = json.dumps({"type": "payment.succeeded", "data": data}).encode()

    response = client.post("/webhooks/standard", content=body, headers=standard_headers(body))

    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_payload")
    assert repr(field) in response.json()["error"]["message"]
    assert stored_events(database_url) == []


# --- Stripe -------------------------------------------------------------------------------------------


def stripe_event(event_type: str, obj: dict[str, Any], event_id: str = "evt_x") -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": 1751889985,
        "data": {"object": obj},
    }


CHARGE = {
    "id": "ch_1",
    "object": "charge",
    "payment_intent": "pi_1",
    "amount": 5000,
    "currency": "eur",
    "status": "succeeded",
    "captured": True,
    "refunded": False,
    "amount_refunded": 0,
}


@pytest.mark.parametrize(
    ("event_type", "obj", "expected"),
    [
        (
            "payment_intent.created",
            {
                "id": "pi_1",
                "object": "payment_intent",
                "status": "requires_payment_method",
                "amount": 5000,
                "currency": "eur",
            },
            ("pi_1", "created"),
        ),
        (
            "payment_intent.amount_capturable_updated",
            {"id": "pi_1", "object": "payment_intent", "status": "requires_capture"},
            ("pi_1", "authorized"),
        ),
        ("payment_intent.payment_failed", {"id": "pi_1", "object": "payment_intent"}, ("pi_1", "failed")),
        ("charge.succeeded", CHARGE, ("pi_1", "captured")),
        ("charge.succeeded", CHARGE | {"captured": False}, ("pi_1", "authorized")),
        ("charge.refunded", CHARGE | {"refunded": True, "amount_refunded": 5000}, ("pi_1", "refunded")),
        ("charge.refunded", CHARGE | {"amount_refunded": 1000}, ("pi_1", "partially_refunded")),
        ("charge.succeeded", CHARGE | {"payment_intent": None}, ("ch_1", "captured")),
        (
            "refund.created",
            {
                "id": "re_1",
                "object": "refund",
                "payment_intent": "pi_1",
                "charge": "ch_1",
                "status": "succeeded",
            },
            ("pi_1", None),
        ),
        (
            "charge.dispute.created",
            {
                "id": "dp_1",
                "object": "dispute",
                "charge": "ch_1",
                "payment_intent": "pi_1",
                "status": "needs_response",
            },
            ("pi_1", "disputed"),
        ),
        (
            "charge.dispute.closed",
            {"id": "dp_1", "object": "dispute", "charge": "ch_1", "payment_intent": None, "status": "won"},
            ("ch_1", "dispute_won"),
        ),
        (
            "charge.dispute.closed",
            {"id": "dp_1", "object": "dispute", "charge": "ch_1", "payment_intent": "pi_1", "status": "lost"},
            ("pi_1", "dispute_lost"),
        ),
    ],
    ids=[
        "pi_created",
        "pi_capturable",
        "pi_failed",
        "charge_captured",
        "charge_uncaptured",
        "charge_refunded",
        "charge_partially_refunded",
        "legacy_charge",
        "refund",
        "dispute_created",
        "dispute_won_legacy",
        "dispute_lost",
    ],
)
def test_stripe_payment_id_and_status_per_object(
    client: TestClient,
    database_url: str,
    event_type: str,
    obj: dict[str, Any],
    expected: tuple[str, str | None],
) -> None:
    body = json.dumps(stripe_event(event_type, obj)).encode()

    response = client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))

    assert response.status_code == 200, response.text
    event = stored_event(database_url, "stripe", "evt_x")
    assert (event.payment_id, event.status) == expected
    assert event.provider_status == obj.get("status")
