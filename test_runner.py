"""Drive a running receiver the way a payment provider would, and check every answer.

    python test_runner.py [--url http://127.0.0.1:8000] [--provider razorpay] [--secret test_secret]

Sends the provider's sample events (sample_payloads/<provider>/) for several payments in shuffled order,
then a retry, a tampered signature, a missing signature, invalid JSON, a payload without its event type,
an oversize body and, for timestamped schemes, a stale signature. Prints a table (case, expected, got,
pass) and one payment's resulting history, checks that history's order, and exits 1 on any mismatch.

Ids in the samples get a per-run suffix, so runs against the same database never collide.
Square signs its notification URL: start the server with SQUARE_NOTIFICATION_URL=<url>/webhooks/square
(the default of --square-url). Adyen's signatures are inside the body; GoCardless answers 204 and 498.
PayPal needs a key whose certificate the server pins: `python test_runner.py --make-paypal-cert DIR`
writes DIR/paypal-key.pem and DIR/paypal-cert.pem; start the server with PAYPAL_CERT_PATH=DIR/paypal-cert.pem
and PAYPAL_WEBHOOK_ID=<id>, then run with --provider paypal --paypal-key DIR/paypal-key.pem --secret <id>.
"""

import argparse
import base64
import hashlib
import hmac
import json
import random
import sys
import time
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from config import TEST_RUNNER_SECRETS

SAMPLES = Path(__file__).resolve().parent / "sample_payloads"
# Keys whose string values are ids: they get the run suffix so that every run is new to the server.
ID_KEYS = {
    "id",
    "payment_id",
    "order_id",
    "payment_intent",
    "latest_charge",
    "reference",
    "transaction_reference",
    "pspReference",
    "originalReference",
    "event_id",
    "transaction_id",
    "payment",
}
STALE_SECONDS = 3600

# Published, so production refuses them (config.PUBLISHED_SECRETS).
DEFAULT_SECRETS = TEST_RUNNER_SECRETS
TYPE_FIELD = {
    "razorpay": "event",
    "stripe": "type",
    "paypal": "event_type",
    "paystack": "event",
    "standard": "type",
    "adyen": "eventCode",  # in each notification item
    "gocardless": "resource_type",  # in each event
    "paddle": "event_type",
    "square": "type",
    "checkout": "type",
    "mercadopago": "action",
    "cashfree": "type",
}
# What a stored delivery is answered with, as `check` writes it, where it is not "200 processed".
ACCEPTED = {"adyen": "200 [accepted]", "gocardless": "204 -"}
DUPLICATE = {"adyen": "200 [accepted]", "gocardless": "204 -"}
# GoCardless documents 498 for a signature that does not match.
REFUSED_STATUS = {"gocardless": 498}
# Bodies free-form enough that one without its type is stored, not refused.
UNTYPED_STORED = {"standard", "mercadopago"}
TIMESTAMPED = ("stripe", "standard", "paypal", "paddle", "mercadopago", "cashfree")
Headers = dict[str, str]


@dataclass
class Result:
    case: str
    expected: str
    got: str

    @property
    def passed(self) -> bool:
        return self.expected == self.got


# --- signing, per provider's published scheme ---------------------------------------------------------


def _hex(key: bytes, message: bytes, digest: Any = hashlib.sha256) -> str:
    return hmac.new(key, message, digest).hexdigest()


def _b64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def adyen_seal(body: bytes, hex_key: str) -> bytes:
    """Each notification item gets its additionalData.hmacSignature, as Adyen computes it."""
    try:
        notification = json.loads(body)
        items = [wrapper["NotificationRequestItem"] for wrapper in notification["notificationItems"]]
    except (ValueError, KeyError, TypeError):
        return body  # not a notification (the junk cases): sent as it is
    for item in items:
        amount = item.get("amount", {})
        fields = (
            item.get("pspReference"),
            item.get("originalReference"),
            item.get("merchantAccountCode"),
            item.get("merchantReference"),
            amount.get("value"),
            amount.get("currency"),
            item.get("eventCode"),
            item.get("success"),
        )
        signed = ":".join("" if value is None else str(value) for value in fields)
        item.setdefault("additionalData", {})["hmacSignature"] = _b64(bytes.fromhex(hex_key), signed.encode())
    return json.dumps(notification).encode()


