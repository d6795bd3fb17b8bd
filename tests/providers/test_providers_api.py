"""Every provider through `POST /webhooks/{provider}`, signed with the provider's own code, on both databases.

One table describes each provider (its settings, a typical payment event, how it is signed and what must
be stored); the promises that hold for all providers are parametrised over it.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks.webhooks
import stripe
from fastapi.testclient import TestClient

from tests.provider_support import (
    STANDARD_SECRET,
    STRIPE_SECRET,
    all_provider_settings,
    paypal_headers,
    paypal_transmission_time,
    paystack_headers,
    razorpay_headers,
    standard_headers,
    stored_event,
    stored_events,
    stripe_headers,
)

Sign = Callable[..., dict[str, str]]


@dataclass(frozen=True)
class ProviderCase:
    name: str
    payload: dict[str, Any]
    sign: Sign
    # (event_type, payment_id, status, provider_status, amount, currency) as they must be stored
    stored: tuple[str | None, str, str, str, int, str]
    event_id: str | None  # None: decided by the delivery (Standard Webhooks' header, Paystack's body hash)
    signature_header: str
    extra_required: tuple[str, ...] = field(default=())


CASES = {
    "razorpay": ProviderCase(
        name="razorpay",
        payload={
            "entity": "event",
            "event": "payment.captured",
            "payload": {
                "payment": {
                    "entity": {"id": "pay_conf_1", "status": "captured", "amount": 5000, "currency": "INR"}
                }
            },
            "created_at": 1751889985,
        },
        sign=lambda body, **kw: razorpay_headers(body, event_id="evt_conf_rzp", **kw),
        stored=("payment.captured", "pay_conf_1", "captured", "captured", 5000, "INR"),
        event_id="evt_conf_rzp",
        signature_header="X-Razorpay-Signature",
    ),
    "stripe": ProviderCase(
        name="stripe",
        payload={
            "id": "evt_conf_stripe",
            "object": "event",
            "type": "payment_intent.succeeded",
            "created": 1751889985,
            "data": {
                "object": {
                    "id": "pi_conf_1",
                    "object": "payment_intent",
                    "amount": 2000,
                    "currency": "usd",
                    "status": "succeeded",
                }
            },
        },
        sign=stripe_headers,
        stored=("payment_intent.succeeded", "pi_conf_1", "captured", "succeeded", 2000, "USD"),
        event_id="evt_conf_stripe",
        signature_header="Stripe-Signature",
    ),
    "paypal": ProviderCase(
        name="paypal",
        payload={
            "id": "WH-CONF-1",
            "event_type": "PAYMENT.CAPTURE.COMPLETED",
            "resource_type": "capture",
            "create_time": "2025-07-07T12:00:00Z",
            "resource": {
                "id": "2GG279541U471931P",
                "status": "COMPLETED",
                "amount": {"value": "10.99", "currency_code": "USD"},
            },
        },
        sign=paypal_headers,
        stored=("PAYMENT.CAPTURE.COMPLETED", "2GG279541U471931P", "captured", "COMPLETED", 1099, "USD"),
        event_id="WH-CONF-1",
        signature_header="PAYPAL-TRANSMISSION-SIG",
        extra_required=(
            "PAYPAL-TRANSMISSION-ID",
            "PAYPAL-TRANSMISSION-TIME",
            "PAYPAL-CERT-URL",
            "PAYPAL-AUTH-ALGO",
        ),
    ),
    "standard": ProviderCase(
        name="standard",
        payload={
            "type": "payment.succeeded",
            "timestamp": "2025-07-07T12:00:00Z",
            "data": {"id": "pay_std_1", "status": "captured", "amount": 4200, "currency": "eur"},
        },
        sign=standard_headers,
        stored=("payment.succeeded", "pay_std_1", "captured", "captured", 4200, "EUR"),
        event_id=None,
        signature_header="webhook-signature",
        extra_required=("webhook-id", "webhook-timestamp"),
    ),
    "paystack": ProviderCase(
        name="paystack",
        payload={
            "event": "charge.success",
            "data": {
                "reference": "ref_conf_1",
                "status": "success",
                "amount": 50000,
                "currency": "NGN",
                "paid_at": "2025-07-07T12:00:00.000Z",
            },
        },
        sign=paystack_headers,
        stored=("charge.success", "ref_conf_1", "captured", "success", 50000, "NGN"),
        event_id=None,
        signature_header="x-paystack-signature",
    ),
}
PROVIDERS = list(CASES)


@pytest.fixture
def client(client_factory: Callable[..., TestClient], tmp_path: Path) -> TestClient:
    return client_factory(**all_provider_settings(tmp_path))


def deliver(client: TestClient, case: ProviderCase, body: bytes, headers: dict[str, Any]) -> Any:
    return client.post(f"/webhooks/{case.name}", content=body, headers=headers)


def error_code(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_signed_delivery_is_stored_once_with_its_normalised_fields(
    client: TestClient, database_url: str, provider: str
) -> None:
    case = CASES[provider]
    body = json.dumps(case.payload).encode()
    headers = case.sign(body)

    first = deliver(client, case, body, headers)
    retry = deliver(client, case, body, headers)

    assert first.status_code == 200, first.text
    assert first.json()["status"] == "processed"
    assert retry.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
    event_id = first.json()["event_id"]
    if case.event_id is not None:
        assert event_id == case.event_id
    event = stored_event(database_url, provider, event_id)
    assert (
        event.event_type,
        event.payment_id,
        event.status,
        event.provider_status,
        event.amount,
        event.currency,
    ) == case.stored
    assert event.raw_body == body
    assert event.headers[case.signature_header.lower()] == headers[case.signature_header]
    assert len(stored_events(database_url, provider)) == 1


def test_standard_webhooks_event_id_is_the_webhook_id_header(client: TestClient, database_url: str) -> None:
    body = json.dumps(CASES["standard"].payload).encode()
    headers = standard_headers(body, msg_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
    # The reference library accepts what is sent (it raises otherwise).
    standardwebhooks.webhooks.Webhook(STANDARD_SECRET).verify(body, headers)

    response = client.post("/webhooks/standard", content=body, headers=headers)

    assert response.json() == {"status": "processed", "event_id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"}
    assert stored_event(database_url, "standard", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W").id_derived is False


def test_svix_header_names_signed_by_the_svix_library_verify(client: TestClient, database_url: str) -> None:
    body = json.dumps(CASES["standard"].payload).encode()
    headers = standard_headers(body, msg_id="msg_svix_1", prefix="svix")

    response = client.post("/webhooks/standard", content=body, headers=headers)

    assert response.status_code == 200, response.text
    assert stored_event(database_url, "standard", "msg_svix_1").headers["svix-id"] == "msg_svix_1"


def test_stripe_accepts_its_own_header_for_what_we_sign(client: TestClient) -> None:
    body = json.dumps(CASES["stripe"].payload).encode()
    headers = stripe_headers(body)

    event = stripe.Webhook.construct_event(body.decode(), headers["Stripe-Signature"], STRIPE_SECRET)

    assert event.id == "evt_conf_stripe"
    assert client.post("/webhooks/stripe", content=body, headers=headers).status_code == 200


# --- rotation -----------------------------------------------------------------------------------------

ROTATION = {
    "razorpay": ("razorpay_webhook_secret", "old_razorpay_secret", {"secret": "old_razorpay_secret"}),
    "stripe": ("stripe_webhook_secret", "whsec_old_stripe", {"secret": "whsec_old_stripe"}),
    "standard": (
        "standard_webhook_secret",
        "whsec_b2xkLXN0YW5kYXJkLWtleQ==",
        {"secret": "whsec_b2xkLXN0YW5kYXJkLWtleQ=="},
    ),
    "paystack": ("paystack_secret_key", "sk_test_old_paystack", {"secret": "sk_test_old_paystack"}),
    "paypal": ("paypal_webhook_id", "OLDWEBHOOKID0001", {"webhook_id": "OLDWEBHOOKID0001"}),
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_any_of_the_comma_separated_secrets_verifies(
    client_factory: Callable[..., TestClient], tmp_path: Path, provider: str
) -> None:
    case = CASES[provider]
    setting, old_secret, sign_with_old = ROTATION[provider]
    current = all_provider_settings(tmp_path)[setting][0]
    # The comma-separated form is what an operator writes in the environment.
    client = client_factory(**all_provider_settings(tmp_path, **{setting: f"{current}, {old_secret}"}))
    payloads = [case.payload, {**case.payload, "note": "signed with the old secret"}]

    with_current = json.dumps(payloads[0]).encode()
    with_old = json.dumps(payloads[1]).encode()
    responses = [
        deliver(client, case, with_current, case.sign(with_current)),
        deliver(client, case, with_old, case.sign(with_old, **sign_with_old)),
    ]

    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_secret_that_is_not_configured_is_refused(
    client: TestClient, database_url: str, provider: str
) -> None:
    case = CASES[provider]
    sign_with_old = ROTATION[provider][2]
    body = json.dumps(case.payload).encode()

    response = deliver(client, case, body, case.sign(body, **sign_with_old))

    assert error_code(response) == (403, "signature_invalid")
    assert stored_events(database_url) == []


# --- missing and malformed headers --------------------------------------------------------------------

MISSING = [(p, h) for p, case in CASES.items() for h in (case.signature_header, *case.extra_required)]


@pytest.mark.parametrize(("provider", "header"), MISSING)
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_a_missing_header_is_signature_missing(
    client: TestClient, database_url: str, provider: str, header: str, how: str
) -> None:
    case = CASES[provider]
    body = json.dumps(case.payload).encode()
    headers = case.sign(body)
    if how == "absent":
        del headers[header]
    else:
        headers[header] = ""

    response = deliver(client, case, body, headers)

    assert error_code(response) == (403, "signature_missing")
    assert stored_events(database_url) == []


def _replace(header: str, value: str | bytes) -> Callable[[dict[str, Any]], None]:
    def mutate(headers: dict[str, Any]) -> None:
        headers[header] = value

    return mutate


def _edit(header: str, edit: Callable[[str], str]) -> Callable[[dict[str, Any]], None]:
    def mutate(headers: dict[str, Any]) -> None:
        headers[header] = edit(headers[header])

    return mutate


def _stripe_sig(header: str) -> str:
    return header.split("v1=", 1)[1]


def _standard_sig(header: str) -> str:
    return header.split(",", 1)[1]


MALFORMED: dict[str, dict[str, Callable[[dict[str, Any]], None]]] = {
    "razorpay": {
        "garbage": _replace("X-Razorpay-Signature", "not a signature"),
        "upper_case_hex": _edit("X-Razorpay-Signature", str.upper),
        "truncated": _edit("X-Razorpay-Signature", lambda s: s[:-1]),
        "latin1_bytes": _replace("X-Razorpay-Signature", "caf\u00e9".encode("latin-1")),
        "utf8_bytes": _replace("X-Razorpay-Signature", "\u2603".encode()),
    },
    "stripe": {
        "garbage": _replace("Stripe-Signature", "bad_header"),
        "no_v1": _edit("Stripe-Signature", lambda s: s.replace("v1=", "v0=")),
        "no_timestamp": _edit("Stripe-Signature", lambda s: "v1=" + _stripe_sig(s)),
        "timestamp_not_a_number": _edit("Stripe-Signature", lambda s: "t=soon,v1=" + _stripe_sig(s)),
        "timestamp_negative": _edit("Stripe-Signature", lambda s: "t=-1,v1=" + _stripe_sig(s)),
        "timestamp_5000_digits": _edit(
            "Stripe-Signature", lambda s: "t=" + "9" * 5000 + ",v1=" + _stripe_sig(s)
        ),
        "timestamp_exponent": _edit("Stripe-Signature", lambda s: "t=1e9,v1=" + _stripe_sig(s)),
        "only_separators": _replace("Stripe-Signature", ",=,=,,"),
        "empty_parts": _replace("Stripe-Signature", "t=,v1="),
        "non_ascii": _replace("Stripe-Signature", "t=\u00b9\u00b2,v1=\u00e9".encode("latin-1")),
        "signature_of_another_time": _edit("Stripe-Signature", lambda s: s.replace("t=", "t=1")),
    },
    "standard": {
        "garbage": _replace("webhook-signature", "garbage"),
        "empty_v1": _replace("webhook-signature", "v1,"),
        "other_scheme": _edit("webhook-signature", lambda s: "v1a," + _standard_sig(s)),
        "no_comma": _edit("webhook-signature", lambda s: "v1 " + _standard_sig(s)),
        "not_base64": _replace("webhook-signature", "v1,!!!not-base64!!!"),
        "unpadded": _edit("webhook-signature", lambda s: s.rstrip("=")),
        "timestamp_not_a_number": _replace("webhook-timestamp", "hello"),
        "timestamp_negative": _replace("webhook-timestamp", "-5"),
        "timestamp_fraction": _edit("webhook-timestamp", lambda s: s + ".0"),
        "timestamp_5000_digits": _replace("webhook-timestamp", "9" * 5000),
        "other_id": _replace("webhook-id", "msg_someone_else"),
        "non_ascii_id": _replace("webhook-id", "msg_\u00e9".encode("latin-1")),
    },
    "paypal": {
        "signature_not_base64": _replace("PAYPAL-TRANSMISSION-SIG", "not base64!"),
        "signature_short": _replace("PAYPAL-TRANSMISSION-SIG", "AAAA"),
        "signature_padding_only": _replace("PAYPAL-TRANSMISSION-SIG", "===="),
        "sha1_algo": _replace("PAYPAL-AUTH-ALGO", "SHA1withRSA"),
        "unknown_algo": _replace("PAYPAL-AUTH-ALGO", "invalid_digest_method"),
        "time_not_iso": _replace("PAYPAL-TRANSMISSION-TIME", "yesterday"),
        "time_without_zone": _edit("PAYPAL-TRANSMISSION-TIME", lambda s: s.rstrip("Z")),
        "time_year_one": _replace("PAYPAL-TRANSMISSION-TIME", "0001-01-01T00:00:00+01:00"),
        "other_transmission_id": _replace("PAYPAL-TRANSMISSION-ID", "another-transmission"),
        "non_ascii_id": _replace("PAYPAL-TRANSMISSION-ID", "\u00e9".encode("latin-1")),
    },
    "paystack": {
        "garbage": _replace("x-paystack-signature", "garbage"),
        "sha256_not_sha512": _edit("x-paystack-signature", lambda s: s[:64]),
        "upper_case_hex": _edit("x-paystack-signature", str.upper),
        "non_ascii": _replace("x-paystack-signature", "\u00ff".encode("latin-1")),
    },
}


@pytest.mark.parametrize(("provider", "case_name"), [(p, c) for p, cases in MALFORMED.items() for c in cases])
def test_a_malformed_header_is_signature_invalid_never_a_500(
    client: TestClient, database_url: str, provider: str, case_name: str
) -> None:
    case = CASES[provider]
    body = json.dumps(case.payload).encode()
    headers: dict[str, Any] = case.sign(body)
    MALFORMED[provider][case_name](headers)

    response = deliver(client, case, body, headers)

    assert error_code(response) == (403, "signature_invalid"), response.text
    assert stored_events(database_url) == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_body_changed_after_signing_is_refused(
    client: TestClient, database_url: str, provider: str
) -> None:
    case = CASES[provider]
    body = json.dumps(case.payload).encode()
    headers = case.sign(body)
    # Re-serialised JSON is the same data in different bytes: the signature covers the bytes.
    reserialised = json.dumps(case.payload, indent=2).encode()

    response = deliver(client, case, reserialised, headers)

    assert error_code(response) == (403, "signature_invalid")
    assert stored_events(database_url) == []


# --- replay window ------------------------------------------------------------------------------------

TOLERANCE = 60


def _signed_at(provider: str, body: bytes, at: float) -> dict[str, str]:
    if provider == "stripe":
        return stripe_headers(body, timestamp=int(at))
    if provider == "standard":
        return standard_headers(body, timestamp=int(at))
    return paypal_headers(body, transmission_time=paypal_transmission_time(at))


@pytest.mark.parametrize("provider", ["stripe", "standard", "paypal"])
@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (-(TOLERANCE + 30), (403, "signature_expired")),  # a replay of an old delivery
        (TOLERANCE + 30, (403, "signature_expired")),  # too far in the future: a skewed or forged clock
        (-(TOLERANCE - 15), (200, None)),
        (TOLERANCE - 15, (200, None)),
    ],
    ids=["too_old", "too_new", "old_within", "new_within"],
)
def test_the_replay_window_refuses_old_and_future_timestamps(
    client_factory: Callable[..., TestClient],
    tmp_path: Path,
    database_url: str,
    provider: str,
    offset: int,
    expected: tuple[int, str | None],
) -> None:
    client = client_factory(**all_provider_settings(tmp_path, signature_tolerance_seconds=TOLERANCE))
    body = json.dumps(CASES[provider].payload).encode()

    response = client.post(
        f"/webhooks/{provider}", content=body, headers=_signed_at(provider, body, time.time() + offset)
    )

    if expected[0] == 200:
        assert response.status_code == 200, response.text
        assert len(stored_events(database_url, provider)) == 1
    else:
        assert error_code(response) == expected
        assert stored_events(database_url) == []


# --- routing and payload errors -----------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_provider_without_a_secret_is_not_configured(
    client_factory: Callable[..., TestClient], tmp_path: Path, database_url: str, provider: str
) -> None:
    setting = ROTATION[provider][0]
    # Development mode falls back to the prototype's Razorpay secret, so Razorpay is shown in production.
    production = {"app_env": "production", "api_tokens": ["read-token"], "console_session_secret": "k" * 32}
    mode = production if provider == "razorpay" else {}
    client = client_factory(**all_provider_settings(tmp_path, **{setting: []}), **mode)
    body = json.dumps(CASES[provider].payload).encode()

    response = client.post(f"/webhooks/{provider}", content=body, headers=CASES[provider].sign(body))

    assert error_code(response) == (404, "provider_not_configured")
    assert stored_events(database_url) == []


def test_an_unknown_provider_is_404(client: TestClient) -> None:
    response = client.post("/webhooks/adyen", content=b"{}", headers={"Content-Type": "application/json"})

    assert error_code(response) == (404, "unknown_provider")


TYPE_FIELD = {"razorpay": "event", "stripe": "type", "paypal": "event_type", "paystack": "event"}


@pytest.mark.parametrize("provider", list(TYPE_FIELD))
def test_a_payload_without_the_providers_type_field_is_invalid(
    client: TestClient, database_url: str, provider: str
) -> None:
    case = CASES[provider]
    payload = {k: v for k, v in case.payload.items() if k != TYPE_FIELD[provider]}
    body = json.dumps(payload).encode()

    response = deliver(client, case, body, case.sign(body))

    assert error_code(response) == (400, "invalid_payload")
    assert repr(TYPE_FIELD[provider]) in response.json()["error"]["message"]
    assert stored_events(database_url) == []


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("body", "expected"),
    [(b"this is not valid JSON", (400, "invalid_json")), (b"[1, 2, 3]", (400, "invalid_payload"))],
    ids=["not_json", "json_array"],
)
def test_a_validly_signed_body_that_is_not_a_json_object_is_400(
    client: TestClient, database_url: str, provider: str, body: bytes, expected: tuple[int, str]
) -> None:
    case = CASES[provider]

    response = deliver(client, case, body, case.sign(body))

    assert error_code(response) == expected
    assert stored_events(database_url) == []
