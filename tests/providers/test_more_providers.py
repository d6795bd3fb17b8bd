"""Adyen, GoCardless, Paddle, Square, Checkout.com, Mercado Pago and Cashfree through
`POST /webhooks/{provider}`, on both databases: the promises every provider keeps, one table row each.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from tests.providers import signing
from tests.providers.signing import Delivery, payload
from tests.support import stored_events

Sign = Callable[..., Delivery]
STALE = 3600


@dataclass(frozen=True)
class Case:
    name: str
    sign: Sign  # sign(secret=...) -> an authentic delivery of the provider's sample
    secret_keyword: str
    # (event_id, event_type, payment_id, status, provider_status, amount, currency, occurred_at) per event
    stored: list[tuple[str, str, str | None, str | None, str | None, int | None, str | None, str]]
    answer: tuple[int, bytes | None]  # status, exact body (None: our JSON acknowledgement)
    malformed: dict[str, dict[str, str]]  # case -> headers replaced
    stale: Sign | None = None  # an authentic delivery signed outside the replay window
    refused_status: int = 403
    # A change the signature must catch (Adyen signs eight fields of an item; Mercado Pago the data.id).
    tamper: Callable[[bytes], bytes] = lambda body: body.replace(b"2", b"3", 1)


ADYEN_AUTH = payload("adyen_authorisation.json")
GOCARDLESS = payload("gocardless_events.json")
PADDLE = payload("paddle_transaction_completed.json")
SQUARE = payload("square_payment_updated.json")
CHECKOUT = payload("checkout_payment_captured.json")
MERCADOPAGO = payload("mercadopago_payment.json")
CASHFREE = payload("cashfree_payment_success.json")

CASES = {
    "adyen": Case(
        name="adyen",
        sign=lambda secret=signing.ADYEN_KEY: signing.adyen(ADYEN_AUTH, key=secret),
        secret_keyword="adyen_hmac_key",
        stored=[
            (
                "AUTHORISATION:8535516988037431:true",
                "AUTHORISATION",
                "8535516988037431",
                "authorized",
                "true",
                10100,
                "EUR",
                "2019-01-30T17:16:22+00:00",
            )
        ],
        answer=(200, b"[accepted]"),
        malformed={},
        tamper=lambda body: body.replace(b'"value": 10100', b'"value": 10200'),
    ),
    "gocardless": Case(
        name="gocardless",
        sign=lambda secret=signing.GOCARDLESS_SECRET: signing.gocardless(GOCARDLESS, secret=secret),
        secret_keyword="gocardless_webhook_secret",
        stored=[
            (
                "EV123",
                "payments.confirmed",
                "PM123",
                "captured",
                "confirmed",
                None,
                None,
                "2014-08-03T12:00:00+00:00",
            ),
            (
                "EV456",
                "payments.failed",
                "PM456",
                "failed",
                "failed",
                None,
                None,
                "2014-08-03T12:00:00+00:00",
            ),
        ],
        answer=(204, b""),
        malformed={"not hex": {"Webhook-Signature": "zz" * 32}, "truncated": {"Webhook-Signature": "ab12"}},
        refused_status=498,
    ),
    "paddle": Case(
        name="paddle",
        sign=lambda secret=signing.PADDLE_SECRET: signing.paddle(PADDLE, secrets=(secret,)),
        secret_keyword="paddle_webhook_secret",
        stored=[
            (
                "evt_01hv8x2acma4za1fgq8ct1jfv9",
                "transaction.completed",
                "txn_01hv8wptq8987qeep44cyrewp9",
                "captured",
                "completed",
                2150,
                "USD",
                "2024-04-12T10:18:49.621022+00:00",
            )
        ],
        answer=(200, None),
        malformed={
            "no ts": {"Paddle-Signature": "h1=" + "a" * 64},
            "no h1": {"Paddle-Signature": f"ts={int(time.time())}"},
            "ts not a number": {"Paddle-Signature": "ts=yesterday;h1=" + "a" * 64},
            "garbage": {"Paddle-Signature": ";;==;"},
        },
        stale=lambda: signing.paddle(PADDLE, at=int(time.time()) - STALE),
    ),
    "square": Case(
        name="square",
        sign=lambda secret=signing.SQUARE_KEY: signing.square(SQUARE, key=secret),
        secret_keyword="square_signature_key",
        stored=[
            (
                "6a8f5f28-54a1-4eb0-a98a-3111513fd4fc",
                "payment.updated",
                "hYy9pRFVxpDsO1FB05SunFWUe9JZY",
                "captured",
                "COMPLETED",
                100,
                "USD",
                "2020-02-06T21:27:34.308000+00:00",
            )
        ],
        answer=(200, None),
        malformed={"not base64": {"x-square-hmacsha256-signature": "%%%not-base64%%%"}},
    ),
    "checkout": Case(
        name="checkout",
        sign=lambda secret=signing.CHECKOUT_SECRET: signing.checkout(CHECKOUT, secret=secret),
        secret_keyword="checkout_webhook_secret",
        stored=[
            (
                "evt_dli6ty4qo5vuxle5wklf5gwbwy",
                "payment_captured",
                "pay_waji5li4kdhuzj3cjfsuxxlf6q",
                "captured",
                "Approved",
                10000,
                "USD",
                "2019-06-07T08:23:27.134627+00:00",
            )
        ],
        answer=(200, None),
        malformed={"not hex": {"Cko-Signature": "not-a-signature"}},
    ),
    "mercadopago": Case(
        name="mercadopago",
        sign=lambda secret=signing.MERCADOPAGO_SECRET: signing.mercadopago(MERCADOPAGO, secret=secret),
        secret_keyword="mercadopago_webhook_secret",
        stored=[
            (
                "12345",
                "payment.created",
                "999999999",
                "created",
                "payment.created",
                None,
                None,
                "2015-03-25T14:04:58.396000+00:00",
            )
        ],
        answer=(200, None),
        malformed={
            "no ts": {"x-signature": "v1=" + "a" * 64},
            "no v1": {"x-signature": f"ts={int(time.time())}"},
            "ts not a number": {"x-signature": "ts=soon,v1=" + "a" * 64},
            "garbage": {"x-signature": ",,=,"},
        },
        stale=lambda: signing.mercadopago(MERCADOPAGO, at=int(time.time()) - STALE),
        tamper=lambda body: body.replace(b'"data": {"id": "999999999"}', b'"data": {"id": "999999998"}'),
    ),
    "cashfree": Case(
        name="cashfree",
        sign=lambda secret=signing.CASHFREE_SECRET: signing.cashfree(CASHFREE, secret=secret),
        secret_keyword="cashfree_client_secret",
        stored=[
            (
                "sha256:",
                "PAYMENT_SUCCESS_WEBHOOK",
                "order_OFR_2",
                "captured",
                "SUCCESS",
                100,
                "INR",
                "2023-08-01T05:46:10+00:00",
            )
        ],
        answer=(200, None),
        malformed={
            "timestamp not a number": {"x-webhook-timestamp": "today"},
            "timestamp too long": {"x-webhook-timestamp": "9" * 40},
            "signature not base64": {"x-webhook-signature": "***"},
        },
        stale=lambda: signing.cashfree(CASHFREE, at_ms=int((time.time() - STALE) * 1000)),
    ),
}
NAMES = sorted(CASES)


def settings_for(case: Case, secrets: list[str] | None = None) -> dict[str, Any]:
    settings = dict(signing.SETTINGS[case.name])
    if secrets is not None:
        settings[case.secret_keyword] = secrets
    return settings


def post(client: TestClient, name: str, delivery: Delivery) -> Response:
    return client.post(
        f"/webhooks/{name}", content=delivery.body, headers=delivery.headers, params=delivery.query
    )


def assert_refused(response: Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def as_stored(event: Any) -> tuple[Any, ...]:
    return (
        event.event_id,
        event.event_type,
        event.payment_id,
        event.status,
        event.provider_status,
        event.amount,
        event.currency,
        event.occurred_at.astimezone(UTC).isoformat(),
    )


@pytest.mark.parametrize("name", NAMES)
def test_an_authentic_delivery_is_stored_with_its_normalised_fields(
    client_factory: Callable[..., TestClient], database_url: str, name: str
) -> None:
    case = CASES[name]
    client = client_factory(**settings_for(case))

    response = post(client, name, case.sign())

    status, body = case.answer
    assert response.status_code == status, response.text
    if body is not None:
        assert response.content == body
    else:
        assert response.json()["status"] == "processed"
    stored = [as_stored(event) for event in stored_events(database_url, name)]
    assert [row[1:] for row in stored] == [row[1:] for row in case.stored]
    # An id ending in ':' is a derived id's prefix (Cashfree's sha256:<hex of the body>).
    for (event_id, *_), (expected, *_) in zip(stored, case.stored, strict=True):
        assert event_id == expected or (expected.endswith(":") and event_id.startswith(expected))


@pytest.mark.parametrize("name", NAMES)
def test_a_second_delivery_of_the_same_events_is_a_duplicate(
    client_factory: Callable[..., TestClient], database_url: str, name: str
) -> None:
    case = CASES[name]
    client = client_factory(**settings_for(case))

    first, again = post(client, name, case.sign()), post(client, name, case.sign())

    assert first.status_code == again.status_code == case.answer[0]
    if case.answer[1] is None:
        assert again.json()["status"] == "duplicate"
    assert len(stored_events(database_url, name)) == len(case.stored)


@pytest.mark.parametrize("name", NAMES)
def test_a_delivery_signed_with_the_new_secret_passes_while_both_are_configured(
    client_factory: Callable[..., TestClient], name: str
) -> None:
    case = CASES[name]
    new_secret = "00" * 32 if name == "adyen" else "rotated_new_secret"
    client = client_factory(
        **settings_for(case, secrets=["old_secret_00" if name != "adyen" else "11" * 32, new_secret])
    )

    response = post(client, name, case.sign(secret=new_secret))

    assert response.status_code == case.answer[0], response.text


@pytest.mark.parametrize("name", NAMES)
def test_forged_and_malformed_deliveries_are_refused_and_nothing_is_stored(
    client_factory: Callable[..., TestClient], database_url: str, name: str
) -> None:
    case = CASES[name]
    client = client_factory(**settings_for(case))
    authentic = case.sign()
    wrong_secret = case.sign(secret="ab" * 32 if name == "adyen" else "not_the_secret")
    tampered = Delivery(case.tamper(authentic.body), authentic.headers, authentic.query)
    assert tampered.body != authentic.body

    refusals: dict[str, tuple[Delivery, str]] = {
        "tampered body": (tampered, "signature_invalid"),
        "wrong secret": (wrong_secret, "signature_invalid"),
    }
    for label, replaced in case.malformed.items():
        refusals[f"malformed: {label}"] = (
            Delivery(authentic.body, {**authentic.headers, **replaced}, authentic.query),
            "signature_invalid",
        )
    for header in authentic.headers:
        if header.lower() not in ("content-type", "x-webhook-version", "x-request-id"):
            headers = {k: v for k, v in authentic.headers.items() if k != header}
            refusals[f"missing {header}"] = (
                Delivery(authentic.body, headers, authentic.query),
                "signature_missing",
            )

    for label, (delivery, code) in refusals.items():
        response = post(client, name, delivery)
        assert response.status_code == case.refused_status, (label, response.text)
        assert response.json()["error"]["code"] == code, label
    assert stored_events(database_url, name) == []


@pytest.mark.parametrize("name", [name for name in NAMES if CASES[name].stale is not None])
def test_a_signature_outside_the_replay_window_is_expired(
    client_factory: Callable[..., TestClient], database_url: str, name: str
) -> None:
    case = CASES[name]
    assert case.stale is not None
    client = client_factory(**settings_for(case))

    assert_refused(post(client, name, case.stale()), 403, "signature_expired")
    assert stored_events(database_url, name) == []


@pytest.mark.parametrize("name", NAMES)
def test_a_provider_without_its_secret_is_not_configured(
    client_factory: Callable[..., TestClient], name: str
) -> None:
    case = CASES[name]
    client = client_factory()

    assert_refused(post(client, name, case.sign()), 404, "provider_not_configured")


def test_each_provider_answers_json_for_a_non_json_body_it_could_verify(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(**settings_for(CASES["checkout"]))

    response = post(client, "checkout", signing.checkout(b"not json"))

    assert_refused(response, 400, "invalid_json")


def test_received_at_is_close_to_now(client_factory: Callable[..., TestClient], database_url: str) -> None:
    client = client_factory(**settings_for(CASES["paddle"]))
    post(client, "paddle", CASES["paddle"].sign())

    [event] = stored_events(database_url, "paddle")

    assert abs((datetime.now(UTC) - event.received_at).total_seconds()) < 60
    assert json.loads(event.raw_body) == PADDLE
