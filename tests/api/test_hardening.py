"""Bad input, case by case: every malformed, oversized, slow or hostile delivery gets its documented 4xx
(never a 500), stores nothing, and leaves the server answering everyone else.

Cases that depend on bytes on the wire (sizes, chunking, stalls, duplicated headers) go to a real
uvicorn process through raw sockets; the rest go through the app in-process.
"""

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any
from urllib.parse import quote

import pytest
import requests
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import security
from errors import InvalidPayload, SignatureError
from main import create_app
from providers import fields, money
from tests.conftest import BACKENDS, make_settings
from tests.live import (
    LoggedServer,
    backend_database,
    chunked,
    raw_request,
    read_response,
    report,
    request_head,
    stored_bodies,
    wait_until,
)
from tests.support import (
    PAYPAL_WEBHOOK_ID,
    PAYSTACK_SECRET,
    STANDARD_SECRET,
    STRIPE_SECRET,
    paypal_headers,
    paystack_headers,
    razorpay_delivery,
    razorpay_event,
    razorpay_headers,
    razorpay_signature,
    standard_headers,
    stripe_headers,
    write_paypal_cert,
)

MIB = 1024 * 1024
BODY_READ_TIMEOUT = 1.0


@pytest.fixture(scope="module", params=BACKENDS)
def wire_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LoggedServer]:
    """One server per backend for the wire-level cases, on a database of its own."""
    folder = tmp_path_factory.mktemp(f"wire-{request.param}")
    with ExitStack() as stack:
        database_url = stack.enter_context(backend_database(request.param, request=request, folder=folder))
        env = {
            "DATABASE_URL": database_url,
            "RAZORPAY_WEBHOOK_SECRET": "test_secret",
            "BODY_READ_TIMEOUT_SECONDS": str(BODY_READ_TIMEOUT),
        }
        server = LoggedServer(env, log_path=folder / "server.log").start()
        stack.callback(server.stop)
        yield server


@pytest.fixture(scope="module", params=BACKENDS)
def app_client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """One started app per backend for the in-process cases (a fresh app per case would cost a start-up
    each); cases use unique event ids and compare what is stored before and after."""
    with ExitStack() as stack:
        folder = tmp_path_factory.mktemp(f"app-{request.param}")
        database_url = stack.enter_context(backend_database(request.param, request=request, folder=folder))
        client = stack.enter_context(
            TestClient(create_app(make_settings(database_url)), raise_server_exceptions=False)
        )
        client.database_url = database_url  # type: ignore[attr-defined]
        yield client


def signed_head(body: bytes, *extra: tuple[str, str], length: int | None = None) -> bytes:
    headers = [
        ("X-Razorpay-Signature", razorpay_signature(body)),
        ("Content-Type", "application/json"),
        *extra,
    ]
    if length is not None:
        headers.append(("Content-Length", str(length)))
    return request_head("/webhooks/razorpay", headers)


def quick_delivery(url: str) -> tuple[int, float]:
    body, headers = razorpay_delivery(razorpay_event())
    started = time.monotonic()
    status = requests.post(url + "/webhooks/razorpay", data=body, headers=headers, timeout=10).status_code
    return status, time.monotonic() - started


# --- size: refused at the cap, never buffered ------------------------------------------------------------


def test_declared_10_mib_body_is_refused_before_it_is_read(wire_server: LoggedServer) -> None:
    assert quick_delivery(wire_server.url)[0] == 200  # warm: first-request allocations are not the body's
    rss_before = wire_server.rss_kib()
    body_start = b'{"event": "payment.captured", "padding": "' + b"x" * 65536

    status, answer = raw_request(wire_server.port, signed_head(b"", length=10 * MIB), body_start)

    assert (status, answer["error"]["code"]) == (413, "payload_too_large")
    grown = wire_server.rss_kib() - rss_before
    assert grown < 2 * 1024, "the server buffered part of a refused body"
    report("declared-10MiB", rss_growth_kib=grown)
    assert quick_delivery(wire_server.url)[0] == 200