def mercadopago_data_id(body: bytes) -> str:
    try:
        return str(json.loads(body)["data"]["id"])
    except (ValueError, KeyError, TypeError):
        return "0"


class Signer:
    def __init__(self, provider: str, secret: str, paypal_key: Path | None, square_url: str = "") -> None:
        self.provider = provider
        self.secret = secret
        self.paypal_key = paypal_key
        self.square_url = square_url

    def seal(self, body: bytes) -> bytes:
        """The body as sent: Adyen's signatures travel inside it."""
        return adyen_seal(body, self.secret) if self.provider == "adyen" else body

    def query(self, body: bytes) -> dict[str, str]:
        """Mercado Pago signs the data.id of the notification URL's query string."""
        if self.provider != "mercadopago":
            return {}
        return {"data.id": mercadopago_data_id(body), "type": "payment"}

    def sign(self, body: bytes, *, event_id: str, at: float) -> Headers:
        headers = {"Content-Type": "application/json"}
        if self.provider == "razorpay":
            headers |= {
                "X-Razorpay-Signature": _hex(self.secret.encode(), body),
                "X-Razorpay-Event-Id": event_id,
            }
        elif self.provider == "paystack":
            headers["x-paystack-signature"] = _hex(self.secret.encode(), body, hashlib.sha512)
        elif self.provider == "stripe":
            signed = f"{int(at)}.".encode() + body
            headers["Stripe-Signature"] = f"t={int(at)},v1={_hex(self.secret.encode(), signed)}"
        elif self.provider == "standard":
            timestamp = str(int(at))
            raw = self.secret.removeprefix("whsec_")
            key = base64.b64decode(raw + "=" * (-len(raw) % 4))
            digest = hmac.new(key, f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
            headers |= {
                "webhook-id": event_id,
                "webhook-timestamp": timestamp,
                "webhook-signature": "v1," + base64.b64encode(digest).decode(),
            }
        elif self.provider == "paypal":
            headers |= self._paypal(body, at)
        elif self.provider == "gocardless":
            headers["Webhook-Signature"] = _hex(self.secret.encode(), body)
        elif self.provider == "checkout":
            headers["Cko-Signature"] = _hex(self.secret.encode(), body)
        elif self.provider == "paddle":
            signed = f"{int(at)}:".encode() + body
            headers["Paddle-Signature"] = f"ts={int(at)};h1={_hex(self.secret.encode(), signed)}"
        elif self.provider == "square":
            signature = _b64(self.secret.encode(), self.square_url.encode() + body)
            headers["x-square-hmacsha256-signature"] = signature
        elif self.provider == "cashfree":
            stamp = str(int(at * 1000))
            headers |= {
                "x-webhook-timestamp": stamp,
                "x-webhook-signature": _b64(self.secret.encode(), stamp.encode() + body),
            }
        elif self.provider == "mercadopago":
            data_id = mercadopago_data_id(body)
            signed_id = data_id.lower() if data_id.isalnum() else data_id
            request_id = str(uuid.uuid4())
            manifest = f"id:{signed_id};request-id:{request_id};ts:{int(at)};".encode()
            headers |= {
                "x-signature": f"ts={int(at)},v1={_hex(self.secret.encode(), manifest)}",
                "x-request-id": request_id,
            }
        return headers

    def _paypal(self, body: bytes, at: float) -> Headers:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        if self.paypal_key is None:
            sys.exit("--provider paypal needs --paypal-key (see --make-paypal-cert)")
        key = serialization.load_pem_private_key(self.paypal_key.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        transmission_id = str(uuid.uuid4())
        sent = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = f"{transmission_id}|{sent}|{self.secret}|{zlib.crc32(body)}".encode()
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return {
            "PAYPAL-TRANSMISSION-ID": transmission_id,
            "PAYPAL-TRANSMISSION-TIME": sent,
            "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
            "PAYPAL-CERT-URL": "https://api.paypal.com/v1/notifications/certs/CERT-pinned",
            "PAYPAL-AUTH-ALGO": "SHA256withRSA",
        }

    def signature_header(self) -> str:
        return {
            "razorpay": "X-Razorpay-Signature",
            "paystack": "x-paystack-signature",
            "stripe": "Stripe-Signature",
            "standard": "webhook-signature",
            "paypal": "PAYPAL-TRANSMISSION-SIG",
            "adyen": "",  # in the body
            "gocardless": "Webhook-Signature",
            "paddle": "Paddle-Signature",
            "square": "x-square-hmacsha256-signature",
            "checkout": "Cko-Signature",
            "mercadopago": "x-signature",
            "cashfree": "x-webhook-signature",
        }[self.provider]


def tamper(value: str) -> str:
    """Change one character in the middle of the signature: still well-formed, no longer matching.

    The middle, not the end: the last base64 characters can carry padding bits that decode the same."""
    index = len(value) * 3 // 4
    swapped = "1" if value[index] == "0" else "0"
    return value[:index] + swapped + value[index + 1 :]


# --- the scenario ---------------------------------------------------------------------------------------


def with_suffix(value: Any, suffix: str) -> Any:
    if isinstance(value, dict):
        return {
            k: (f"{v}_{suffix}" if k in ID_KEYS and isinstance(v, str) else with_suffix(v, suffix))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [with_suffix(item, suffix) for item in value]
    if isinstance(value, str) and value.startswith("https://") and "/captures/" in value:
        return f"{value}_{suffix}"  # PayPal refunds name their capture in a link
    return value


def load_samples(provider: str, suffix: str) -> list[tuple[str, dict[str, Any]]]:
    files = sorted((SAMPLES / provider).glob("*.json"))
    if not files:
        sys.exit(f"no samples in {SAMPLES / provider}")
    return [(path.stem, with_suffix(json.loads(path.read_text()), suffix)) for path in files]


def payment_id_of(provider: str, payload: dict[str, Any]) -> str | None:
    paths_by_provider: dict[str, list[tuple[str | int, ...]]] = {
        "razorpay": [("payload", "payment", "entity", "id")],
        "stripe": [("data", "object", "payment_intent"), ("data", "object", "id")],
        "paypal": [("resource", "id")],
        "standard": [("data", "id")],
        "paystack": [("data", "reference")],
        "adyen": [("notificationItems", 0, "NotificationRequestItem", "pspReference")],
        "gocardless": [("events", 0, "links", "payment")],
        "paddle": [("data", "transaction_id"), ("data", "id")],
        "square": [("data", "object", "payment", "id"), ("data", "object", "refund", "payment_id")],
        "checkout": [("data", "id")],
        "mercadopago": [("data", "id")],
        "cashfree": [("data", "order", "order_id"), ("data", "refund", "order_id")],
    }
    for path in paths_by_provider[provider]:
        value: Any = payload
        for key in path:
            if isinstance(key, int):
                value = value[key] if isinstance(value, list) and len(value) > key else None
            else:
                value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str):
            return value
    return None


def without_type(provider: str, template: dict[str, Any]) -> dict[str, Any]:
    """The template without its event type (in each item for Adyen and GoCardless), as a new event."""
    field = TYPE_FIELD[provider]
    payload: dict[str, Any] = json.loads(json.dumps(template))
    if provider == "adyen":
        for wrapper in payload["notificationItems"]:
            wrapper["NotificationRequestItem"].pop(field, None)
    elif provider == "gocardless":
        for event in payload["events"]:
            event.pop(field, None)
    else:
        payload.pop(field, None)
    if provider == "mercadopago":
        payload["id"] = f"mp_ntf_{uuid.uuid4().hex}"  # its own notification, not a repeat
    return payload | {"_runner_nonce": uuid.uuid4().hex}


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.url = args.url.rstrip("/")
        self.provider: str = args.provider
        secret = args.secret or DEFAULT_SECRETS[self.provider]
        square_url = args.square_url or f"{self.url}/webhooks/square"
        self.signer = Signer(self.provider, secret, args.paypal_key, square_url)
        self.max_body = args.max_body_bytes
        self.read_headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        self.http = requests.Session()
        self.results: list[Result] = []

    def post(self, body: bytes, headers: Headers) -> requests.Response:
        url = f"{self.url}/webhooks/{self.provider}"
        return self.http.post(url, data=body, headers=headers, params=self.signer.query(body), timeout=30)

    def check(self, case: str, expected: str, response: requests.Response) -> None:
        try:
            data = response.json()
        except ValueError:
            data = {}
        # Answers that are not JSON (Adyen's "[accepted]", GoCardless's empty 204) are shown as sent.
        detail = (
            data.get("status") if isinstance(data, dict) and "status" in data else response.text[:20] or "-"
        )
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            detail = data["error"].get("code")
        self.results.append(Result(case, expected, f"{response.status_code} {detail}"))

    def signed(self, body: bytes, event_id: str | None = None, at: float | None = None) -> Headers:
        return self.signer.sign(body, event_id=event_id or f"evt_{uuid.uuid4().hex}", at=at or time.time())

    def run(self) -> int:
        suffix = uuid.uuid4().hex[:8]
        samples = load_samples(self.provider, suffix)
        deliveries = [
            (name, self.signer.seal(json.dumps(payload).encode()), f"evt_{name}_{suffix}", payload)
            for name, payload in samples
        ]
        random.shuffle(deliveries)  # providers do not promise order
        sent: list[tuple[bytes, Headers]] = []
        for name, body, event_id, _ in deliveries:
            headers = self.signed(body, event_id)
            sent.append((body, headers))
            self.check(
                f"deliver {name}", ACCEPTED.get(self.provider, "200 processed"), self.post(body, headers)
            )

        body, headers = sent[0]
        self.check(
            "retry of a delivered event",
            DUPLICATE.get(self.provider, "200 duplicate"),
            self.post(
                body, self.signed(body, headers.get("X-Razorpay-Event-Id") or headers.get("webhook-id"))
            ),
        )
        self.negative_cases(deliveries[0][3])

        payment_id = payment_id_of(self.provider, samples[0][1])
        history_ok = self.show_history(payment_id) if payment_id else True
        self.print_table()
        return 0 if history_ok and all(result.passed for result in self.results) else 1

    def negative_cases(self, template: dict[str, Any]) -> None:
        refused = REFUSED_STATUS.get(self.provider, 403)
        unsealed = json.dumps(template | {"_runner_nonce": uuid.uuid4().hex}).encode()
        body = self.signer.seal(unsealed)
        header = self.signer.signature_header()
        tampered = self.signed(body)
        if header:
            tampered[header] = tamper(tampered[header])
            self.check("tampered signature", f"{refused} signature_invalid", self.post(body, tampered))
        else:  # Adyen: the signature is in the body
            forged = body.replace(b'"hmacSignature": "', b'"hmacSignature": "AAAA')
            self.check("tampered signature", f"{refused} signature_invalid", self.post(forged, tampered))
        missing = {k: v for k, v in self.signed(body).items() if k != header}
        sent = body if header else unsealed
        self.check("missing signature", f"{refused} signature_missing", self.post(sent, missing))
        broken = b'{"event": "payment.captured", "payload": '
        self.check("invalid JSON", "400 invalid_json", self.post(broken, self.signed(broken)))
        untyped = self.signer.seal(json.dumps(without_type(self.provider, template)).encode())
        # Standard Webhooks and Mercado Pago bodies may lack a type: stored, not refused.
        expected = (
            ACCEPTED.get(self.provider, "200 processed")
            if self.provider in UNTYPED_STORED
            else "400 invalid_payload"
        )
        self.check("payload without event type", expected, self.post(untyped, self.signed(untyped)))
        oversize = b'{"pad": "' + b"x" * self.max_body + b'"}'
        self.check("oversize body", "413 payload_too_large", self.post(oversize, self.signed(oversize)))
        if self.provider in TIMESTAMPED:
            stale = self.signed(body, at=time.time() - STALE_SECONDS)
            self.check("stale signature (replay)", "403 signature_expired", self.post(body, stale))

    def show_history(self, payment_id: str) -> bool:
        response = self.http.get(
            f"{self.url}/payments/{payment_id}/events", headers=self.read_headers, timeout=30
        )
        history = response.json() if response.status_code == 200 else []
        print(f"\nHistory of {payment_id} (GET /payments/{payment_id}/events -> {response.status_code}):")
        for item in history:
            print(
                f"  {item['occurred_at']}  {item['event_type'] or '-':<28} {item['status'] or '-':<20}"
                f" {item['amount']} {item['currency']}"
            )
        times = [datetime.fromisoformat(item["occurred_at"]) for item in history]
        ordered = times == sorted(times) and len(history) > 0
        state = self.http.get(f"{self.url}/payments/{payment_id}", headers=self.read_headers, timeout=30)
        if state.status_code == 200:
            current = state.json()
            print(f"  current state: {current['status']} ({current['event_count']} events)")
        print(f"  chronological: {'yes' if ordered else 'NO'}")
        return ordered

    def print_table(self) -> None:
        width = max(len(r.case) for r in self.results)
        print(f"\n{'case':<{width}}  {'expected':<26} {'got':<26} pass")
        for r in self.results:
            print(f"{r.case:<{width}}  {r.expected:<26} {r.got:<26} {'ok' if r.passed else 'FAIL'}")
        failed = sum(not r.passed for r in self.results)
        print(f"\n{len(self.results) - failed}/{len(self.results)} cases passed")


def make_paypal_cert(folder: Path) -> None:
    """A key and a self-signed certificate for *.paypal.com, for pinning in a test server only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts.paypal.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    (folder / "paypal-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (folder / "paypal-cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    print(f"wrote {folder / 'paypal-key.pem'} and {folder / 'paypal-cert.pem'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--provider", choices=sorted(DEFAULT_SECRETS), default="razorpay")
    parser.add_argument(
        "--secret",
        help="the provider's secret (PayPal: the webhook id); defaults: "
        + ", ".join(f"{provider} {secret}" for provider, secret in DEFAULT_SECRETS.items()),
    )
    parser.add_argument("--token", help="bearer token for the read API, when API_TOKENS is set")
    parser.add_argument(
        "--square-url",
        help="the server's SQUARE_NOTIFICATION_URL (default: URL/webhooks/square)",
    )
    parser.add_argument("--max-body-bytes", type=int, default=1_048_576, help="the server's MAX_BODY_BYTES")
    parser.add_argument(
        "--paypal-key", type=Path, help="PEM private key matching the server's PAYPAL_CERT_PATH"
    )
    parser.add_argument(
        "--make-paypal-cert", type=Path, metavar="DIR", help="write a test key and certificate"
    )
    args = parser.parse_args(argv)
    if args.make_paypal_cert:
        make_paypal_cert(args.make_paypal_cert)
        return 0
    try:
        return Runner(args).run()
    except requests.ConnectionError:
        print(f"cannot reach {args.url}: is the server running? (make run)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
