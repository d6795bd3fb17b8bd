"""Property tests: random and mutated headers and bodies against every verifier and extractor.

Whatever arrives, a verifier either accepts or raises a `SignatureError` subclass, an extractor either
returns an event that fits its columns or raises `InvalidPayload`, and the API answers only its
documented 4xx codes. Example counts are bounded so the whole file runs in seconds.
"""

import base64
import hashlib
import hmac
import json
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import errors
import security
from config import Settings
from errors import InvalidPayload, SignatureError, SignatureExpired, SignatureInvalid
from payments.events import STATUS_RANK, NormalizedEvent
from providers import build_registry
from providers.fields import BIGINT_MAX, MAX_ID_LENGTH
from tests.support import (
    PAYPAL_WEBHOOK_ID,
    STANDARD_SECRET,
    STRIPE_SECRET,
    all_provider_settings,
    paypal_headers,
    paypal_key,
    paystack_headers,
    razorpay_headers,
    standard_headers,
    stripe_headers,
)

NOW = 1_751_889_985
PURE = settings(max_examples=100, deadline=None)
STANDARD_KEY = security.decode_standard_secret(STANDARD_SECRET)

# Any text a direct caller could pass, and the latin-1 text an ASGI server hands over for header bytes.
any_text = st.text(max_size=120)
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_categories=["Cc"]), max_size=120
)
bodies = st.binary(max_size=300)
tolerances = st.one_of(st.none(), st.integers(min_value=0, max_value=10**6))


@st.composite
def mutated(draw: st.DrawFn, value: str) -> str:
    """`value` with one random edit: replace, insert or delete a character, truncate, or append junk."""
    edit = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "append", "case"]))
    at = draw(st.integers(min_value=0, max_value=max(len(value) - 1, 0)))
    char = draw(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_categories=["Cc"]))
    if edit == "replace" and value:
        return value[:at] + char + value[at + 1 :]
    if edit == "insert":
        return value[:at] + char + value[at:]
    if edit == "delete" and value:
        return value[:at] + value[at + 1 :]
    if edit == "truncate":
        return value[:at]
    if edit == "case":
        return value.swapcase()
    return value + draw(st.sampled_from([",", " ", "=", ",v1=", " v1,", "|", "=="])) + char


def outcome(call: Callable[[], object]) -> str:
    """'ok' or the SignatureError's code; anything else fails the property."""
    try:
        call()
    except SignatureError as exc:
        assert exc.code in {"signature_invalid", "signature_missing", "signature_expired"}
        return exc.code
    return "ok"


# --- verifiers: random input ------------------------------------------------------------------------------


@PURE
@given(body=bodies, signature=any_text)
def test_hex_hmac_verifiers_only_raise_signature_errors(body: bytes, signature: str) -> None:
    assert outcome(lambda: security.verify_razorpay(body, signature, ["secret"])) != "ok"
    assert outcome(lambda: security.verify_paystack(body, signature, ["secret"])) != "ok"


@PURE
@given(body=bodies, header=any_text, now=st.floats(min_value=0, max_value=4e9), tolerance=tolerances)
def test_stripe_verifier_only_raises_signature_errors(
    body: bytes, header: str, now: float, tolerance: int | None
) -> None:
    assert (
        outcome(lambda: security.verify_stripe(body, header, [STRIPE_SECRET], now=now, tolerance=tolerance))
        != "ok"
    )


@PURE
@given(
    body=bodies,
    msg_id=any_text,
    timestamp=st.one_of(any_text, st.integers(0, 10**13).map(str)),
    signature=any_text,
    tolerance=tolerances,
)
def test_standard_verifier_only_raises_signature_errors(
    body: bytes, msg_id: str, timestamp: str, signature: str, tolerance: int | None
) -> None:
    def call() -> None:
        security.verify_standard(
            body,
            msg_id=msg_id,
            timestamp=timestamp,
            signature_header=signature,
            keys=[STANDARD_KEY],
            now=NOW,
            tolerance=tolerance,
        )

    assert outcome(call) != "ok"


@PURE
@given(
    body=bodies,
    transmission_id=any_text,
    transmission_time=any_text,
    signature=st.one_of(
        any_text, st.binary(min_size=1, max_size=600).map(lambda b: base64.b64encode(b).decode())
    ),
    auth_algo=st.one_of(st.just("SHA256withRSA"), any_text),
)
def test_paypal_verifier_only_raises_signature_errors(
    body: bytes, transmission_id: str, transmission_time: str, signature: str, auth_algo: str
) -> None:
    def call() -> None:
        security.verify_paypal(
            body,
            transmission_id=transmission_id,
            transmission_time=transmission_time,
            signature_b64=signature,
            auth_algo=auth_algo,
            webhook_ids=[PAYPAL_WEBHOOK_ID],
            public_key=paypal_key().public_key(),
            now=NOW,
            tolerance=300,
        )

    assert outcome(call) != "ok"


