"""The 59 published signature vectors (../shared/fixtures/vectors.json, see SOURCES.md there) through the
pure verifiers, with each vector's secret, headers, exact body, clock (`now`) and tolerance.

PayPal vectors are signed by PayPal's 2015-2017 sandbox certificate, long expired: its key is used
directly, since the certificate-validity check is a separate step (and is shown to refuse it here).
"""

import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

import errors
import security
from errors import SignatureError
from security import require_header
from tests.conftest import FIXTURES, fixture_path

EXPECTED_COUNT = 59


@lru_cache(maxsize=1)
def load_vectors() -> list[dict[str, Any]]:
    path = FIXTURES / "vectors.json"
    return json.loads(path.read_text()) if path.exists() else []


def vector_ids() -> list[int]:
    # Parametrised by number, so a missing fixtures folder gives one skip rather than a collection error.
    return [vector["n"] for vector in load_vectors()] or [-1]


def vector(n: int) -> dict[str, Any]:
    fixture_path("vectors.json")
    [found] = [v for v in load_vectors() if v["n"] == n]
    return found


def paypal_cert(cert_file: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(fixture_path(cert_file).read_bytes())


def verify(v: dict[str, Any]) -> None:
    """Raise a SignatureError unless the vector verifies, exactly as the receiver's adapter would call."""
    headers = {name.lower(): value for name, value in v["headers"].items()}
    body = v["body"].encode()
    now = float(v.get("now") or 0)
    tolerance = v.get("tolerance_s")
    provider = v["provider"]
    if provider in ("razorpay", "razorpay-takehome"):
        security.verify_razorpay(body, require_header(headers, "x-razorpay-signature"), [v["secret"]])
    elif provider == "stripe":
        security.verify_stripe(
            body, require_header(headers, "stripe-signature"), [v["secret"]], now=now, tolerance=tolerance
        )
    elif provider == "standard-webhooks":
        security.verify_standard(
            body,
            msg_id=require_header(headers, "webhook-id"),
            timestamp=require_header(headers, "webhook-timestamp"),
            signature_header=require_header(headers, "webhook-signature"),
            keys=[security.decode_standard_secret(v["secret"])],
            now=now,
            tolerance=tolerance,
        )
    elif provider == "paypal":
        key = paypal_cert(v["cert_file"]).public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        security.verify_paypal(
            body,
            transmission_id=require_header(headers, "paypal-transmission-id"),
            transmission_time=require_header(headers, "paypal-transmission-time"),
            signature_b64=require_header(headers, "paypal-transmission-sig"),
            auth_algo=require_header(headers, "paypal-auth-algo"),
            webhook_ids=[v["webhook_id"]],
            public_key=key,
            now=now,
            tolerance=tolerance,
        )
    else:
        raise AssertionError(f"vector {v['n']} has an unknown provider {provider!r}")


def test_every_vector_is_here() -> None:
    fixture_path("vectors.json")
    vectors = load_vectors()

    assert len(vectors) == EXPECTED_COUNT
    assert {v["provider"] for v in vectors} == {
        "razorpay",
        "razorpay-takehome",
        "stripe",
        "standard-webhooks",
        "paypal",
    }


@pytest.mark.parametrize("n", vector_ids())
def test_vector(n: int) -> None:
    v = vector(n)
    if v.get("body_file"):
        # The vector's body is the published file, byte for byte: what is verified is what was signed.
        assert fixture_path(v["body_file"]).read_bytes() == v["body"].encode()

    if v["expected"] == "valid":
        verify(v)
    else:
        with pytest.raises(SignatureError):
            verify(v)


def test_paypal_signed_string_matches_the_published_one() -> None:
    v = vector(62)
    headers = v["headers"]

    message = security.paypal_signed_message(
        v["body"].encode(),
        transmission_id=headers["paypal-transmission-id"],
        transmission_time=headers["paypal-transmission-time"],
        webhook_id=v["webhook_id"],
    )

    assert message.decode() == v["expected_crc_message"]


def test_the_published_paypal_sandbox_certificate_is_refused_as_expired_today() -> None:
    cert = paypal_cert(vector(62)["cert_file"])

    with pytest.raises(errors.SignatureInvalid, match="not currently valid"):
        security.paypal_certificate_key(cert, now=datetime.now(UTC))
    # It was PayPal's, and valid when it signed the vector.
    key, _ = security.paypal_certificate_key(cert, now=datetime(2016, 10, 5, 14, 57, 40, tzinfo=UTC))
    assert isinstance(key, rsa.RSAPublicKey)
