"""Signature verification: pure functions over the raw body, the delivery's headers and the secrets.

Nothing here knows about FastAPI or the database. Every failure is a `SignatureError` (errors.py)
carrying the code the API answers with, so a malformed header can never escape as a 500. Each
verifier checks the signature first and the replay window second, so `signature_expired` is only ever
said of a delivery that was authentic once.

Header values are taken as the server decoded them (latin-1, as ASGI servers do): where a header value
is part of the signed message it is encoded back to latin-1, which gives exactly the bytes the provider
sent and signed.
"""

import base64
import binascii
import hashlib
import hmac
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from errors import SignatureExpired, SignatureInvalid, SignatureMissing

# Headers arrive as a case-insensitive mapping (Starlette's Headers or a plain dict with lower-case keys).
HeaderMap = Mapping[str, str]

# Unix seconds with more digits than this are malformed, not a time: 12 digits reach the year 33658.
# The cap also keeps int() and float arithmetic on a hostile header cheap and free of overflow.
_MAX_TIMESTAMP_DIGITS = 12


def require_header(headers: HeaderMap, *names: str) -> str:
    """The first of `names` present and non-empty, else `SignatureMissing` naming the first."""
    for name in names:
        value = headers.get(name)
        if value:
            return value
    raise SignatureMissing(f"missing {names[0]} header")


def _ascii(value: str) -> bytes:
    # compare_digest refuses non-ASCII str, so compare bytes: the header's own bytes, never a lossy
    # encoding (errors="replace" made every non-latin-1 character a "?" that a "?" would match).
    return _header_bytes(value)


def _header_bytes(value: str) -> bytes:
    """The bytes of a header value that is part of a signed message (see the module docstring)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", errors="surrogatepass")


def _any_matches(expected: Sequence[bytes], offered: Sequence[bytes]) -> bool:
    # Compare every pair, without stopping early, so timing says nothing about which one matched.
    matched = False
    for want in expected:
        for got in offered:
            matched |= hmac.compare_digest(want, got)
    return matched


def unix_seconds(value: str) -> int | None:
    """A unix-seconds header value as an int, or None when it is not plain ASCII digits of a sane length."""
    if value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS:
        return int(value)
    return None


def check_window(timestamp: int, *, now: float, tolerance: int | None) -> None:
    """Refuse a timestamp too old or too far in the future (a replay, or a skewed clock)."""
    if tolerance is not None and abs(now - timestamp) > tolerance:
        raise SignatureExpired(f"signature timestamp is outside the {tolerance} s tolerance")


def _hex_hmac(key: bytes, message: bytes, digest: Callable[[], "hashlib._Hash"]) -> bytes:
    return hmac.new(key, message, digest).hexdigest().encode()


# --- Razorpay and Paystack: hex HMAC over the body alone (no timestamp, so no replay window) ------


def verify_razorpay(body: bytes, signature: str, secrets: Sequence[str]) -> None:
    expected = [_hex_hmac(secret.encode(), body, hashlib.sha256) for secret in secrets]
    if not _any_matches(expected, [_ascii(signature.strip())]):
        raise SignatureInvalid("X-Razorpay-Signature does not match the body")


def verify_paystack(body: bytes, signature: str, secrets: Sequence[str]) -> None:
    expected = [_hex_hmac(secret.encode(), body, hashlib.sha512) for secret in secrets]
    if not _any_matches(expected, [_ascii(signature.strip())]):
        raise SignatureInvalid("x-paystack-signature does not match the body")


# --- Stripe: t=<unix>,v1=<hex>[,v1=...] over f"{t}.{body}", key = the whole whsec_ string ----------


def parse_stripe_header(header: str) -> tuple[int, list[bytes]]:
    """The signed timestamp and every `v1` signature; other schemes (v0, future ones) are ignored."""
    stamps: list[str] = []
    signatures: list[bytes] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            stamps.append(value)
        elif key == "v1":
            signatures.append(_ascii(value))
    # The first t= counts, as in Stripe's own libraries.
    timestamp = unix_seconds(stamps[0]) if stamps else None
    if timestamp is None:
        raise SignatureInvalid("Stripe-Signature has no valid t= timestamp")
    if not signatures:
        raise SignatureInvalid("Stripe-Signature has no v1 signature")
    return timestamp, signatures


def verify_stripe(
    body: bytes, header: str, secrets: Sequence[str], *, now: float, tolerance: int | None
) -> int:
    """Returns the signed timestamp."""
    timestamp, offered = parse_stripe_header(header)
    message = f"{timestamp}.".encode() + body
    expected = [_hex_hmac(secret.encode(), message, hashlib.sha256) for secret in secrets]
    if not _any_matches(expected, offered):
        raise SignatureInvalid("Stripe-Signature does not match the body")
    check_window(timestamp, now=now, tolerance=tolerance)
    return timestamp


# --- Standard Webhooks (Svix and others): base64 HMAC over f"{id}.{ts}.{body}" ------------------------


def decode_standard_secret(secret: str) -> bytes:
    """`whsec_<base64>` (the prefix is optional; missing padding is tolerated, as the libraries do)."""
    raw = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a Standard Webhooks secret must be base64, optionally prefixed whsec_") from exc
    if not key:
        raise ValueError("a Standard Webhooks secret must not be empty")
    return key


def verify_standard(
    body: bytes,
    *,
    msg_id: str,
    timestamp: str,
    signature_header: str,
    keys: Sequence[bytes],
    now: float,
    tolerance: int | None,
) -> int:
    """`keys` are already decoded with `decode_standard_secret`. Returns the signed timestamp."""
    seconds = unix_seconds(timestamp)
    if seconds is None:
        raise SignatureInvalid("webhook-timestamp is not a unix timestamp")
    offered = [
        _ascii(sig)
        for version, sep, sig in (part.partition(",") for part in signature_header.split())
        if sep and version == "v1"
    ]
    if not offered:
        raise SignatureInvalid("webhook-signature has no v1 signature")
    message = b"%s.%s." % (_header_bytes(msg_id), _header_bytes(timestamp)) + body
    expected = [base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()) for key in keys]
    if not _any_matches(expected, offered):
        raise SignatureInvalid("webhook-signature does not match the body")
    check_window(seconds, now=now, tolerance=tolerance)
    return seconds


# --- PayPal: RSA PKCS#1 v1.5 / SHA-256 over "id|time|webhook_id|crc32(body)", checked offline --------

PAYPAL_AUTH_ALGO = "SHA256withRSA"


@dataclass(frozen=True, slots=True)
class PayPalTransmission:
    """The parts of a PayPal delivery's signature headers, checked for shape (not yet for authenticity)."""

    transmission_id: str
    transmission_time: str
    sent_at: int
    signature: bytes