@PURE
@given(
    url=st.one_of(
        any_text,
        st.builds(
            lambda s, h, rest: f"{s}://{h}{rest}",
            st.sampled_from(["https", "http", "HTTPS", ""]),
            st.sampled_from(["api.paypal.com", "[::1", "api.paypal.com:x", "a@b"]),
            any_text,
        ),
    )
)
def test_cert_url_check_only_raises_signature_errors(url: str) -> None:
    outcome(lambda: security.check_paypal_cert_url(url, allowed_hosts=["api.paypal.com"]))


@PURE
@given(
    pem=st.one_of(
        st.binary(max_size=400),
        st.binary(max_size=300).map(
            lambda b: (
                b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(b) + b"-----END CERTIFICATE-----\n"
            )
        ),
    )
)
def test_certificate_loading_only_raises_signature_errors(pem: bytes) -> None:
    assert outcome(lambda: security.paypal_public_key(pem, now=datetime.now(UTC))) != "ok"


# --- verifiers: valid deliveries, then one mutation -------------------------------------------------------


@PURE
@given(body=st.binary(min_size=1, max_size=200), data=st.data())
def test_razorpay_and_paystack_mutations(body: bytes, data: st.DataObject) -> None:
    for verify, digest in (
        (security.verify_razorpay, hashlib.sha256),
        (security.verify_paystack, hashlib.sha512),
    ):
        signature = hmac.new(b"secret", body, digest).hexdigest()
        verify(body, signature, ["secret"])
        changed = data.draw(mutated(signature))
        assume(changed.strip() != signature)
        assert outcome(lambda: verify(body, changed, ["secret"])) == "signature_invalid"
        other = data.draw(bodies.filter(lambda b: b != body))
        assert outcome(lambda: verify(other, signature, ["secret"])) == "signature_invalid"


@PURE
@given(
    body=st.binary(min_size=1, max_size=200),
    offset=st.integers(-1000, 1000),
    tolerance=tolerances,
    data=st.data(),
)
def test_stripe_valid_then_mutated(
    body: bytes, offset: int, tolerance: int | None, data: st.DataObject
) -> None:
    message = f"{NOW + offset}.".encode() + body
    header = f"t={NOW + offset},v1={hmac.new(STRIPE_SECRET.encode(), message, hashlib.sha256).hexdigest()}"

    expected = "ok" if tolerance is None or abs(offset) <= tolerance else "signature_expired"
    assert (
        outcome(lambda: security.verify_stripe(body, header, [STRIPE_SECRET], now=NOW, tolerance=tolerance))
        == expected
    )
    assert (
        outcome(lambda: security.verify_stripe(body + b"x", header, [STRIPE_SECRET], now=NOW, tolerance=None))
        == "signature_invalid"
    )
    changed = data.draw(mutated(header))
    outcome(lambda: security.verify_stripe(body, changed, [STRIPE_SECRET], now=NOW, tolerance=tolerance))


@PURE
@given(
    payload=st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
    offset=st.integers(-1000, 1000),
    msg_id=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=30),
    svix_prefix=st.booleans(),
    data=st.data(),
)
def test_standard_valid_then_mutated(
    payload: dict[str, int], offset: int, msg_id: str, svix_prefix: bool, data: st.DataObject
) -> None:
    body = json.dumps(payload).encode()
    prefix = "svix" if svix_prefix else "webhook"
    headers = standard_headers(body, msg_id=msg_id, timestamp=NOW + offset, prefix=prefix)

    def verify(payload: bytes = body, changes: dict[str, str] | None = None) -> str:
        values = {
            "msg_id": msg_id,
            "timestamp": headers[f"{prefix}-timestamp"],
            "signature_header": headers[f"{prefix}-signature"],
        } | (changes or {})
        return outcome(
            lambda: security.verify_standard(payload, keys=[STANDARD_KEY], now=NOW, tolerance=300, **values)
        )

    assert verify() == ("ok" if abs(offset) <= 300 else "signature_expired")
    assert verify(body + b" ") == "signature_invalid"
    field = data.draw(st.sampled_from(["msg_id", "timestamp", "signature_header"]))
    changed = data.draw(
        mutated(
            str(
                {
                    "msg_id": msg_id,
                    "timestamp": headers[f"{prefix}-timestamp"],
                    "signature_header": headers[f"{prefix}-signature"],
                }[field]
            )
        )
    )
    verify(changes={field: changed})