def test_streamed_10_mib_chunked_body_is_cut_at_the_cap(wire_server: LoggedServer) -> None:
    """No Content-Length to refuse early: the server reads up to MAX_BODY_BYTES (1 MiB) and stops."""
    assert quick_delivery(wire_server.url)[0] == 200
    rss_before = wire_server.rss_kib()
    payload = chunked(b"x" * (10 * MIB), chunk_size=65536)
    with socket.create_connection(("127.0.0.1", wire_server.port), timeout=10) as sock:
        sock.sendall(signed_head(b"", ("Transfer-Encoding", "chunked")))

        def send_body() -> None:
            # The server answers and closes the connection at the cap: the rest is refused.
            with contextlib.suppress(OSError):
                sock.sendall(payload)

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        status, answer = read_response(sock)
        sock.close()
        sender.join(10)

    assert (status, answer["error"]["code"]) == (413, "payload_too_large")
    grown = wire_server.rss_kib() - rss_before
    assert grown < 4 * 1024, "the server buffered more than the cap"
    report("chunked-10MiB", rss_growth_kib=grown)


def test_chunked_signed_body_is_accepted_and_stored_exactly(wire_server: LoggedServer) -> None:
    body, _ = razorpay_delivery(razorpay_event(event_id="evt_chunked_ok"))

    status, answer = raw_request(
        wire_server.port, signed_head(body, ("Transfer-Encoding", "chunked")), chunked(body, chunk_size=7)
    )

    assert (status, answer) == (200, {"status": "processed", "event_id": "evt_chunked_ok"})
    assert stored_bodies(wire_server.database_url)["evt_chunked_ok"] == [body]


# --- time: a body that never finishes cannot hold a request (or shutdown) forever -----------------------


@pytest.mark.parametrize("how", ["stalls", "drips"])
def test_slow_body_times_out_while_others_are_served(wire_server: LoggedServer, how: str) -> None:
    body, _ = razorpay_delivery(razorpay_event())
    stop_dripping = threading.Event()
    with socket.create_connection(("127.0.0.1", wire_server.port), timeout=BODY_READ_TIMEOUT + 5) as sock:
        sock.sendall(signed_head(body, length=len(body)) + body[:10])

        def drip() -> None:
            # A byte at a time, never the whole body: each read succeeds, the total never completes.
            for byte in body[10:-1]:
                if stop_dripping.wait(0.1):
                    return
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    return

        dripper = threading.Thread(target=drip, daemon=True)
        if how == "drips":
            dripper.start()
        started = time.monotonic()
        others = [quick_delivery(wire_server.url) for _ in range(10)]
        try:
            status, answer = read_response(sock)
        finally:
            stop_dripping.set()
        waited = time.monotonic() - started

    assert all(status == 200 and seconds < 1.0 for status, seconds in others), others
    assert (status, answer["error"]["code"]) == (408, "request_timeout")
    assert waited < BODY_READ_TIMEOUT + 2
    report(
        f"slow-body[{how}]",
        answered_408_after_s=round(waited, 2),
        others_max_ms=round(1000 * max(seconds for _, seconds in others), 1),
    )