def parse_paypal_headers(
    *, transmission_id: str, transmission_time: str, signature_b64: str, auth_algo: str
) -> PayPalTransmission:
    """Cheap shape checks, done before any certificate is fetched for the delivery."""
    if auth_algo != PAYPAL_AUTH_ALGO:
        raise SignatureInvalid(f"PAYPAL-AUTH-ALGO must be {PAYPAL_AUTH_ALGO}")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureInvalid("PAYPAL-TRANSMISSION-SIG is not base64") from exc
    if not signature:
        raise SignatureInvalid("PAYPAL-TRANSMISSION-SIG is empty")
    try:
        sent = datetime.fromisoformat(transmission_time)
        sent_at = int(sent.timestamp()) if sent.tzinfo is not None else None
    except (ValueError, OverflowError) as exc:
        raise SignatureInvalid("PAYPAL-TRANSMISSION-TIME is not an ISO 8601 time") from exc
    if sent_at is None:
        raise SignatureInvalid("PAYPAL-TRANSMISSION-TIME has no time zone")
    return PayPalTransmission(transmission_id, transmission_time, sent_at, signature)


def paypal_signed_message(
    body: bytes, *, transmission_id: str, transmission_time: str, webhook_id: str
) -> bytes:
    # zlib.crc32 is unsigned on Python 3, which is the decimal form PayPal signs.
    parts = (_header_bytes(transmission_id), _header_bytes(transmission_time), webhook_id.encode())
    return b"|".join((*parts, b"%d" % zlib.crc32(body)))


def verify_paypal(
    body: bytes,
    *,
    transmission_id: str,
    transmission_time: str,
    signature_b64: str,
    auth_algo: str,
    webhook_ids: Sequence[str],
    public_key: rsa.RSAPublicKey,
    now: float,
    tolerance: int | None,
) -> None:
    """Any of `webhook_ids` may have been signed (rotation, or PayPal's simulator id `WEBHOOK_ID`)."""
    sent = parse_paypal_headers(
        transmission_id=transmission_id,
        transmission_time=transmission_time,
        signature_b64=signature_b64,
        auth_algo=auth_algo,
    )
    matched = False
    for webhook_id in webhook_ids:
        message = paypal_signed_message(
            body, transmission_id=transmission_id, transmission_time=transmission_time, webhook_id=webhook_id
        )
        try:
            public_key.verify(sent.signature, message, padding.PKCS1v15(), hashes.SHA256())
            matched = True
        except (InvalidSignature, ValueError):
            continue
    if not matched:
        raise SignatureInvalid("PAYPAL-TRANSMISSION-SIG does not match the body")
    check_window(sent.sent_at, now=now, tolerance=tolerance)


def check_paypal_cert_url(url: str, *, allowed_hosts: Sequence[str]) -> None:
    """Only https on an allow-listed PayPal host, no credentials, default port: refused before any fetch."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SignatureInvalid("PAYPAL-CERT-URL is not a URL") from exc
    allowed = {host.lower() for host in allowed_hosts}
    if (
        parts.scheme != "https"
        or parts.hostname not in allowed
        or parts.username is not None
        or parts.password is not None
        or port not in (None, 443)
    ):
        raise SignatureInvalid("PAYPAL-CERT-URL is not an https URL on an allowed PayPal host")


def load_paypal_certificate(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise SignatureInvalid("PayPal certificate is not a PEM certificate") from exc


def paypal_certificate_key(cert: x509.Certificate, *, now: datetime) -> tuple[rsa.RSAPublicKey, datetime]:
    """The RSA key of a PayPal signing certificate, checked to be current and issued to *.paypal.com.

    Returns the key and the certificate's expiry (for caching). Any problem is `SignatureInvalid`.
    """
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SignatureInvalid("PayPal certificate is not currently valid")
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(names[0].value).lower() if names else ""
    if not common_name.endswith(".paypal.com"):
        raise SignatureInvalid("PayPal certificate is not issued to a paypal.com host")
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureInvalid("PayPal certificate does not hold an RSA key")
    return key, cert.not_valid_after_utc


def paypal_public_key(pem: bytes, *, now: datetime) -> tuple[rsa.RSAPublicKey, datetime]:
    return paypal_certificate_key(load_paypal_certificate(pem), now=now)


def constant_time_in(candidate: str, allowed: Sequence[str]) -> bool:
    """Whether the header value `candidate` is, byte for byte, one of `allowed` (API tokens), without
    early exit. A token's bytes are its UTF-8 (the environment's own bytes: surrogateescape), so a
    client sends a non-ASCII token as UTF-8, as browsers, curl and requests do."""
    expected = [token.encode("utf-8", errors="surrogateescape") for token in allowed]
    return _any_matches(expected, [_header_bytes(candidate)])
