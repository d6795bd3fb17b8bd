"""Providers' published example payloads (../shared/fixtures, sources in its SOURCES.md), signed here and
delivered through the API: what is stored must match the field-location table in SOURCES.md.

Files are sent byte for byte as published; the take-home mock files are JSON arrays, so each element is
re-serialised and the bytes sent are the bytes signed. Every test skips when the fixtures are absent.
"""

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import fixture_path
from tests.support import (
    all_provider_settings,
    paypal_headers,
    razorpay_headers,
    stored_event,
    stored_events,
    stripe_headers,
)

# (event_type, payment_id, status, provider_status, amount, currency)
Stored = tuple[str | None, str | None, str | None, str | None, int | None, str | None]


@pytest.fixture
def client(client_factory: Callable[..., TestClient], tmp_path: Path) -> TestClient:
    return client_factory(**all_provider_settings(tmp_path))


def fields(event: Any) -> Stored:
    return (
        event.event_type,
        event.payment_id,
        event.status,
        event.provider_status,
        event.amount,
        event.currency,
    )


# --- Razorpay: official docs samples (razorpay/markdown-docs) and SDK test payloads -------------------------
# Real Razorpay bodies carry no event id: it comes in X-Razorpay-Event-Id, sent here per file.

RAZORPAY: dict[str, Stored] = {
    "docs/order_paid__card.json": ("order.paid", "pay_DESp9bgForNoUd", "captured", "captured", 100, "INR"),
    "docs/order_paid__netbanking.json": (
        "order.paid",
        "pay_DESlfW9H8K9uqM",
        "captured",
        "captured",
        100,
        "INR",
    ),
    "docs/order_paid__upi.json": ("order.paid", "pay_DESyzxuld02Zul", "captured", "captured", 100, "INR"),
    "docs/order_paid__wallets.json": ("order.paid", "pay_DEStK8twGApHtW", "captured", "captured", 100, "INR"),
    "docs/payment_authorized__card.json": (
        "payment.authorized",
        "pay_DESp9bgForNoUd",
        "authorized",
        "authorized",
        100,
        "INR",
    ),
    "docs/payment_authorized__netbanking.json": (
        "payment.authorized",
        "pay_DESlfW9H8K9uqM",
        "authorized",
        "authorized",
        100,
        "INR",
    ),
    "docs/payment_authorized__upi.json": (
        "payment.authorized",
        "pay_DESyzxuld02Zul",
        "authorized",
        "authorized",
        100,
        "INR",
    ),
    "docs/payment_authorized__wallets.json": (
        "payment.authorized",
        "pay_DEStK8twGApHtW",
        "authorized",
        "authorized",
        100,
        "INR",
    ),
    "docs/payment_captured__card.json": (
        "payment.captured",
        "pay_DESp9bgForNoUd",
        "captured",
        "captured",
        100,
        "INR",
    ),
    "docs/payment_captured__netbanking.json": (
        "payment.captured",
        "pay_DESlfW9H8K9uqM",
        "captured",
        "captured",
        100,
        "INR",
    ),
    "docs/payment_captured__upi.json": (
        "payment.captured",
        "pay_DESyzxuld02Zul",
        "captured",
        "captured",
        100,
        "INR",
    ),
    "docs/payment_captured__wallets.json": (
        "payment.captured",
        "pay_DEStK8twGApHtW",
        "captured",
        "captured",
        100,
        "INR",
    ),
    "docs/payment_failed__card.json": (
        "payment.failed",
        "pay_DESp9bgForNoUd",
        "failed",
        "failed",
        100,
        "INR",
    ),
    "docs/payment_failed__netbanking.json": (
        "payment.failed",
        "pay_DEAU825sJlCbGa",
        "failed",
        "failed",
        50000,
        "INR",
    ),
    "docs/payment_failed__upi.json": ("payment.failed", "pay_DESyzxuld02Zul", "failed", "failed", 100, "INR"),
    "docs/payment_failed__wallets.json": (
        "payment.failed",
        "pay_Epiu9wz2hXBGsJ",
        "failed",
        "failed",
        10000,
        "INR",
    ),
    # Disputes: the payment id and the amount disputed come from the dispute entity.
    "docs/payment_dispute_created.json": (
        "payment.dispute.created",
        "pay_EFtmUsbwpXwBHI",
        "disputed",
        "open",
        39000,
        "INR",
    ),
    "docs/payment_dispute_action_required.json": (
        "payment.dispute.action_required",
        "pay_EFtmUsbwpXwBHI",
        "disputed",
        "open",
        390000,
        "INR",
    ),
    "docs/payment_dispute_under_review.json": (
        "payment.dispute.under_review",
        "pay_EsIStomuIwFQ6U",
        "disputed",
        "under_review",
        130000,
        "INR",
    ),
    "docs/payment_dispute_won.json": (
        "payment.dispute.won",
        "pay_EsIStomuIwFQ6U",
        "dispute_won",
        "won",
        130000,
        "INR",
    ),
    "docs/payment_dispute_lost.json": (
        "payment.dispute.lost",
        "pay_EFtmUsbwpXwBHI",
        "dispute_lost",
        "lost",
        39000,
        "INR",
    ),
    "docs/payment_dispute_closed.json": (
        "payment.dispute.closed",
        "pay_EsIKS2bpFiWghA",
        None,
        "closed",
        10000,
        "INR",
    ),
    # Refunds: the payment id comes from the refund entity; the payment was partially refunded.
    "docs/refund_created__normal_refunds.json": (
        "refund.created",
        "pay_FPoJKWQQ8lK13n",
        None,
        "processed",
        50000,
        "INR",
    ),
    "docs/refund_processed__normal_refunds.json": (
        "refund.processed",
        "pay_FPoJKWQQ8lK13n",
        "partially_refunded",
        "processed",
        50000,
        "INR",
    ),
    "docs/refund_failed__normal_refunds.json": (
        "refund.failed",
        "pay_FPoJKWQQ8lK13n",
        None,
        "failed",
        50000,
        "INR",
    ),
    "docs/refund_speed_changed.json": (
        "refund.speed_changed",
        "pay_EcPJsxu8cSzOK6",
        None,
        "processed",
        200,
        "INR",
    ),
    # Not about one payment: stored, with no payment.
    "docs/payment_downtime_started__netbanking.json": (
        "payment.downtime.started",
        None,
        None,
        None,
        None,
        None,
    ),
    # The event type, not the snapshot's status, says what happened (this entity already says captured).
    "sdk/razorpay-python__fake_payment_authorized_webhook.json": (
        "payment.authorized",
        "pay_6koWN7bvxujzxM",
        "authorized",
        "captured",
        1000000,
        "INR",
    ),
    "sdk/razorpay-ruby__fake_payment_authorized_webhook.json": (
        "payment.authorized",
        "pay_6koWN7bvxujzxM",
        "authorized",
        "captured",
        1000000,
        "INR",
    ),
    "sdk/razorpay-go__verify_webhook_payment_authorized.json": (
        "payment.authorized",
        "pay_JUEM4c0pSLpFEW",
        "authorized",
        "authorized",
        12300,
        "INR",
    ),
}