def test_body_abandoned_midway_leaves_the_server_serving(wire_server: LoggedServer) -> None:
    body, _ = razorpay_delivery(razorpay_event())
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", wire_server.port), timeout=5) as sock:
            sock.sendall(signed_head(body, length=len(body)) + body[: len(body) // 2])

    assert quick_delivery(wire_server.url)[0] == 200
    assert "Traceback" not in wire_server.log()


# --- headers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signatures", "status", "code"),
    [
        ([], 403, "signature_missing"),
        ([""], 403, "signature_missing"),
        (["good", "bad"], 200, "processed"),  # the first occurrence is the one verified
        (["bad", "good"], 403, "signature_invalid"),
        (["bad", "bad"], 403, "signature_invalid"),
        (["good, bad"], 403, "signature_invalid"),  # a folded list is not a signature
    ],
)
def test_missing_and_duplicated_signature_headers(
    wire_server: LoggedServer, signatures: list[str], status: int, code: str
) -> None:
    body, _ = razorpay_delivery(razorpay_event())
    values = {"good": razorpay_signature(body), "bad": razorpay_signature(body, "wrong_secret")}
    headers = [
        ("X-Razorpay-Signature", ", ".join(values.get(part, part) for part in value.split(", ")))
        for value in signatures
    ]
    head = request_head("/webhooks/razorpay", [*headers, ("Content-Length", str(len(body)))])

    got_status, answer = raw_request(wire_server.port, head, body)

    assert got_status == status
    assert (answer.get("status") or answer["error"]["code"]) == code


def test_duplicated_event_id_header_uses_the_first(wire_server: LoggedServer) -> None:
    body, _ = razorpay_delivery(razorpay_event(event_id=""))
    headers = [
        ("X-Razorpay-Signature", razorpay_signature(body)),
        ("X-Razorpay-Event-Id", "EvtFirst01"),
        ("X-Razorpay-Event-Id", "EvtSecond02"),
        ("Content-Length", str(len(body))),
    ]

    status, answer = raw_request(wire_server.port, request_head("/webhooks/razorpay", headers), body)

    assert (status, answer["event_id"]) == (200, "EvtFirst01")


# --- bodies that are not what they claim ------------------------------------------------------------------

HUGE = 10**30


def _payload_with(**entity: Any) -> bytes:
    payload = razorpay_event()
    payload["payload"]["payment"]["entity"].update(entity)
    return json.dumps(payload).encode()


BAD_BODIES: dict[str, tuple[bytes, str]] = {
    "non_utf8": (b'{"event": "payment.captured", "id": "evt_\xff\xfe"}', "invalid_json"),
    "latin1_encoded": ('{"event": "payment.captured", "id": "évt"}'.encode("latin-1"), "invalid_json"),
    "raw_nul_byte": (b'{"event": "payment.captured\x00", "id": "evt_nul"}', "invalid_json"),
    "nul_after_json": (json.dumps(razorpay_event()).encode() + b"\x00", "invalid_json"),
    "escaped_nul_in_id": (json.dumps(razorpay_event(event_id="evt_\u0000x")).encode(), "invalid_payload"),
    "escaped_nul_in_type": (json.dumps(razorpay_event(event="payment.\u0000")).encode(), "invalid_payload"),
    "nul_in_payment_id": (_payload_with(id="pay_\u0000"), "invalid_payload"),
    "deep_arrays": (b"[" * 10_000 + b"]" * 10_000, "invalid_json"),
    "deep_objects": (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "invalid_json"),
    "deep_inside_event": (
        b'{"event": "payment.captured", "id": "e", "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        "invalid_json",
    ),
    "amount_huge_int": (_payload_with(amount=HUGE), "invalid_payload"),
    "amount_past_int64": (_payload_with(amount=2**63), "invalid_payload"),
    "amount_below_int64": (_payload_with(amount=-(2**63) - 1), "invalid_payload"),
    "amount_float": (_payload_with(amount=50.5), "invalid_payload"),
    "amount_string": (_payload_with(amount="5000"), "invalid_payload"),
    "amount_infinite": (
        b'{"event": "payment.captured", "payload": {"payment": {"entity": {"amount": 1e999}}}}',
        "invalid_json",
    ),
    "amount_nan": (
        b'{"event": "payment.captured", "payload": {"payment": {"entity": {"amount": NaN}}}}',
        "invalid_json",
    ),
    "id_huge_string": (json.dumps(razorpay_event(event_id="e" * 100_000)).encode(), "invalid_payload"),
    "id_huge_number": (json.dumps(razorpay_event() | {"id": 10**300}).encode(), "invalid_payload"),
    "id_number_beyond_double": (json.dumps(razorpay_event() | {"id": 10**400}).encode(), "invalid_json"),
    "payment_id_huge": (_payload_with(id="p" * 100_000), "invalid_payload"),
    "event_type_huge": (json.dumps(razorpay_event(event="e" * 100_000)).encode(), "invalid_payload"),
    "currency_long": (_payload_with(currency="RUPEES"), "invalid_payload"),
    "currency_non_ascii": (_payload_with(currency="ÏÑR"), "invalid_payload"),
    "created_at_string": (
        json.dumps(razorpay_event() | {"created_at": "yesterday"}).encode(),
        "invalid_payload",
    ),
    "top_level_string": (b'"payment.captured"', "invalid_payload"),
    "empty_body": (b"", "invalid_json"),
    "whitespace_body": (b" \r\n\t ", "invalid_json"),
    "bom_prefixed": (b"\xef\xbb\xbf" + json.dumps(razorpay_event()).encode(), "invalid_json"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_signed_bad_bodies_get_400_and_store_nothing(app_client: TestClient, case: str) -> None:
    body, code = BAD_BODIES[case]
    before = stored_bodies(app_client.database_url)  # type: ignore[attr-defined]

    response = app_client.post(
        "/webhooks/razorpay", content=body, headers={"X-Razorpay-Signature": razorpay_signature(body)}
    )

    assert (response.status_code, response.json()["error"]["code"]) == (400, code)
    assert len(response.content) < 1024, "the error echoed the input back"
    assert stored_bodies(app_client.database_url) == before  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "application/json; charset=latin-1",
        "application/xml",
    ],
)
def test_content_type_does_not_matter_the_raw_bytes_are_verified(
    app_client: TestClient, content_type: str | None
) -> None:
    event_id = f"evt_ctype_{uuid.uuid4().hex[:8]}"
    body, headers = razorpay_delivery(razorpay_event(event_id=event_id))
    headers.pop("Content-Type")
    if content_type is not None:
        headers["Content-Type"] = content_type

    response = app_client.post("/webhooks/razorpay", content=body, headers=headers)

    assert response.json() == {"status": "processed", "event_id": event_id}
    assert stored_bodies(app_client.database_url)[event_id] == [body]  # type: ignore[attr-defined]


# --- hostile strings in paths and query parameters ---------------------------------------------------------

INJECTIONS = [
    "' OR '1'='1",
    "razorpay'; DROP TABLE webhook_events;--",
    'razorpay" OR 1=1 --',
    "../../../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "<script>alert(1)</script>",
    "${jndi:ldap://127.0.0.1/a}",
    "{{7*7}}",
    "%00",
    "razorpay%00",
    "%0d%0aSet-Cookie:%20x=1",
    "\u202erazorpay",
    "r" * 5000,
]


@pytest.mark.parametrize("hostile", INJECTIONS)
def test_injection_strings_in_paths_and_queries_are_refused_cleanly(
    app_client: TestClient, hostile: str
) -> None:
    client = app_client
    event_id = f"evt_injection_{uuid.uuid4().hex[:8]}"
    body, headers = razorpay_delivery(razorpay_event(event_id=event_id))
    assert client.post("/webhooks/razorpay", content=body, headers=headers).status_code == 200
    before = stored_bodies(client.database_url)  # type: ignore[attr-defined]
    segment = quote(hostile, safe="%")

    answers = [
        client.post(f"/webhooks/{segment}", content=body, headers=headers),
        client.post(
            f"/webhooks/razorpay?provider={segment}&event_id={segment}", content=body, headers=headers
        ),
        client.get(f"/payments/{segment}"),
        client.get(f"/payments/{segment}/events?after={segment}&limit={segment}"),
        client.get(f"/events/{segment}/{segment}"),
        client.get(f"/events?provider={segment}&status={segment}&since={segment}"),
        client.get(f"/{segment}"),
    ]

    for answer in answers:
        assert answer.status_code < 500, (answer.request.url, answer.text)
        if answer.status_code >= 400:
            assert set(answer.json()["error"]) == {"code", "message"}
        assert "set-cookie" not in answer.headers
    assert answers[0].status_code == 404
    assert answers[1].json() == {"status": "duplicate", "event_id": event_id}
    assert stored_bodies(client.database_url) == before  # type: ignore[attr-defined]


def test_wire_server_log_has_no_tracebacks(wire_server: LoggedServer) -> None:
    """Runs last for each server (module order): nothing above produced an unhandled error."""
    assert wait_until(lambda: wire_server.log() != "", deadline_s=5)
    assert "Traceback" not in wire_server.log()
    assert "internal_error" not in wire_server.log()


# --- systematically: random values where each provider's fields go, signed, through the route -------------

JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(
        [
            "",
            "\x00",
            "INR",
            "usd",
            "€€€",
            "2025-07-07T10:59:25Z",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "1e999",
            "NaN",
            "10.999",
            "-0",
            "payment.captured",
        ]
    )
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


_MISSING = object()
IDENTIFIER = st.text(st.sampled_from("abcXYZ019_-"), min_size=1, max_size=24)
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "id": IDENTIFIER,
    "reference": IDENTIFIER,
    "transaction_reference": IDENTIFIER,
    "payment_id": IDENTIFIER,
    "payment_intent": IDENTIFIER,
    "charge": IDENTIFIER,
    "sale_id": IDENTIFIER,
    "amount": st.integers(0, 10**12),
    "amount_refunded": st.integers(0, 10**12),
    "value": st.sampled_from(["10.99", "500", "0.01"]),
    "total": st.sampled_from(["10.99", "7"]),
    "currency": st.sampled_from(["INR", "usd", "JPY"]),
    "currency_code": st.sampled_from(["USD", "KWD"]),
    "created_at": st.integers(0, 2 * 10**9),
    "created": st.integers(0, 2 * 10**9),
    "create_time": st.just("2025-07-07T10:59:25Z"),
    "paid_at": st.just("2025-07-07T10:59:25.000Z"),
    "timestamp": st.just("2025-07-07T10:59:25+05:30"),
    "status": st.sampled_from(["captured", "succeeded", "COMPLETED", "failed", "won"]),
    "state": st.sampled_from(["completed", "refunded"]),
    "captured": st.booleans(),
    "refunded": st.booleans(),
    "object": st.sampled_from(["charge", "event", "payment_intent"]),
    "links": st.just([{"rel": "up", "href": "https://api.paypal.com/v2/payments/captures/CAP1"}]),
}


