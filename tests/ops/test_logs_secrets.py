"""Nothing unauthentic gets in, and nothing secret gets out: constant-time comparisons, no secret or
payload in any log line, replays outside the window refused, production refusing default secrets
(without printing the others), and no credential kept with a stored event."""

import ast
import base64
import json
import math
import secrets
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from fastapi.testclient import TestClient
from pydantic import ValidationError

from config import Settings
from main import create_app
from tests.conftest import BACKENDS, ROOT, make_settings
from tests.live import (
    LoggedServer,
    backend_database,
    read_response,
    request_head,
    storage_outage,
    stored_bodies,
)
from tests.support import (
    STANDARD_SECRET,
    STRIPE_SECRET,
    razorpay_delivery,
    razorpay_event,
    razorpay_signature,
    standard_headers,
    stripe_headers,
)

# --- constant-time comparisons ------------------------------------------------------------------------------

SENSITIVE = ("sig", "token", "secret", "digest", "hmac", "mac", "expected", "offered", "credential", "key")


def _comparisons(path: Path) -> Iterator[tuple[int, str]]:
    """(line, source) of every ==, !=, in or not in that involves a name suggesting a secret."""
    source = path.read_text()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        if not any(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops):
            continue
        operands = [node.left, *node.comparators]
        names = " ".join(ast.unparse(operand).lower() for operand in operands)
        if any(word in names for word in SENSITIVE):
            yield node.lineno, ast.unparse(node)


@pytest.mark.parametrize(
    "module", ["security.py", "api/auth.py", *sorted(p.name for p in (ROOT / "providers").glob("*.py"))]
)
def test_secrets_are_never_compared_with_equality(module: str) -> None:
    path = ROOT / module if (ROOT / module).exists() else ROOT / "providers" / module
    # The only comparisons allowed near these names are of constants that are not secret: algorithm names
    # and header keys. Anything else must go through hmac.compare_digest.
    allowed = {"auth_algo != PAYPAL_AUTH_ALGO", "key == 't'", "key == 'v1'"}

    found = [(line, text) for line, text in _comparisons(path) if text not in allowed]

    assert found == [], f"{module}: compare secrets with hmac.compare_digest, not {found}"


def test_every_verifier_goes_through_compare_digest() -> None:
    tree = ast.parse((ROOT / "security.py").read_text())
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert "hmac.compare_digest" in calls
    verifiers = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    for name in (
        "verify_razorpay",
        "verify_paystack",
        "verify_stripe",
        "verify_standard",
        "constant_time_in",
    ):
        used = {ast.unparse(node.func) for node in ast.walk(verifiers[name]) if isinstance(node, ast.Call)}
        assert "_any_matches" in used, name


# --- logs: a full scenario, then search everything the process wrote ----------------------------------------


