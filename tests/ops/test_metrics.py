"""GET /metrics: deliveries by provider and outcome, handling time and readiness, in Prometheus text
format; exact totals with several workers; guarded by the read API tokens unless made public."""

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from fastapi.testclient import TestClient
from httpx import Response
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from database import normalise_url
from tests.conftest import LiveServer, free_port
from tests.support import razorpay_delivery, razorpay_event, razorpay_signature

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
STRIPE_SECRET = "whsec_metrics_test"


def parse(exposition: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    return parse(response.text)


def deliveries(samples: Samples) -> dict[tuple[str, str], float]:
    return {
        (labels["provider"], labels["outcome"]): value
        for (name, label_set), value in samples.items()
        if name == "webhook_deliveries_total" and (labels := dict(label_set))
    }


def handled(samples: Samples, provider: str) -> float:
    return samples.get(("webhook_delivery_duration_seconds_count", frozenset({("provider", provider)})), 0.0)


def stripe_delivery(*, age_s: int) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "id": "evt_stripe_metrics",
            "type": "payment_intent.created",
            "created": 1751885965,
            "data": {
                "object": {
                    "id": "pi_1",
                    "object": "payment_intent",
                    "status": "requires_payment_method",
                    "amount": 100,
                    "currency": "usd",
                }
            },
        }
    ).encode()
    timestamp = int(time.time()) - age_s
    signature = hmac.new(STRIPE_SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={timestamp},v1={signature}", "Content-Type": "application/json"}


def post_razorpay(client: TestClient, body: bytes, headers: dict[str, str]) -> Response:
    return client.post("/webhooks/razorpay", content=body, headers=headers)


def signed(body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, {"X-Razorpay-Signature": razorpay_signature(body)}


def drop_events_table(database_url: str) -> None:
    engine = create_engine(normalise_url(database_url))
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE webhook_events"))
    engine.dispose()


VALID = razorpay_delivery(razorpay_event(event_id="evt_metrics_1"))
# Each case: what to send, and the (provider, outcome) it must be counted under.
CASES: dict[str, tuple[Callable[[TestClient], Response], tuple[str, str]]] = {
    "processed": (lambda c: post_razorpay(c, *VALID), ("razorpay", "processed")),
    "signature_missing": (lambda c: post_razorpay(c, VALID[0], {}), ("razorpay", "signature_missing")),
    "signature_invalid": (
        lambda c: post_razorpay(c, VALID[0], {"X-Razorpay-Signature": razorpay_signature(b"other")}),
        ("razorpay", "signature_invalid"),
    ),
    "signature_expired": (
        lambda c: c.post(
            "/webhooks/stripe", content=stripe_delivery(age_s=3600)[0], headers=stripe_delivery(age_s=3600)[1]
        ),
        ("stripe", "signature_expired"),
    ),
    "invalid_json": (lambda c: post_razorpay(c, *signed(b"{not json")), ("razorpay", "invalid_json")),
    "invalid_payload": (lambda c: post_razorpay(c, *signed(b"[1, 2]")), ("razorpay", "invalid_payload")),
    "payload_too_large": (
        lambda c: post_razorpay(c, *signed(b'{"padding": "' + b"x" * 5000 + b'"}')),
        ("razorpay", "payload_too_large"),
    ),
    "unknown_provider": (
        lambda c: c.post("/webhooks/acme", content=VALID[0], headers=VALID[1]),
        ("unknown", "unknown_provider"),
    ),
    "provider_not_configured": (
        lambda c: c.post("/webhooks/paystack", content=VALID[0], headers=VALID[1]),
        ("paystack", "provider_not_configured"),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_delivery_is_counted_under_its_provider_and_outcome(
    client_factory: Callable[..., TestClient], case: str
) -> None:
    client = client_factory(max_body_bytes=4096, stripe_webhook_secret=[STRIPE_SECRET])
    send, (provider, outcome) = CASES[case]
    before = scrape(client)

    response = send(client)

    after = scrape(client)
    expected_status = 200 if outcome == "processed" else response.status_code
    assert response.status_code == expected_status
    if outcome != "processed":
        assert response.json()["error"]["code"] == outcome
    changed = {
        key: after_value - deliveries(before).get(key, 0.0)
        for key, after_value in deliveries(after).items()
        if after_value != deliveries(before).get(key, 0.0)
    }
    assert changed == {(provider, outcome): 1.0}
    assert handled(after, provider) - handled(before, provider) == 1.0


def test_duplicates_and_storage_failures_are_counted(client: TestClient, database_url: str) -> None:
    body, headers = razorpay_delivery(razorpay_event(event_id="evt_metrics_dup"))
    before = deliveries(scrape(client))

    statuses = [post_razorpay(client, body, headers).status_code for _ in range(3)]
    drop_events_table(database_url)  # the next write fails: the delivery must be answered 503, and counted
    failed = post_razorpay(client, *razorpay_delivery(razorpay_event()))

    after = deliveries(scrape(client))
    assert statuses == [200, 200, 200]
    assert failed.status_code == 503
    assert failed.json()["error"]["code"] == "storage_unavailable"
    for outcome, count in (("processed", 1), ("duplicate", 2), ("storage_unavailable", 1)):
        assert after[("razorpay", outcome)] - before.get(("razorpay", outcome), 0.0) == count


def test_each_batch_is_counted_with_its_events_and_write_time(client: TestClient, database_url: str) -> None:
    """Group commit under load shows in two histograms: events per batch and the write's seconds. Each
    sequential delivery is a batch of its own; a GoCardless-style many-event delivery is one batch."""
    before = scrape(client)
    for index in range(3):
        body, headers = razorpay_delivery(razorpay_event(event_id=f"evt_metrics_batch_{index}"))
        assert post_razorpay(client, body, headers).status_code == 200
    after = scrape(client)

    def grew(name: str) -> float:
        key = (
            name,
            frozenset({("database", "postgresql" if database_url.startswith("postgresql") else "sqlite")}),
        )
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("webhook_batch_events_count") == 3
    assert grew("webhook_batch_events_sum") == 3
    assert grew("webhook_batch_write_seconds_count") == 3
    assert 0 < grew("webhook_batch_write_seconds_sum") < 3 * 5.0  # each under the store timeout


def test_every_outcome_of_every_provider_is_exposed_from_the_start(client: TestClient) -> None:
    outcomes = deliveries(scrape(client))
    for provider in ("razorpay", "stripe", "paypal", "standard", "paystack"):
        for outcome in ("processed", "duplicate", "signature_invalid", "storage_unavailable"):
            assert (provider, outcome) in outcomes
    assert ("unknown", "unknown_provider") in outcomes


def test_readiness_follows_the_database(client: TestClient) -> None:
    ready_key = ("webhook_storage_ready", frozenset())
    assert scrape(client)[ready_key] == 1.0

    engine = client.app.state.engine  # type: ignore[attr-defined]
    unreachable = create_engine(
        f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none", connect_args={"connect_timeout": 2}
    )
    client.app.state.engine = unreachable  # type: ignore[attr-defined]
    try:
        not_ready = scrape(client)[ready_key]
        readyz = client.get("/readyz").status_code
    finally:
        client.app.state.engine = engine  # type: ignore[attr-defined]
        unreachable.dispose()
    assert not_ready == 0.0
    assert readyz == 503


def test_exposition_is_prometheus_text_format(client: TestClient) -> None:
    response = client.get("/metrics")

    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE webhook_deliveries_total counter" in response.text
    assert "# TYPE webhook_delivery_duration_seconds histogram" in response.text


@pytest.mark.parametrize(
    ("tokens", "public", "authorization", "status"),
    [
        ([], False, None, 200),
        (["ops-token"], False, None, 401),
        (["ops-token"], False, "Bearer wrong", 401),
        (["old-token", "ops-token"], False, "Bearer ops-token", 200),
        (["ops-token"], True, None, 200),
    ],
)
def test_metrics_take_the_read_api_tokens_unless_public(
    client_factory: Callable[..., TestClient],
    tokens: list[str],
    public: bool,
    authorization: str | None,
    status: int,
) -> None:
    client = client_factory(api_tokens=tokens, metrics_public=public)

    response = client.get("/metrics", headers={"Authorization": authorization} if authorization else {})

    assert response.status_code == status
    if status == 401:
        assert response.json()["error"]["code"] == "unauthorized"
    else:
        assert "webhook_deliveries_total" in response.text


def test_totals_are_exact_whichever_of_two_workers_answers(
    database_url: str, live_server_factory: Callable[..., LiveServer], tmp_path: Path
) -> None:
    directory = tmp_path / "prometheus"  # not created beforehand: the workers create it
    server = live_server_factory(
        {
            "DATABASE_URL": database_url,
            "RAZORPAY_WEBHOOK_SECRET": "test_secret",
            "PROMETHEUS_MULTIPROC_DIR": str(directory),
        },
        workers=2,
    )
    count = 40
    # Ready means one worker answered; each worker makes its counter file as its start-up ends.
    deadline = time.monotonic() + 30
    while len(list(directory.glob("counter_*.db"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # polling for the second worker's start, with a deadline

    def deliver(index: int) -> int:
        body, headers = razorpay_delivery(razorpay_event(event_id=f"evt_workers_{index}"))
        # A new connection per delivery, so that both workers' accept loops take some.
        return requests.post(
            server.url + "/webhooks/razorpay", data=body, headers=headers, timeout=30
        ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(deliver, range(count)))

    assert statuses == [200] * count
    for _ in range(8):  # each scrape on a new connection: any worker may answer
        samples = parse(requests.get(server.url + "/metrics", timeout=10).text)
        assert deliveries(samples)[("razorpay", "processed")] == count
        assert handled(samples, "razorpay") == count
    pids = {path.stem.rsplit("_", 1)[-1] for path in directory.glob("counter_*.db")}
    assert len(pids) == 2