def _shape(draw: st.DrawFn, paths: list[str]) -> dict[str, Any]:
    """A provider-shaped object: at each of `paths`, a plausible value, nothing, or any JSON value."""
    payload: dict[str, Any] = {}
    for path in paths:
        *parents, leaf = path.split(".")
        value = draw(st.one_of(PLAUSIBLE.get(leaf, IDENTIFIER), st.just(_MISSING), JSON_VALUE))
        if value is _MISSING:
            continue
        node = payload
        for key in parents:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[leaf] = value
    return payload


PROVIDER_FIELDS = {
    "razorpay": [
        "event",
        "id",
        "created_at",
        "payload.payment.entity.id",
        "payload.payment.entity.status",
        "payload.payment.entity.amount",
        "payload.payment.entity.currency",
        "payload.payment.entity.amount_refunded",
        "payload.refund.entity.payment_id",
        "payload.refund.entity.amount",
        "payload.dispute.entity.payment_id",
        "payload.order.entity.status",
    ],
    "stripe": [
        "id",
        "type",
        "created",
        "object",
        "data.object.id",
        "data.object.status",
        "data.object.amount",
        "data.object.currency",
        "data.object.payment_intent",
        "data.object.charge",
        "data.object.captured",
        "data.object.refunded",
        "data.object.object",
    ],
    "standard": ["type", "timestamp", "data.id", "data.status", "data.amount", "data.currency"],
    "paystack": [
        "event",
        "data.reference",
        "data.transaction_reference",
        "data.status",
        "data.amount",
        "data.currency",
        "data.paid_at",
        "data.created_at",
    ],
    "paypal": [
        "id",
        "event_type",
        "create_time",
        "resource.id",
        "resource.status",
        "resource.state",
        "resource.amount.value",
        "resource.amount.currency_code",
        "resource.amount.total",
        "resource.amount.currency",
        "resource.links",
        "resource.sale_id",
    ],
}
EVENT_TYPES = {
    "razorpay": ["payment.captured", "refund.processed", "payment.dispute.won", "order.paid"],
    "stripe": ["payment_intent.succeeded", "charge.refunded", "charge.dispute.closed", "charge.succeeded"],
    "standard": ["payment.succeeded"],
    "paystack": ["charge.success", "refund.processed"],
    "paypal": ["PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.REFUNDED", "PAYMENT.SALE.COMPLETED"],
}
TYPE_FIELD = {
    "razorpay": "event",
    "stripe": "type",
    "standard": "type",
    "paystack": "event",
    "paypal": "event_type",
}