@pytest.mark.parametrize("name", list(RAZORPAY))
def test_razorpay_published_payload(client: TestClient, database_url: str, name: str) -> None:
    body = fixture_path("razorpay", name).read_bytes()
    event_id = "Evt" + Path(name).stem.replace("_", "")[:40]

    response = client.post(
        "/webhooks/razorpay", content=body, headers=razorpay_headers(body, event_id=event_id)
    )

    assert response.json() == {"status": "processed", "event_id": event_id}
    event = stored_event(database_url, "razorpay", event_id)
    assert fields(event) == RAZORPAY[name]
    assert event.raw_body == body
    created_at = json.loads(body).get("created_at")
    if created_at is not None:
        assert event.occurred_at == datetime.fromtimestamp(created_at, UTC)


# --- Stripe: real test-mode events (zulip fixtures, Stripe CLI), stripe-dotnet and stripe-python bodies ----

STRIPE: dict[str, Stored] = {
    "samples/payment_intent.succeeded__doormoney.json": (
        "payment_intent.succeeded",
        "pi_2UHeLMonpMh0CahV1KP0nOv9",
        "captured",
        "succeeded",
        2000,
        "USD",
    ),
    # charge.*: the payment is the charge's PaymentIntent; Stripe's lower-case currency is upper-cased.
    "samples/charge.succeeded__zulip_charge_succeeded_with_pi.json": (
        "charge.succeeded",
        "pi_3TbGBUJEe0yY0QKr1NhtlhQp",
        "captured",
        "succeeded",
        22200,
        "USD",
    ),
    "samples/charge.failed__zulip_charge_failed_with_pi.json": (
        "charge.failed",
        "pi_3TbGfyJEe0yY0QKr0V9PBbP9",
        "failed",
        "failed",
        2200,
        "USD",
    ),
    "samples/charge.refund.updated__zulip_refund_event.json": (
        "charge.refund.updated",
        "pi_1Gib60HLwdCOCoR7KJbTO3U7",
        None,
        "failed",
        30000000,
        "INR",
    ),
    # Unrelated event types are stored, not rejected.
    "sdk/stripe-dotnet__event_test_signature.json": ("customer.created", None, None, None, None, None),
    "openapi_fixtures3/event.json": ("plan.created", None, None, None, 2000, "USD"),
}