@settings(max_examples=40, deadline=None)
@given(body=st.binary(min_size=1, max_size=200), offset=st.integers(-1000, 1000), data=st.data())
def test_paypal_valid_then_mutated(body: bytes, offset: int, data: st.DataObject) -> None:
    sent = datetime.fromtimestamp(NOW + offset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = paypal_headers(body, transmission_id="tx-1", transmission_time=sent)
    fields = {
        "transmission_id": "tx-1",
        "transmission_time": sent,
        "signature_b64": headers["PAYPAL-TRANSMISSION-SIG"],
        "auth_algo": "SHA256withRSA",
    }

    def verify(payload: bytes = body, changes: dict[str, str] | None = None) -> str:
        return outcome(
            lambda: security.verify_paypal(
                payload,
                **(fields | (changes or {})),
                webhook_ids=[PAYPAL_WEBHOOK_ID],
                public_key=paypal_key().public_key(),
                now=NOW,
                tolerance=300,
            )
        )

    assert verify() == ("ok" if abs(offset) <= 300 else "signature_expired")
    other = data.draw(bodies.filter(lambda b: zlib.crc32(b) != zlib.crc32(body)))
    assert verify(other) == "signature_invalid"
    field = data.draw(st.sampled_from(sorted(fields)))
    verify(changes={field: data.draw(mutated(fields[field]))})


# --- extractors -------------------------------------------------------------------------------------------

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        ["10.99", "1e3", "usd", "USD", "JPY", "2025-07-07T12:00:00Z", "0001-01-01T00:00:00+01:00"]
    ),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)

SKELETONS: dict[str, dict[str, Any]] = {
    "razorpay": {
        "event": ["payment.captured", "refund.processed", "payment.dispute.won", "order.paid"],
        "payload": {
            "payment": {
                "entity": {
                    "id": 0,
                    "status": 0,
                    "amount": 0,
                    "currency": 0,
                    "amount_refunded": 0,
                    "refund_status": 0,
                }
            },
            "refund": {"entity": {"payment_id": 0, "status": 0, "amount": 0, "currency": 0}},
            "dispute": {"entity": {"payment_id": 0, "amount": 0}},
        },
        "created_at": 0,
        "id": 0,
    },
    "stripe": {
        "id": 0,
        "object": ["event", "v2.core.event"],
        "created": 0,
        "type": ["payment_intent.succeeded", "charge.refunded", "charge.dispute.closed", "charge.succeeded"],
        "data": {
            "object": {
                "id": 0,
                "payment_intent": 0,
                "charge": 0,
                "object": ["charge"],
                "status": 0,
                "amount": 0,
                "currency": 0,
                "captured": 0,
                "refunded": 0,
            }
        },
    },
    "paypal": {
        "id": 0,
        "event_type": ["PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.REFUNDED", "PAYMENT.SALE.REFUNDED"],
        "resource_type": ["refund", "capture"],
        "create_time": 0,
        "resource": {
            "id": 0,
            "status": 0,
            "state": 0,
            "sale_id": 0,
            "links": 0,
            "amount": {"value": 0, "currency_code": 0, "total": 0, "currency": 0},
        },
    },
    "standard": {"type": 0, "timestamp": 0, "data": {"id": 0, "status": 0, "amount": 0, "currency": 0}},
    "paystack": {
        "event": ["charge.success", "refund.processed"],
        "data": {
            "reference": 0,
            "transaction_reference": 0,
            "status": 0,
            "amount": 0,
            "currency": 0,
            "paid_at": 0,
            "created_at": 0,
        },
    },
}


@st.composite
def shaped(draw: st.DrawFn, skeleton: object) -> object:
    """A payload of the provider's shape: each field is absent, a plausible value, or anything at all."""
    if isinstance(skeleton, dict):
        return {k: draw(shaped(v)) for k, v in skeleton.items() if draw(st.integers(0, 9)) > 0}
    if isinstance(skeleton, list):
        return draw(st.one_of(st.sampled_from(skeleton), json_value))
    return draw(json_value)


REGISTRY = build_registry(Settings(standard_webhook_secret=[STANDARD_SECRET]))
HEADERS = {
    "razorpay": {"x-razorpay-event-id": "evt_1"},
    "standard": {"webhook-id": "msg_1", "webhook-timestamp": str(NOW), "webhook-signature": "v1,x"},
    "paypal": {"paypal-transmission-id": "69cd13f0-d67a-11e5-baa3-778b53f4ae55"},
}


