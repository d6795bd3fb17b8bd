"""POST /payments/{payment_id}/recover: one payment fetched now, its state answered after the fold."""

import json
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.recovery.fake_api import FakeProviders, paystack_transaction, razorpay_payment
from tests.support import razorpay_event, razorpay_headers

AT = 1_762_000_000


def test_a_payment_never_seen_is_fetched_and_folded(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    fake.razorpay_payments["pay_New"] = razorpay_payment("pay_New", status="captured", created_at=AT)

    response = client.post("/payments/pay_New/recover?provider=razorpay")

    assert response.status_code == 200
    body = response.json()
    assert (body["payment_id"], body["status"], body["amount"], body["event_count"]) == (
        "pay_New",
        "captured",
        50000,
        1,
    )
    assert [c.path for c in fake.seen] == ["/v1/payments/pay_New"]
    [event] = client.get("/payments/pay_New/events").json()
    assert event["origin"] == "recovery"


def test_a_known_payment_needs_no_provider_and_moves_forward(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    body = json.dumps(razorpay_event(event="payment.authorized", payment_id="pay_Known")).encode()
    client.post("/webhooks/razorpay", content=body, headers=razorpay_headers(body))
    fake.razorpay_payments["pay_Known"] = razorpay_payment("pay_Known", status="captured", created_at=AT)

    response = client.post("/payments/pay_Known/recover")

    assert response.json()["status"] == "captured"
    # Asking again observes the same state: a duplicate, and nothing moves.
    again = client.post("/payments/pay_Known/recover").json()
    assert (again["status"], again["event_count"]) == ("captured", 2)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/payments/pay_Nowhere/recover?provider=razorpay", 404, "payment_not_found"),
        ("/payments/pay_Nowhere/recover", 404, "payment_not_found"),
        ("/payments/pay_Nowhere/recover?provider=standard", 404, "recovery_not_supported"),
    ],
)
def test_what_cannot_be_recovered_is_answered_in_the_error_shape(
    app: Callable[..., TestClient], path: str, status: int, code: str
) -> None:
    response = app().post(path)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_refused_credentials_are_a_502_naming_the_settings(app: Callable[..., TestClient]) -> None:
    response = app(razorpay_key_secret="wrong").post("/payments/pay_X/recover?provider=razorpay")

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "provider_credentials_refused"
    assert "RAZORPAY_KEY_ID and RAZORPAY_KEY_SECRET" in error["message"]


def test_a_provider_without_credentials_is_not_configured(app: Callable[..., TestClient]) -> None:
    response = app(razorpay_key_id=None).post("/payments/pay_X/recover?provider=razorpay")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "provider_not_configured"


def test_the_route_takes_the_read_api_token(app: Callable[..., TestClient], fake: FakeProviders) -> None:
    client = app(api_tokens=["tok_ops"])
    fake.razorpay_payments["pay_T"] = razorpay_payment("pay_T", status="captured", created_at=AT)

    assert client.post("/payments/pay_T/recover?provider=razorpay").status_code == 401
    assert fake.seen == []
    authorised = client.post(
        "/payments/pay_T/recover?provider=razorpay", headers={"Authorization": "Bearer tok_ops"}
    )
    assert authorised.status_code == 200


def test_stripe_paypal_and_paystack_payments_are_fetched_too(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    fake.stripe_intents["pi_One"] = {
        "id": "pi_One",
        "object": "payment_intent",
        "amount": 2000,
        "currency": "usd",
        "status": "requires_capture",
    }
    fake.paypal_captures["2GG279541U471931P"] = {
        "id": "2GG279541U471931P",
        "status": "COMPLETED",
        "amount": {"currency_code": "USD", "value": "10.99"},
        "final_capture": True,
    }
    transaction = paystack_transaction(7, status="success", created_at="2026-11-01T00:00:00.000Z")
    fake.paystack_transactions.append(transaction)

    stripe = client.post("/payments/pi_One/recover?provider=stripe").json()
    paypal = client.post("/payments/2GG279541U471931P/recover?provider=paypal").json()
    paystack = client.post(f"/payments/{transaction['reference']}/recover?provider=paystack").json()

    assert (stripe["status"], stripe["amount"]) == ("authorized", 2000)
    assert (paypal["status"], paypal["amount"], paypal["currency"]) == ("captured", 1099, "USD")
    assert (paystack["status"], paystack["amount"]) == ("captured", 40333)
    assert "/transaction/verify/re4lyvq3s30007" in [c.path for c in fake.seen]