@pytest.mark.parametrize("name", list(STRIPE))
def test_stripe_published_payload(client: TestClient, database_url: str, name: str) -> None:
    body = fixture_path("stripe", name).read_bytes()
    payload = json.loads(body)

    response = client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))

    assert response.json() == {"status": "processed", "event_id": payload["id"]}
    event = stored_event(database_url, "stripe", payload["id"])
    assert fields(event) == STRIPE[name]
    assert event.occurred_at == datetime.fromtimestamp(payload["created"], UTC)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        # A thin (v2) event notification: stripe-python's construct_event refuses it too.
        ("sdk/stripe-python__DUMMY_V2_WEBHOOK_PAYLOAD.json", "thin"),
        # stripe-python's minimal test body has no `type`, which Stripe's format defines.
        ("sdk/stripe-python__DUMMY_WEBHOOK_PAYLOAD.json", "'type'"),
    ],
)
def test_stripe_payloads_that_are_not_snapshot_events_are_invalid(
    client: TestClient, database_url: str, name: str, message: str
) -> None:
    body = fixture_path("stripe", name).read_bytes()

    response = client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))

    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_payload")
    assert message in response.json()["error"]["message"]
    assert stored_events(database_url) == []


def test_stripe_validly_signed_non_json_is_400(client: TestClient, database_url: str) -> None:
    # Vector 40's body (stripe-python test_raise_on_json_error): the signature verifies, the body
    # does not parse.
    body = b"this is not valid JSON"

    response = client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))

    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_json")
    assert stored_events(database_url) == []


# --- PayPal: PayPal REST SDK test and sample bodies -------------------------------------------------------

PAYPAL: dict[str, Stored] = {
    "payment_sale_completed__sdk_test_2015.json": (
        "PAYMENT.SALE.COMPLETED",
        "4EU7004268015634R",
        "captured",
        "completed",
        2000,
        "USD",
    ),
    "payment_sale_completed__sdk_sample_2016.json": (
        "PAYMENT.SALE.COMPLETED",
        "8RS6210148826604N",
        "captured",
        "completed",
        601,
        "USD",
    ),
    "payment_authorization_created__sdk_test.json": (
        "PAYMENT.AUTHORIZATION.CREATED",
        "6F961703H62685926",
        "authorized",
        "authorized",
        600,
        "USD",
    ),
}