def fits_its_columns(event: NormalizedEvent) -> None:
    assert event.event_id and len(event.event_id) <= MAX_ID_LENGTH
    assert event.signed_key is None or len(event.signed_key) <= MAX_ID_LENGTH
    for value in (event.event_type, event.payment_id, event.provider_status):
        assert value is None or (len(value) <= MAX_ID_LENGTH and value.isprintable())
    assert event.status is None or event.status in STATUS_RANK
    assert event.amount is None or abs(event.amount) <= BIGINT_MAX
    assert event.currency is None or (
        len(event.currency) == 3 and event.currency.isascii() and event.currency.isupper()
    )
    assert event.occurred_at.tzinfo is not None


@settings(max_examples=100, deadline=None)
@given(data=st.data(), provider=st.sampled_from(sorted(SKELETONS)))
def test_extractors_return_a_fitting_event_or_invalid_payload(data: st.DataObject, provider: str) -> None:
    payload = data.draw(
        st.one_of(shaped(SKELETONS[provider]), st.dictionaries(st.text(max_size=8), json_value))
    )
    assume(isinstance(payload, dict))
    body = json.dumps(payload).encode()
    try:
        event = REGISTRY[provider].normalise(
            payload, body=body, headers=HEADERS.get(provider, {}), received_at=datetime.now(UTC)
        )
    except InvalidPayload as exc:
        assert exc.status_code == 400 and exc.message
        return
    fits_its_columns(event)


# --- the API: only documented answers ---------------------------------------------------------------------

SIGNERS: dict[str, Callable[[bytes], dict[str, str]]] = {
    "razorpay": razorpay_headers,
    "stripe": stripe_headers,
    "standard": standard_headers,
    "paystack": paystack_headers,
    "paypal": paypal_headers,
}
DOCUMENTED = {
    (400, "invalid_json"),
    (400, "invalid_payload"),
    (403, "signature_missing"),
    (403, "signature_invalid"),
    (403, "signature_expired"),
}


@pytest.fixture
def api(client_factory: Callable[..., TestClient], tmp_path: Path) -> TestClient:
    return client_factory(**all_provider_settings(tmp_path))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), provider=st.sampled_from(sorted(SIGNERS)))
def test_api_answers_random_headers_with_documented_codes(
    api: TestClient, data: st.DataObject, provider: str
) -> None:
    body = data.draw(st.one_of(bodies, shaped(SKELETONS[provider]).map(lambda p: json.dumps(p).encode())))
    headers = SIGNERS[provider](body) if data.draw(st.booleans()) and _utf8(body) else {}
    names = sorted({*headers, *data.draw(st.lists(st.sampled_from(_header_names(provider)), max_size=3))})
    sent = {
        name.encode(): data.draw(
            st.one_of(st.just(headers.get(name, "")), header_text, mutated(headers.get(name, "")))
        ).encode("latin-1")
        for name in names
    }

    response = api.post(f"/webhooks/{provider}", content=body, headers=sent)

    assert response.status_code in (200, 400, 403), response.text
    if response.status_code != 200:
        assert (response.status_code, response.json()["error"]["code"]) in DOCUMENTED


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), provider=st.sampled_from(sorted(SIGNERS)))
def test_api_stores_or_refuses_any_validly_signed_body(
    api: TestClient, data: st.DataObject, provider: str
) -> None:
    payload = data.draw(st.one_of(shaped(SKELETONS[provider]), json_value))
    body = json.dumps(payload).encode()

    response = api.post(f"/webhooks/{provider}", content=body, headers=SIGNERS[provider](body))

    if response.status_code == 200:
        assert response.json()["status"] in ("processed", "duplicate")
    else:
        assert (response.status_code, response.json()["error"]["code"]) in {(400, "invalid_payload")}, (
            response.text
        )


def _utf8(body: bytes) -> bool:
    # The providers' own signing helpers take text; other bodies are sent unsigned.
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


def _header_names(provider: str) -> list[str]:
    return {
        "razorpay": ["X-Razorpay-Signature", "X-Razorpay-Event-Id"],
        "stripe": ["Stripe-Signature"],
        "standard": ["webhook-id", "webhook-timestamp", "webhook-signature", "svix-id", "svix-signature"],
        "paystack": ["x-paystack-signature"],
        "paypal": [
            "PAYPAL-TRANSMISSION-ID",
            "PAYPAL-TRANSMISSION-TIME",
            "PAYPAL-TRANSMISSION-SIG",
            "PAYPAL-CERT-URL",
            "PAYPAL-AUTH-ALGO",
        ],
    }[provider]


def test_signature_error_codes_are_the_documented_ones() -> None:
    assert {SignatureInvalid.code, SignatureExpired.code, errors.SignatureMissing.code} == {
        code for status, code in DOCUMENTED if status == 403
    }