@st.composite
def provider_payloads(draw: st.DrawFn, provider: str) -> dict[str, Any]:
    payload = _shape(draw, PROVIDER_FIELDS[provider])
    if draw(st.integers(0, 3)):  # mostly a known event type, so the normaliser's deeper branches run
        payload[TYPE_FIELD[provider]] = draw(st.sampled_from(EVENT_TYPES[provider]))
    return payload


def signed_headers(provider: str, body: bytes) -> dict[str, str]:
    if provider == "razorpay":
        return razorpay_headers(body)
    if provider == "stripe":
        return stripe_headers(body)
    if provider == "standard":
        return standard_headers(body)
    if provider == "paystack":
        return paystack_headers(body)
    return paypal_headers(body)


@pytest.fixture(scope="module", params=BACKENDS)
def every_provider_client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp(f"providers-{request.param}")
    with ExitStack() as stack:
        database_url = stack.enter_context(backend_database(request.param, request=request, folder=folder))
        settings = make_settings(
            database_url,
            stripe_webhook_secret=[STRIPE_SECRET],
            standard_webhook_secret=[STANDARD_SECRET],
            paystack_secret_key=[PAYSTACK_SECRET],
            paypal_webhook_id=[PAYPAL_WEBHOOK_ID],
            paypal_cert_path=write_paypal_cert(folder),
        )
        yield stack.enter_context(TestClient(create_app(settings), raise_server_exceptions=False))