@pytest.mark.parametrize("name", list(PAYPAL))
def test_paypal_published_payload(client: TestClient, database_url: str, name: str) -> None:
    body = fixture_path("paypal", "sdk", name).read_bytes()
    payload = json.loads(body)

    response = client.post("/webhooks/paypal", content=body, headers=paypal_headers(body))

    assert response.json() == {"status": "processed", "event_id": payload["id"]}
    event = stored_event(database_url, "paypal", payload["id"])
    assert fields(event) == PAYPAL[name]
    assert event.occurred_at == datetime.fromisoformat(payload["create_time"])


def test_paypal_sdk_invalid_json_is_400(client: TestClient, database_url: str) -> None:
    body = fixture_path("paypal", "sdk", "invalid_json__sdk_test.txt").read_bytes()

    response = client.post("/webhooks/paypal", content=body, headers=paypal_headers(body))

    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_json")
    assert stored_events(database_url) == []


# --- the take-home mock payloads (Razorpay-shaped, with a top-level event id) ------------------------------

TAKEHOME_STATUS = {
    "payment.authorized": "authorized",
    "payment.captured": "captured",
    "payment.failed": "failed",
}


def takehome_events(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_bytes())
    return data if isinstance(data, list) else [data]


@pytest.mark.parametrize(
    "folder", ["canonical_0xvjay", "variant_rk739396", "single_harshyad", "single_amandeep", "variant_rohit"]
)
def test_takehome_mock_payloads(client: TestClient, database_url: str, folder: str) -> None:
    files = sorted(fixture_path("takehome", folder).glob("*.json"))
    events = [event for path in files for event in takehome_events(path)]

    for event in events:
        body = json.dumps(event).encode()
        response = client.post("/webhooks/razorpay", content=body, headers=razorpay_headers(body))
        assert response.json() == {"status": "processed", "event_id": event["id"]}, response.text

    stored = {e.event_id: e for e in stored_events(database_url, "razorpay")}
    assert len(stored) == len(events)
    for event in events:
        entity = event["payload"]["payment"]["entity"]
        assert fields(stored[event["id"]]) == (
            event["event"],
            entity["id"],
            TAKEHOME_STATUS[event["event"]],
            entity["status"],
            entity["amount"],
            entity["currency"],
        )
        assert stored[event["id"]].occurred_at == datetime.fromtimestamp(event["created_at"], UTC)


def test_canonical_takehome_set_has_the_documented_shape(client: TestClient, database_url: str) -> None:
    folder = fixture_path("takehome", "canonical_0xvjay")
    for path in sorted(folder.glob("*.json")):
        for event in takehome_events(path):
            body = json.dumps(event).encode()
            assert (
                client.post("/webhooks/razorpay", content=body, headers=razorpay_headers(body)).status_code
                == 200
            )

    stored = stored_events(database_url, "razorpay")
    by_type = {t: sum(e.event_type == t for e in stored) for t in TAKEHOME_STATUS}
    assert by_type == {"payment.authorized": 20, "payment.captured": 14, "payment.failed": 6}
    assert {e.payment_id for e in stored} == {f"pay_{n:03d}" for n in range(1, 21)}


@pytest.mark.parametrize(
    "name",
    ["payment_authorized.json", "payment_captured.json", "payment_failed.json", "payment_refunded.json"],
)
def test_takehome_payloads_of_another_shape_are_invalid(
    client: TestClient, database_url: str, name: str
) -> None:
    # gautamlovecoding's mocks say `event_type`, not Razorpay's `event`.
    body = fixture_path("takehome", "nonrazorpay_shape_gautam", name).read_bytes()

    response = client.post("/webhooks/razorpay", content=body, headers=razorpay_headers(body))

    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_payload")
    assert "'event'" in response.json()["error"]["message"]
    assert stored_events(database_url) == []
