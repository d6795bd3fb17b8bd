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


# === More providers: Adyen, GoCardless, Paddle, Square, Checkout.com, Mercado Pago, Cashfree ===========

# A unix time in milliseconds has 13 digits until the year 2286; seconds have 10. Mercado Pago and
# Cashfree document both forms in different places, so either is accepted.
_MILLISECONDS_FROM = 10**11


def unix_seconds_or_millis(value: str) -> int | None:
    """Unix seconds from a header in seconds or milliseconds, or None when it is not plain digits."""
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS + 1):
        return None
    stamp = int(value)
    return stamp // 1000 if stamp >= _MILLISECONDS_FROM else stamp


def _b64_hmac(key: bytes, message: bytes) -> bytes:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest())


def decode_hex_key(secret: str, *, setting: str) -> bytes:
    """A key configured as hex (Adyen's HMAC key); a key that is not hex stops start-up."""
    try:
        key = bytes.fromhex(secret)
    except ValueError as exc:
        raise ValueError(f"{setting} must be hexadecimal") from exc
    if not key:
        raise ValueError(f"{setting} must not be empty")
    return key


# --- Adyen: per notification item, base64 HMAC-SHA256 (hex-decoded key) over eight fields joined by ':'

ADYEN_SIGNED_FIELDS = (
    "pspReference",
    "originalReference",
    "merchantAccountCode",
    "merchantReference",
    "value",
    "currency",
    "eventCode",
    "success",
)


def adyen_signed_string(item: Mapping[str, object]) -> bytes:
    """The fields in Adyen's order, as its libraries write them: absent ones empty, amount.value in
    decimal. A field of another type is not something Adyen signs: `SignatureInvalid`."""
    amount = item.get("amount")
    values = {**item, **(amount if isinstance(amount, dict) else {})}
    parts: list[str] = []
    for name in ADYEN_SIGNED_FIELDS:
        value = values.get(name)
        if value is None:
            parts.append("")
        elif isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            parts.append(str(value))
        else:
            raise SignatureInvalid(f"Adyen notification field {name!r} is not a string or an integer")
    return ":".join(parts).encode()


def verify_adyen_item(item: Mapping[str, object], keys: Sequence[bytes]) -> None:
    """`keys` are hex-decoded (`decode_hex_key`). The signature is additionalData.hmacSignature."""
    signature = item.get("additionalData")
    signature = signature.get("hmacSignature") if isinstance(signature, dict) else None
    if not isinstance(signature, str) or not signature:
        raise SignatureMissing("Adyen notification item has no additionalData.hmacSignature")
    message = adyen_signed_string(item)
    if not _any_matches([_b64_hmac(key, message) for key in keys], [_ascii(signature)]):
        raise SignatureInvalid("Adyen hmacSignature does not match the notification item")