def _secret(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


def _leaked(value: str, text: str, *, width: int = 10) -> bool:
    """Whether any `width` consecutive characters of `value` appear in `text`: a truncated echo
    (pydantic shortens long reprs with '...') still gives a secret away."""
    return any(value[start : start + width] in text for start in range(max(1, len(value) - width + 1)))


@pytest.fixture
def paired_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with backend_database(request.param, request=request, folder=tmp_path) as url:
        yield url


@pytest.mark.parametrize(
    ("paired_database", "log_format"),
    [("sqlite", "text"), ("postgresql", "json")],
    indirect=["paired_database"],
)
def test_logs_never_contain_secrets_or_payloads(
    paired_database: str, tmp_path: Path, log_format: str
) -> None:
    """One server per log format (a server start is the slow part), each format on one backend."""
    database_url = paired_database
    marker = f"PAYLOAD-MARKER-{uuid.uuid4().hex}"
    secrets_used = {
        "RAZORPAY_WEBHOOK_SECRET": _secret("rzp_"),
        "STRIPE_WEBHOOK_SECRET": _secret("whsec_"),
        "STANDARD_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
        "PAYSTACK_SECRET_KEY": _secret("sk_live_"),
        "API_TOKENS": _secret("tok_"),
    }
    credentials_sent = {
        "wrong token": _secret("tok_wrong_"),
        "cookie": _secret("sess_"),
        "authorization": _secret("bearer_"),
    }
    server = LoggedServer(
        {
            "DATABASE_URL": database_url,
            **secrets_used,
            "LOG_FORMAT": log_format,
            "LOG_LEVEL": "DEBUG",
            "MAX_BODY_BYTES": "4096",
            "STORE_TIMEOUT_SECONDS": "0.5",
            "BODY_READ_TIMEOUT_SECONDS": "0.5",
        },
        log_path=tmp_path / "server.log",
        access_log=True,  # as `make run` serves
        extra_args=["--log-level", "debug"],
    ).start()
    rzp_secret = secrets_used["RAZORPAY_WEBHOOK_SECRET"]
    token = secrets_used["API_TOKENS"]

    def razorpay(event_id: str, **extra: object) -> tuple[bytes, dict[str, str]]:
        payload = razorpay_event(event_id=event_id, payment_id="pay_logs") | {
            "notes": {"marker": marker},
            **extra,
        }
        return razorpay_delivery(payload, rzp_secret)

    def post(path: str, body: bytes, headers: dict[str, str]) -> int:
        return requests.post(server.url + path, data=body, headers=headers, timeout=10).status_code

    statuses = []
    body, headers = razorpay("evt_logs_1")
    hostile_headers = {
        **headers,
        "Authorization": f"Bearer {credentials_sent['authorization']}",
        "Cookie": f"session={credentials_sent['cookie']}",
    }
    statuses.append(post("/webhooks/razorpay", body, hostile_headers))  # processed
    statuses.append(post("/webhook/payments", body, headers))  # duplicate
    stripe_body = json.dumps(
        {
            "id": "evt_logs_stripe",
            "type": "payment_intent.succeeded",
            "created": 1,
            "data": {"object": {"id": "pi_logs", "metadata": {"m": marker}}},
        }
    ).encode()
    statuses.append(
        post(
            "/webhooks/stripe",
            stripe_body,
            stripe_headers(stripe_body, secret=secrets_used["STRIPE_WEBHOOK_SECRET"]),
        )
    )
    standard_body = json.dumps({"type": "payment.succeeded", "data": {"id": "p", "note": marker}}).encode()
    statuses.append(
        post(
            "/webhooks/standard",
            standard_body,
            standard_headers(standard_body, secret=secrets_used["STANDARD_WEBHOOK_SECRET"]),
        )
    )
    statuses.append(
        post("/webhooks/razorpay", body, {"X-Razorpay-Signature": razorpay_signature(body, "nope")})
    )
    statuses.append(post("/webhooks/razorpay", body, {}))  # signature missing
    bad_json = b'{"marker": "' + marker.encode() + b'", '
    statuses.append(
        post(
            "/webhooks/razorpay", bad_json, {"X-Razorpay-Signature": razorpay_signature(bad_json, rzp_secret)}
        )
    )
    bad_field, bad_field_headers = razorpay("evt_\u0001" + marker)
    statuses.append(post("/webhooks/razorpay", bad_field, bad_field_headers))  # invalid_payload
    too_big, too_big_headers = razorpay("evt_big", padding=marker * 200)
    statuses.append(post("/webhooks/razorpay", too_big, too_big_headers))  # payload_too_large
    statuses.append(
        requests.get(
            server.url + "/payments/pay_logs", timeout=10, headers={"Authorization": f"Bearer {token}"}
        ).status_code
    )
    statuses.append(
        requests.get(
            server.url + "/payments/pay_logs",
            timeout=10,
            headers={"Authorization": f"Bearer {credentials_sent['wrong token']}"},
        ).status_code
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:  # never finished: 408
        partial, partial_headers = razorpay("evt_partial")
        sock.sendall(
            request_head("/webhooks/razorpay", [*partial_headers.items(), ("Content-Length", "999")])
            + partial[:50]
        )
        statuses.append(read_response(sock)[0])
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:  # abandoned midway
        sock.sendall(
            request_head("/webhooks/razorpay", [*headers.items(), ("Content-Length", "999")]) + body[:50]
        )
    with storage_outage(database_url):
        outage_body, outage_headers = razorpay("evt_logs_outage")
        statuses.append(post("/webhooks/razorpay", outage_body, outage_headers))
    code, _ = server.terminate_within(15)
    log = server.log()

    assert statuses == [200, 200, 200, 200, 403, 403, 400, 400, 413, 200, 401, 408, 503]
    assert code is not None
    for outcome in (
        "processed",
        "duplicate",
        "signature_invalid",
        "payload_too_large",
        "storage_unavailable",
        "request_timeout",
        "client_disconnected",
    ):
        assert outcome in log, f"the {outcome} delivery was not logged at all"
    leaked = {
        name
        for name, value in {**secrets_used, **credentials_sent, "payload marker": marker}.items()
        if _leaked(value, log)
    }
    assert leaked == set(), f"found in the {log_format} log: {sorted(leaked)}"
    assert "Traceback" not in log


# --- replays ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def signing_client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """An app with Stripe and Standard Webhooks configured, one per backend for the module."""
    folder = tmp_path_factory.mktemp(f"replay-{request.param}")
    with backend_database(request.param, request=request, folder=folder) as database_url:
        settings = make_settings(
            database_url, stripe_webhook_secret=[STRIPE_SECRET], standard_webhook_secret=[STANDARD_SECRET]
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            client.database_url = database_url  # type: ignore[attr-defined]
            yield client


def shifted_timestamp(shift: int) -> int:
    """Whole seconds `shift` away from now, rounded away from now: a timestamp 301 s ahead stays more
    than 300 s ahead while the test runs. Truncating now made it 300.0-301 s ahead, and a second
    boundary between the delivery and its replay moved it inside the window."""
    now = time.time()
    return math.ceil(now) + shift if shift > 0 else math.floor(now) + shift


@pytest.mark.parametrize("provider", ["stripe", "standard"])
@pytest.mark.parametrize(
    ("shift", "status", "code"),
    [
        (-86_400, 403, "signature_expired"),
        (-301, 403, "signature_expired"),
        (301, 403, "signature_expired"),
        (-280, 200, "processed"),
        (0, 200, "processed"),
    ],
)
def test_replayed_deliveries_outside_the_window_are_rejected(
    signing_client: TestClient, provider: str, shift: int, status: int, code: str
) -> None:
    """Signed by each provider's own SDK at a shifted time; SIGNATURE_TOLERANCE_SECONDS is 300."""
    event_id = f"evt_replay_{uuid.uuid4().hex[:8]}"
    if provider == "stripe":
        body = json.dumps(
            {
                "id": event_id,
                "type": "payment_intent.succeeded",
                "created": 1,
                "data": {"object": {"id": "pi_replay", "amount": 100, "currency": "usd"}},
            }
        ).encode()
        headers = stripe_headers(body, timestamp=shifted_timestamp(shift))
    else:
        body = json.dumps({"type": "payment.succeeded", "data": {"id": "pay_replay"}}).encode()
        headers = standard_headers(body, msg_id=event_id, timestamp=shifted_timestamp(shift))

    response = signing_client.post(f"/webhooks/{provider}", content=body, headers=headers)
    replayed = signing_client.post(f"/webhooks/{provider}", content=body, headers=headers)

    answer = response.json()
    assert (response.status_code, answer.get("status") or answer["error"]["code"]) == (status, code)
    # The same delivery again inside the window is a duplicate (no second effect); outside, refused again.
    assert replayed.status_code == status
    assert (replayed.json().get("status") or replayed.json()["error"]["code"]) == (
        "duplicate" if status == 200 else code
    )
    stored = stored_bodies(signing_client.database_url)  # type: ignore[attr-defined]
    assert stored.get(event_id, []) == ([body] if status == 200 else [])


# --- production start --------------------------------------------------------------------------------------


REFUSED_IN_PRODUCTION = [
    ({"RAZORPAY_WEBHOOK_SECRET": "test_secret"}, "RAZORPAY_WEBHOOK_SECRET"),
    (
        {"RAZORPAY_WEBHOOK_SECRET": "live_rzp", "STRIPE_WEBHOOK_SECRET": "test_secret"},
        "STRIPE_WEBHOOK_SECRET",
    ),
    ({"RAZORPAY_WEBHOOK_SECRET": "live_rzp", "API_TOKENS": ""}, "API_TOKENS"),
]


def _other_secrets() -> dict[str, str]:
    return {
        "API_TOKENS": _secret("tok_"),
        "PAYSTACK_SECRET_KEY": _secret("sk_live_"),
        "STANDARD_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
    }


def test_production_server_refuses_the_development_secret_and_prints_no_secret(tmp_path: Path) -> None:
    others = _other_secrets()
    server = LoggedServer(
        {
            "APP_ENV": "production",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'webhooks.db'}",
            **others,
            "RAZORPAY_WEBHOOK_SECRET": "test_secret",
        },
        log_path=tmp_path / "server.log",
    ).launch()
    assert server.process is not None
    try:
        code = server.process.wait(60)
    finally:
        server.stop()
    log = server.log()

    assert code != 0
    assert "RAZORPAY_WEBHOOK_SECRET must not hold a secret published in this repository" in log
    assert [name for name, value in others.items() if _leaked(value, log)] == []


@pytest.mark.parametrize(("env", "variable"), REFUSED_IN_PRODUCTION)
def test_production_settings_name_the_variable_and_quote_no_secret(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    others = _other_secrets()
    for name, value in {"APP_ENV": "production", **others, **env}.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError) as refused:
        Settings()

    assert variable in str(refused.value)
    assert [name for name, value in others.items() if _leaked(value, str(refused.value))] == []


# --- what is kept with a stored event ----------------------------------------------------------------------


def test_stored_headers_keep_no_credentials(client: TestClient, database_url: str) -> None:
    credentials = {
        name: _secret("cred_")
        for name in (
            "Authorization",
            "Cookie",
            "Proxy-Authorization",
            "X-Api-Key",
            "X-Auth-Token",
            "Set-Cookie",
        )
    }
    body, headers = razorpay_delivery(razorpay_event(event_id="evt_headers"))

    response = client.post(
        "/webhooks/razorpay",
        content=body,
        headers={**headers, **credentials, "User-Agent": "Razorpay-Webhook/v1"},
    )
    detail = client.get("/events/razorpay/evt_headers").json()

    assert response.status_code == 200
    stored = detail["headers"]
    assert set(stored) <= {
        "content-type",
        "user-agent",
        "x-request-id",
        "x-razorpay-signature",
        "x-razorpay-event-id",
    }
    assert stored["user-agent"] == "Razorpay-Webhook/v1"
    assert not any(value in json.dumps(detail) for value in credentials.values())
    assert stored_bodies(database_url)["evt_headers"] == [body]
