"""The pure verifiers, checked against each provider's own signing code, plus money and field extraction."""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import razorpay  # type: ignore[import-untyped]
import standardwebhooks.webhooks
import stripe
import svix.webhooks
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import security
from errors import InvalidPayload, SignatureExpired, SignatureInvalid, SignatureMissing
from providers import fields
from providers.money import decimal_to_minor, minor_unit_exponent
from tests.support import (
    PAYPAL_CERT_URL,
    PAYPAL_WEBHOOK_ID,
    STANDARD_SECRET,
    paypal_cert_pem,
    paypal_headers,
    paypal_key,
)

BODY = json.dumps({"id": "evt_unit_1", "type": "payment_intent.succeeded", "amount": 1099}).encode()
NOW = 1_751_889_985


# --- Razorpay -----------------------------------------------------------------------------------------


def test_razorpay_signature_agrees_with_razorpays_own_verifier() -> None:
    secret = "unit_secret"
    signature = hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()

    assert razorpay.Client(auth=("rzp_test_unit", secret)).utility.verify_webhook_signature(
        BODY.decode(), signature, secret
    )
    security.verify_razorpay(BODY, signature, ["rotated_out", secret])
    with pytest.raises(SignatureInvalid):
        security.verify_razorpay(BODY + b" ", signature, [secret])
    with pytest.raises(razorpay.errors.SignatureVerificationError):
        razorpay.Client(auth=("rzp_test_unit", secret)).utility.verify_webhook_signature(
            BODY.decode() + " ", signature, secret
        )


# --- Stripe -------------------------------------------------------------------------------------------

STRIPE_SECRET = "whsec_unit_stripe"


def stripe_header(body: bytes = BODY, *, secret: str = STRIPE_SECRET, timestamp: int = NOW) -> str:
    return str(stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=timestamp))


def test_stripe_header_made_by_stripe_verifies_and_stripe_accepts_it_back() -> None:
    header = stripe_header()

    assert security.verify_stripe(BODY, header, [STRIPE_SECRET], now=NOW, tolerance=300) == NOW
    assert stripe.WebhookSignature.verify_header(BODY.decode(), header, STRIPE_SECRET, tolerance=None)


def test_stripe_any_matching_v1_passes_and_other_schemes_are_ignored() -> None:
    good = stripe_header().split("v1=")[1]
    header = f"t={NOW},v0={good},v1={'0' * 64},v1={good},v2=future"

    security.verify_stripe(BODY, header, [STRIPE_SECRET], now=NOW, tolerance=300)
    with pytest.raises(SignatureInvalid, match="no v1"):
        security.verify_stripe(BODY, f"t={NOW},v0={good}", [STRIPE_SECRET], now=NOW, tolerance=300)


def test_stripe_key_is_the_whole_whsec_string_not_its_decoding() -> None:
    decoded_key = base64.b64decode(STANDARD_SECRET.removeprefix("whsec_"))
    message = f"{NOW}.".encode() + BODY
    signed_with_decoded = hmac.new(decoded_key, message, hashlib.sha256).hexdigest()

    with pytest.raises(SignatureInvalid):
        security.verify_stripe(
            BODY, f"t={NOW},v1={signed_with_decoded}", [STANDARD_SECRET], now=NOW, tolerance=None
        )
    security.verify_stripe(
        BODY, stripe_header(secret=STANDARD_SECRET), [STANDARD_SECRET], now=NOW, tolerance=None
    )


@pytest.mark.parametrize(
    ("offset", "expired"),
    [(0, False), (-300, False), (300, False), (-301, True), (301, True), (-(10**6), True), (10**6, True)],
)
def test_replay_window_is_symmetric_and_inclusive(offset: int, expired: bool) -> None:
    header = stripe_header(timestamp=NOW + offset)

    if expired:
        with pytest.raises(SignatureExpired):
            security.verify_stripe(BODY, header, [STRIPE_SECRET], now=NOW, tolerance=300)
    else:
        security.verify_stripe(BODY, header, [STRIPE_SECRET], now=NOW, tolerance=300)
    # No tolerance means no timestamp check at all.
    security.verify_stripe(BODY, header, [STRIPE_SECRET], now=NOW, tolerance=None)


def test_a_bad_signature_is_invalid_even_when_also_expired() -> None:
    header = stripe_header(secret="whsec_other", timestamp=NOW - 10_000)

    with pytest.raises(SignatureInvalid):
        security.verify_stripe(BODY, header, [STRIPE_SECRET], now=NOW, tolerance=300)


# --- Standard Webhooks / Svix -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "library", [standardwebhooks.webhooks.Webhook, svix.webhooks.Webhook], ids=["standardwebhooks", "svix"]
)
def test_standard_signature_from_the_reference_libraries_verifies(library: Any) -> None:
    signature = library(STANDARD_SECRET).sign("msg_unit_1", datetime.fromtimestamp(NOW, UTC), BODY.decode())

    verified = security.verify_standard(
        BODY,
        msg_id="msg_unit_1",
        timestamp=str(NOW),
        signature_header=f"v1,{'A' * 44} {signature}",
        keys=[b"rotated-out-key", security.decode_standard_secret(STANDARD_SECRET)],
        now=NOW,
        tolerance=300,
    )

    assert verified == NOW


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr",
    ],
    ids=["prefixed", "bare", "one_pad_missing", "two_pads_missing"],
)
def test_standard_secret_decodes_like_the_reference_library(secret: str) -> None:
    reference = standardwebhooks.webhooks.Webhook(secret)

    assert security.decode_standard_secret(secret) == reference._whsecret