def verify_basic_auth(header: str, credentials: Sequence[str]) -> None:
    """`Authorization: Basic base64(user:password)` against the configured `user:password` values."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise SignatureInvalid("Authorization is not Basic credentials")
    try:
        offered = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureInvalid("Authorization Basic credentials are not base64") from exc
    if not _any_matches([value.encode() for value in credentials], [offered]):
        raise SignatureInvalid("Authorization Basic credentials do not match")


# --- GoCardless and Checkout.com: hex HMAC-SHA256 of the body alone --------------------------------


def verify_gocardless(body: bytes, signature: str, secrets: Sequence[str]) -> None:
    expected = [_hex_hmac(secret.encode(), body, hashlib.sha256) for secret in secrets]
    if not _any_matches(expected, [_ascii(signature.strip())]):
        raise SignatureInvalid("Webhook-Signature does not match the body")


def verify_checkout(body: bytes, signature: str, secrets: Sequence[str]) -> None:
    expected = [_hex_hmac(secret.encode(), body, hashlib.sha256) for secret in secrets]
    if not _any_matches(expected, [_ascii(signature.strip().lower())]):
        raise SignatureInvalid("Cko-Signature does not match the body")


def verify_static_key(offered: str, keys: Sequence[str], *, header: str) -> None:
    """A static shared key sent as a header (Checkout.com's optional Authorization value)."""
    if not constant_time_in(offered.strip(), keys):
        raise SignatureInvalid(f"{header} does not match the configured key")


# --- Paddle Billing: ts=<unix>;h1=<hex>[;h1=...] over f"{ts}:{body}" --------------------------------


def parse_paddle_header(header: str) -> tuple[int, list[bytes]]:
    stamps: list[str] = []
    signatures: list[bytes] = []
    for item in header.split(";"):
        name, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if name == "ts":
            stamps.append(value)
        elif name == "h1":
            signatures.append(_ascii(value))
    timestamp = unix_seconds(stamps[0]) if stamps else None
    if timestamp is None:
        raise SignatureInvalid("Paddle-Signature has no valid ts= timestamp")
    if not signatures:
        raise SignatureInvalid("Paddle-Signature has no h1 signature")
    return timestamp, signatures


def verify_paddle(
    body: bytes, header: str, secrets: Sequence[str], *, now: float, tolerance: int | None
) -> int:
    """Any `h1` may match (Paddle sends one per secret while a secret is rotated). Returns ts."""
    timestamp, offered = parse_paddle_header(header)
    message = f"{timestamp}:".encode() + body
    expected = [_hex_hmac(secret.encode(), message, hashlib.sha256) for secret in secrets]
    if not _any_matches(expected, offered):
        raise SignatureInvalid("Paddle-Signature does not match the body")
    check_window(timestamp, now=now, tolerance=tolerance)
    return timestamp


# --- Square: base64 HMAC-SHA256 of the notification URL followed by the body -----------------------


def verify_square(body: bytes, signature: str, keys: Sequence[str], *, notification_url: str) -> None:
    message = notification_url.encode() + body
    expected = [_b64_hmac(key.encode(), message) for key in keys]
    if not _any_matches(expected, [_ascii(signature.strip())]):
        raise SignatureInvalid("x-square-hmacsha256-signature does not match the URL and body")


# --- Mercado Pago: x-signature ts=..,v1=.. over "id:{data.id};request-id:{x-request-id};ts:{ts};" ---


def parse_mercadopago_header(header: str) -> tuple[str, int, list[bytes]]:
    """The ts as sent (it is signed as text), its time in unix seconds, and every v1."""
    stamps: list[str] = []
    signatures: list[bytes] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if name.strip() == "ts":
            stamps.append(value.strip())
        elif name.strip() == "v1":
            signatures.append(_ascii(value.strip()))
    seconds = unix_seconds_or_millis(stamps[0]) if stamps else None
    if seconds is None:
        raise SignatureInvalid("x-signature has no valid ts= timestamp")
    if not signatures:
        raise SignatureInvalid("x-signature has no v1 signature")
    return stamps[0], seconds, signatures


def mercadopago_manifest(*, data_id: str | None, request_id: str | None, ts: str) -> bytes:
    """Mercado Pago's template; a part whose value the notification lacks is left out, as documented.
    An alphanumeric data.id is signed lower-cased."""
    parts = []
    if data_id:
        parts.append(f"id:{data_id.lower() if data_id.isalnum() else data_id};")
    if request_id:
        parts.append(f"request-id:{request_id};")
    parts.append(f"ts:{ts};")
    return "".join(parts).encode("utf-8", errors="surrogatepass")


def verify_mercadopago(
    header: str,
    *,
    data_id: str | None,
    request_id: str | None,
    secrets: Sequence[str],
    now: float,
    tolerance: int | None,
) -> int:
    """The body is not signed by Mercado Pago: only the manifest. Returns the signed time."""
    ts, seconds, offered = parse_mercadopago_header(header)
    manifest = mercadopago_manifest(data_id=data_id, request_id=request_id, ts=ts)
    expected = [_hex_hmac(secret.encode(), manifest, hashlib.sha256) for secret in secrets]
    if not _any_matches(expected, offered):
        raise SignatureInvalid("x-signature does not match the notification")
    check_window(seconds, now=now, tolerance=tolerance)
    return seconds


# --- Cashfree: base64 HMAC-SHA256 of x-webhook-timestamp followed by the body ----------------------


def verify_cashfree(
    body: bytes, *, signature: str, timestamp: str, secrets: Sequence[str], now: float, tolerance: int | None
) -> int:
    seconds = unix_seconds_or_millis(timestamp)
    if seconds is None:
        raise SignatureInvalid("x-webhook-timestamp is not a unix timestamp")
    message = _header_bytes(timestamp) + body
    expected = [_b64_hmac(secret.encode(), message) for secret in secrets]
    if not _any_matches(expected, [_ascii(signature.strip())]):
        raise SignatureInvalid("x-webhook-signature does not match the body")
    check_window(seconds, now=now, tolerance=tolerance)
    return seconds