@pytest.mark.parametrize("provider", sorted(PROVIDER_FIELDS))
def test_any_signed_payload_gets_200_or_a_documented_400(
    every_provider_client: TestClient, provider: str
) -> None:
    seen: set[tuple[int, str]] = set()

    @settings(
        max_examples=30,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(payload=provider_payloads(provider))
    def deliver(payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        response = every_provider_client.post(
            f"/webhooks/{provider}", content=body, headers=signed_headers(provider, body)
        )
        answer = response.json()
        outcome = (response.status_code, answer.get("status") or answer["error"]["code"])
        assert outcome in {(200, "processed"), (200, "duplicate"), (400, "invalid_payload")}, (
            outcome,
            answer,
        )
        seen.add(outcome)

    deliver()
    # The strategy reaches both sides of the field checks.
    assert (400, "invalid_payload") in seen
    assert (200, "processed") in seen


# --- the pieces on their own: extractors and verifiers never raise anything but their domain error ---------


@settings(max_examples=150, deadline=None)
@given(value=JSON_VALUE)
def test_extractors_return_or_raise_invalid_payload(value: object) -> None:
    readers: list[Callable[[object, str], object]] = [
        fields.text,
        fields.required_text,
        fields.amount,
        fields.currency,
        fields.unix_time,
        fields.iso_time,
    ]
    for reader in readers:
        with contextlib.suppress(InvalidPayload):
            reader(value, "field")
    with contextlib.suppress(ValueError):
        if isinstance(value, str):
            money.decimal_to_minor(value, "USD")


HEADER_TEXT = st.text(st.characters(codec="latin-1"), max_size=80) | st.sampled_from(
    ["t=1,v1=", "t=,v1=ab", "v1,", "v1,====", "t=99999999999999999999999,v1=00", "t=-1,v1=a", "\x00", ""]
)


@settings(max_examples=150, deadline=None)
@given(header=HEADER_TEXT, timestamp=HEADER_TEXT, msg_id=HEADER_TEXT, body=st.binary(max_size=64))
def test_verifiers_raise_only_signature_errors(header: str, timestamp: str, msg_id: str, body: bytes) -> None:
    keys = [security.decode_standard_secret(STANDARD_SECRET)]
    attempts: list[Callable[[], object]] = [
        lambda: security.verify_razorpay(body, header, ["test_secret"]),
        lambda: security.verify_paystack(body, header, [PAYSTACK_SECRET]),
        lambda: security.verify_stripe(body, header, [STRIPE_SECRET], now=time.time(), tolerance=300),
        lambda: security.verify_standard(
            body,
            msg_id=msg_id,
            timestamp=timestamp,
            signature_header=header,
            keys=keys,
            now=time.time(),
            tolerance=300,
        ),
        lambda: security.parse_paypal_headers(
            transmission_id=msg_id,
            transmission_time=timestamp,
            signature_b64=header,
            auth_algo="SHA256withRSA",
        ),
        lambda: security.constant_time_in(header, ["token-a", "token-b"]),
    ]
    for attempt in attempts:
        with contextlib.suppress(SignatureError):
            attempt()