@pytest.mark.parametrize("secret", ["whsec_", "", "whsec_not*base64", "whsec_A"])
def test_a_standard_secret_that_is_empty_or_not_base64_is_a_configuration_error(secret: str) -> None:
    with pytest.raises(ValueError, match="Standard Webhooks secret"):
        security.decode_standard_secret(secret)


# --- Paystack -----------------------------------------------------------------------------------------


def test_paystack_is_hex_hmac_sha512_of_the_body() -> None:
    signature = hmac.new(b"sk_test_unit", BODY, hashlib.sha512).hexdigest()

    security.verify_paystack(BODY, signature, ["sk_test_unit"])
    with pytest.raises(SignatureInvalid):
        security.verify_paystack(
            BODY, hmac.new(b"sk_test_unit", BODY, hashlib.sha256).hexdigest(), ["sk_test_unit"]
        )


# --- PayPal -------------------------------------------------------------------------------------------


def verify_paypal(
    body: bytes, headers: dict[str, str], *, webhook_ids: list[str], now: float | None = None
) -> None:
    security.verify_paypal(
        body,
        transmission_id=headers["PAYPAL-TRANSMISSION-ID"],
        transmission_time=headers["PAYPAL-TRANSMISSION-TIME"],
        signature_b64=headers["PAYPAL-TRANSMISSION-SIG"],
        auth_algo=headers["PAYPAL-AUTH-ALGO"],
        webhook_ids=webhook_ids,
        public_key=paypal_key().public_key(),
        now=NOW if now is None else now,
        tolerance=None if now is None else 300,
    )


def test_paypal_signature_over_id_time_webhook_id_and_crc32() -> None:
    headers = paypal_headers(BODY, transmission_id="tx-1", transmission_time="2025-07-07T12:00:00Z")

    verify_paypal(BODY, headers, webhook_ids=["OTHER", PAYPAL_WEBHOOK_ID])
    with pytest.raises(SignatureInvalid):
        verify_paypal(BODY, headers, webhook_ids=["OTHER"])
    with pytest.raises(SignatureInvalid):
        verify_paypal(BODY + b"\n", headers, webhook_ids=[PAYPAL_WEBHOOK_ID])
    with pytest.raises(SignatureExpired):
        verify_paypal(
            BODY,
            headers,
            webhook_ids=[PAYPAL_WEBHOOK_ID],
            now=datetime(2025, 7, 7, 12, 5, 1, tzinfo=UTC).timestamp(),
        )


def test_paypal_crc32_is_the_unsigned_decimal() -> None:
    # CRC32 of b"a" is 0xE8B7BE43: its top bit is set, so signed 32-bit arithmetic would print it negative.
    message = security.paypal_signed_message(
        b"a", transmission_id="tx", transmission_time="t", webhook_id="wh"
    )

    assert message == b"tx|t|wh|3904355907"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"auth_algo": "SHA1withRSA"}, "PAYPAL-AUTH-ALGO"),
        ({"signature_b64": "not base64!"}, "not base64"),
        ({"signature_b64": "===="}, "PAYPAL-TRANSMISSION-SIG"),
        ({"transmission_time": "2025-07-07 noon"}, "ISO 8601"),
        ({"transmission_time": "2025-07-07T12:00:00"}, "time zone"),
    ],
)
def test_paypal_header_shape_checks(fields: dict[str, str], message: str) -> None:
    values = {
        "transmission_id": "tx",
        "transmission_time": "2025-07-07T12:00:00Z",
        "signature_b64": "AAAA",
        "auth_algo": "SHA256withRSA",
    } | fields

    with pytest.raises(SignatureInvalid, match=message):
        security.parse_paypal_headers(**values)


CERT_NOW = datetime.now(UTC)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, None),
        ({"common_name": "MessageVerificationCerts.PayPal.com"}, None),
        (
            {"not_before": CERT_NOW - timedelta(days=60), "not_after": CERT_NOW - timedelta(seconds=1)},
            "not currently valid",
        ),
        ({"not_before": CERT_NOW + timedelta(seconds=5)}, "not currently valid"),
        ({"common_name": "paypal.com.evil.example"}, "paypal.com host"),
        ({"common_name": "notpaypal.com"}, "paypal.com host"),
    ],
    ids=["valid", "case_insensitive_cn", "expired", "not_yet_valid", "suffix_trick", "lookalike"],
)
def test_paypal_certificate_must_be_current_and_issued_to_paypal(
    options: dict[str, Any], problem: str | None
) -> None:
    pem = paypal_cert_pem(**options)

    if problem is None:
        key, expires = security.paypal_public_key(pem, now=CERT_NOW)
        assert key.public_numbers() == paypal_key().public_key().public_numbers()
        assert expires > CERT_NOW
    else:
        with pytest.raises(SignatureInvalid, match=problem):
            security.paypal_public_key(pem, now=CERT_NOW)


