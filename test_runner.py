"""Drive a running receiver the way a payment provider would, and check every answer.

    python test_runner.py [--url http://127.0.0.1:8000] [--provider razorpay] [--secret test_secret]

Sends the provider's sample events (sample_payloads/<provider>/) for several payments in shuffled order,
then a retry, a tampered signature, a missing signature, invalid JSON, a payload without its event type,
an oversize body and, for timestamped schemes, a stale signature. Prints a table (case, expected, got,
pass) and one payment's resulting history, checks that history's order, and exits 1 on any mismatch.

Ids in the samples get a per-run suffix, so runs against the same database never collide.
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
}
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


class Signer:
    def __init__(self, provider: str, secret: str, paypal_key: Path | None) -> None:
        self.provider = provider
        self.secret = secret
        self.paypal_key = paypal_key

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
    paths_by_provider: dict[str, list[tuple[str, ...]]] = {
        "razorpay": [("payload", "payment", "entity", "id")],
        "stripe": [("data", "object", "payment_intent"), ("data", "object", "id")],
        "paypal": [("resource", "id")],
        "standard": [("data", "id")],
        "paystack": [("data", "reference")],
    }
    for path in paths_by_provider[provider]:
        value: Any = payload
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str):
            return value
    return None


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.url = args.url.rstrip("/")
        self.provider: str = args.provider
        self.signer = Signer(self.provider, args.secret or DEFAULT_SECRETS[self.provider], args.paypal_key)
        self.max_body = args.max_body_bytes
        self.read_headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        self.http = requests.Session()
        self.results: list[Result] = []

    def post(self, body: bytes, headers: Headers) -> requests.Response:
        return self.http.post(f"{self.url}/webhooks/{self.provider}", data=body, headers=headers, timeout=30)

    def check(self, case: str, expected: str, response: requests.Response) -> None:
        try:
            data = response.json()
        except ValueError:
            data = {}
        detail = data.get("status") if isinstance(data, dict) and "status" in data else None
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            detail = data["error"].get("code")
        self.results.append(Result(case, expected, f"{response.status_code} {detail}"))

    def signed(self, body: bytes, event_id: str | None = None, at: float | None = None) -> Headers:
        return self.signer.sign(body, event_id=event_id or f"evt_{uuid.uuid4().hex}", at=at or time.time())

    def run(self) -> int:
        suffix = uuid.uuid4().hex[:8]
        samples = load_samples(self.provider, suffix)
        deliveries = [
            (name, json.dumps(payload).encode(), f"evt_{name}_{suffix}", payload) for name, payload in samples
        ]
        random.shuffle(deliveries)  # providers do not promise order
        sent: list[tuple[bytes, Headers]] = []
        for name, body, event_id, _ in deliveries:
            headers = self.signed(body, event_id)
            sent.append((body, headers))
            self.check(f"deliver {name}", "200 processed", self.post(body, headers))

        body, headers = sent[0]
        self.check(
            "retry of a delivered event",
            "200 duplicate",
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
        body = json.dumps(template | {"_runner_nonce": uuid.uuid4().hex}).encode()
        header = self.signer.signature_header()
        tampered = self.signed(body)
        tampered[header] = tamper(tampered[header])
        self.check("tampered signature", "403 signature_invalid", self.post(body, tampered))
        missing = {k: v for k, v in self.signed(body).items() if k != header}
        self.check("missing signature", "403 signature_missing", self.post(body, missing))
        broken = b'{"event": "payment.captured", "payload": '
        self.check("invalid JSON", "400 invalid_json", self.post(broken, self.signed(broken)))
        untyped = json.dumps(
            {k: v for k, v in template.items() if k != TYPE_FIELD[self.provider]}
            | {"_runner_nonce": uuid.uuid4().hex}
        ).encode()
        # Standard Webhooks bodies are free-form: an untyped one is stored, not refused.
        expected = "200 processed" if self.provider == "standard" else "400 invalid_payload"
        self.check("payload without event type", expected, self.post(untyped, self.signed(untyped)))
        oversize = b'{"pad": "' + b"x" * self.max_body + b'"}'
        self.check("oversize body", "413 payload_too_large", self.post(oversize, self.signed(oversize)))
        if self.provider in ("stripe", "standard", "paypal"):
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