def test_paypal_certificate_without_an_rsa_key_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts.paypal.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(CERT_NOW - timedelta(days=1))
        .not_valid_after(CERT_NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )

    with pytest.raises(SignatureInvalid, match="RSA"):
        security.paypal_certificate_key(cert, now=CERT_NOW)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        (PAYPAL_CERT_URL, True),
        ("https://API.SANDBOX.PAYPAL.COM/v1/notifications/certs/CERT-1", True),
        ("https://api.paypal.com:443/v1/notifications/certs/CERT-1", True),
        ("http://api.paypal.com/v1/notifications/certs/CERT-1", False),
        ("https://api.paypal.com.evil.example/x", False),
        ("https://evil.example/?https://api.paypal.com/", False),
        ("https://api.paypal.com@evil.example/", False),
        ("https://evil.example#@api.paypal.com/", False),
        ("https://user@api.paypal.com/", False),
        ("https://api.paypal.com:8443/", False),
        ("https://api.paypal.com:99999/", False),
        ("https://[::1/", False),
        ("", False),
    ],
)
def test_paypal_cert_url_allow_list(url: str, allowed: bool) -> None:
    hosts = ["api.paypal.com", "api.sandbox.paypal.com"]
    if allowed:
        security.check_paypal_cert_url(url, allowed_hosts=hosts)
    else:
        with pytest.raises(SignatureInvalid):
            security.check_paypal_cert_url(url, allowed_hosts=hosts)


# --- headers ------------------------------------------------------------------------------------------


def test_require_header_takes_the_first_present_alias_and_names_the_first_when_missing() -> None:
    assert security.require_header({"svix-id": "b"}, "webhook-id", "svix-id") == "b"
    assert security.require_header({"webhook-id": "a", "svix-id": "b"}, "webhook-id", "svix-id") == "a"
    with pytest.raises(SignatureMissing, match="webhook-id"):
        security.require_header({"webhook-id": ""}, "webhook-id", "svix-id")


# --- money --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        ("10.99", "USD", 1099),
        ("10.99", "usd", 1099),
        ("500", "JPY", 500),
        ("1.234", "KWD", 1234),
        ("1.5", "BHD", 1500),
        ("0.0001", "CLF", 1),
        ("-20.00", "USD", -2000),
        ("7", "XOF", 7),
        ("0", "EUR", 0),
    ],
)
def test_decimal_to_minor_uses_the_iso_4217_exponent(value: str, currency: str, minor: int) -> None:
    assert decimal_to_minor(value, currency) == minor


@pytest.mark.parametrize(
    "value", ["10.999", "1e2", "NaN", "Infinity", " 1", "1_0", "", ".5", "5.", "\u0661\u0662", "1" * 20]
)
def test_decimal_to_minor_refuses_anything_but_an_exact_plain_decimal(value: str) -> None:
    with pytest.raises(ValueError):
        decimal_to_minor(value, "USD")


def test_exponents() -> None:
    assert [minor_unit_exponent(c) for c in ("USD", "INR", "JPY", "KRW", "KWD", "TND", "CLF", "XYZ")] == [
        2,
        2,
        0,
        0,
        3,
        3,
        4,
        2,
    ]


# --- extraction ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reader", "value"),
    [
        (fields.text, 10**400),
        (fields.text, "x" * 256),
        (fields.text, "line\nbreak"),
        (fields.text, ["list"]),
        (fields.text, True),
        (fields.amount, 2**63),
        (fields.amount, 10.5),
        (fields.amount, "100"),
        (fields.currency, "\u00c4\u00d6\u00dc"),
        (fields.currency, "US"),
        (fields.currency, "US1"),
        (fields.unix_time, "1751889985"),
        (fields.iso_time, "yesterday"),
        (fields.iso_time, 1751889985),
    ],
)
def test_extractors_refuse_what_does_not_fit_with_invalid_payload(reader: Any, value: object) -> None:
    with pytest.raises(InvalidPayload, match=r"'field\.x'"):
        reader(value, "field.x")


def test_extractors_normalise_what_fits() -> None:
    assert fields.text(12345, "f") == "12345"
    assert fields.currency("usd", "f") == "USD"
    assert fields.unix_time(1751889985, "f") == datetime(2025, 7, 7, 12, 6, 25, tzinfo=UTC)
    assert fields.iso_time("2025-07-07T14:00:00+02:00", "f") == datetime(2025, 7, 7, 12, tzinfo=UTC)
    assert fields.iso_time("2020-07-23T14:02:26.000Z", "f") == datetime(2020, 7, 23, 14, 2, 26, tzinfo=UTC)
    assert fields.iso_time("2025-07-07T12:00:00", "f") == datetime(2025, 7, 7, 12, tzinfo=UTC)
    assert fields.derived_event_id(b"x") == "sha256:" + hashlib.sha256(b"x").hexdigest()
