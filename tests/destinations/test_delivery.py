"""Destinations' promises against real local receivers: each event POSTed signed with Standard Webhooks
(verified by the `standardwebhooks` package), retried through 5xx, timeouts, resets and 429 with
Retry-After, dead when the policy is spent, every attempt recorded, a payment's events in order, and
one slow destination never holding back another."""

from collections import Counter
from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.destinations.conftest import (
    AUTH,
    SECRET,
    Lines,
    attempts,
    destination,
    post,
    states,
    wait_for,
)
from tests.destinations.receiver import OK, Answer, Receiver

AppWith = Callable[..., TestClient]
Receivers = Callable[..., Receiver]


def test_an_event_is_posted_signed_and_a_500_is_retried_with_the_same_webhook_id(
    app_with: AppWith, receivers: Receivers, database_url: str
) -> None:
    receiver = receivers(lambda event, index: Answer(500, body=b"try later") if index == 0 else OK)
    client = app_with(destination("orders", receiver.url))
    event_id = post(client, event="payment.captured", payment_id="pay_1")

    wait_for(lambda: states(database_url).get(("orders", event_id)) == "delivered")
    first, second = receiver.snapshot()
    assert first.verified and second.verified
    assert first.webhook_id == second.webhook_id == f"razorpay:{event_id}"
    assert second.event["event_id"] == event_id
    assert set(second.event) == {
        "provider",
        "event_id",
        "event_type",
        "payment_id",
        "status",
        "provider_status",
        "amount",
        "currency",
        "occurred_at",
        "received_at",
    }
    tried = attempts(database_url)
    assert [(a.attempt, a.outcome, a.status_code, a.error) for a in tried] == [
        (1, "failed", 500, "http_status"),
        (2, "delivered", 200, None),
    ]
    assert tried[0].response_body == "try later"
    assert all(a.latency_ms > 0 for a in tried)

    listed = client.get(f"/events/razorpay/{event_id}/attempts", headers=AUTH)
    assert listed.status_code == 200
    assert [a["outcome"] for a in listed.json()] == ["failed", "delivered"]


def test_a_timeout_and_a_reset_connection_are_failed_attempts_and_retried(
    app_with: AppWith, receivers: Receivers, database_url: str
) -> None:
    slow = receivers(lambda event, index: Answer(hold=True) if index == 0 else OK)
    resetting = receivers(lambda event, index: Answer(reset=True) if index == 0 else OK)
    client = app_with(
        destination("slow", slow.url, timeout_seconds=0.5),
        destination("resetting", resetting.url),
    )
    event_id = post(client, payment_id="pay_2")

    wait_for(
        lambda: (
            states(database_url) == {("slow", event_id): "delivered", ("resetting", event_id): "delivered"}
        )
    )
    by_destination = {(a.destination, a.attempt): a.error for a in attempts(database_url)}
    assert by_destination == {
        ("slow", 1): "timeout",
        ("slow", 2): None,
        ("resetting", 1): "connection_reset",
        ("resetting", 2): None,
    }


def test_429_with_retry_after_is_honoured(app_with: AppWith, receivers: Receivers, database_url: str) -> None:
    receiver = receivers(lambda event, index: Answer(429, headers={"Retry-After": "1"}) if index == 0 else OK)
    # Backoff alone would retry within 0.05 s: only Retry-After makes the second attempt wait a second.
    client = app_with(
        destination("orders", receiver.url, backoff_base_seconds=0.01, backoff_max_seconds=0.05)
    )
    event_id = post(client, payment_id="pay_3")

    wait_for(lambda: states(database_url).get(("orders", event_id)) == "delivered")
    first, second = receiver.snapshot()
    assert second.at - first.at >= 0.95
    assert [a.status_code for a in attempts(database_url)] == [429, 200]


def test_a_destination_down_for_the_whole_test_makes_events_dead_then_replay_delivers_them_once(
    app_with: AppWith, receivers: Receivers, database_url: str, destination_log: Lines
) -> None:
    from tests.conftest import free_port

    port = free_port()  # nothing listens here until the receiver starts below
    url = f"http://127.0.0.1:{port}/hooks/payments"
    client = app_with(destination("orders", url, max_attempts=3))
    ids = [post(client, payment_id=f"pay_d{n}") for n in range(3)]

    wait_for(lambda: sorted(states(database_url).values()) == ["dead"] * 3)
    tried = attempts(database_url)
    assert len(tried) == 9
    assert {a.error for a in tried} == {"connect_error"}
    assert sorted((a.event_id, a.attempt) for a in tried) == sorted((i, n) for i in ids for n in (1, 2, 3))
    dead = client.get("/destinations/orders/dead", headers=AUTH)
    assert dead.status_code == 200
    assert [d["event_id"] for d in dead.json()] == ids
    assert all(d["attempts"] == 3 and d["last_error"] == "connect_error" for d in dead.json())
    (listed,) = client.get("/destinations", headers=AUTH).json()
    assert (listed["state"], listed["dead"], listed["backlog"]) == ("failing", 3, 0)
    assert listed["host"] == f"127.0.0.1:{port}"

    receiver = receivers(port=port)
    replay = client.post("/destinations/orders/replay", json={"dead_only": True}, headers=AUTH)
    assert replay.status_code == 200, replay.text
    assert replay.json()["queued"] == 3
    wait_for(lambda: sorted(states(database_url).values()) == ["delivered"] * 3)
    assert sorted(r.webhook_id for r in receiver.delivered()) == sorted(f"razorpay:{i}" for i in ids)
    assert all(r.verified for r in receiver.snapshot())
    # The attempt numbers go on from the dead round's.
    assert sorted(a.attempt for a in attempts(database_url) if a.outcome == "delivered") == [4, 4, 4]
    # One line when it started failing, one when it recovered: not one per event or attempt.
    warnings = destination_log.warnings()
    assert len(warnings) == 2, warnings
    assert "is failing: connect_error" in warnings[0]
    assert "recovered" in warnings[1]
    assert client.get("/destinations", headers=AUTH).json()[0]["state"] == "healthy"


def test_a_payments_events_wait_for_an_earlier_one_that_retries_and_other_payments_do_not(
    app_with: AppWith, receivers: Receivers, database_url: str
) -> None:
    first_tries = {"evt_p1": 3}

    def script(event: dict[str, object], index: int) -> Answer:
        left = first_tries.get(str(event.get("event_id")), 0)
        if left:
            first_tries[str(event["event_id"])] = left - 1
            return Answer(503)
        return OK

    receiver = receivers(script)
    client = app_with(destination("orders", receiver.url, backoff_base_seconds=0.2, backoff_max_seconds=0.3))
    post(client, event="payment.authorized", payment_id="pay_o", event_id="evt_p1", created_at=100)
    post(client, event="payment.captured", payment_id="pay_o", event_id="evt_p2", created_at=200)
    post(client, event="payment.failed", payment_id="pay_o", event_id="evt_p3", created_at=300)
    post(client, event="payment.captured", payment_id="pay_other", event_id="evt_q1")

    wait_for(lambda: set(states(database_url).values()) == {"delivered"})
    delivered = [r.event["event_id"] for r in receiver.delivered()]
    assert [e for e in delivered if e.startswith("evt_p")] == ["evt_p1", "evt_p2", "evt_p3"]
    # The unrelated payment went while evt_p1 was still being retried.
    assert delivered.index("evt_q1") < delivered.index("evt_p1")
    arrivals = [r.event.get("event_id") for r in receiver.snapshot()]
    assert arrivals.index("evt_p2") > max(i for i, e in enumerate(arrivals) if e == "evt_p1")


def test_a_slow_destination_does_not_delay_a_fast_one(
    app_with: AppWith, receivers: Receivers, database_url: str
) -> None:
    slow = receivers(lambda event, index: Answer(hold=True))
    fast = receivers()
    client = app_with(
        destination("slow", slow.url, timeout_seconds=10, max_in_flight=1),
        destination("fast", fast.url),
    )
    for n in range(20):
        post(client, payment_id=f"pay_s{n}")

    def backlog() -> dict[str, int]:
        return {d["name"]: d["backlog"] for d in client.get("/destinations", headers=AUTH).json()}

    wait_for(lambda: backlog() == {"slow": 20, "fast": 0}, deadline_s=5)
    assert len(fast.delivered()) == 20
    # The slow one holds its first request still, and has been sent nothing more.
    assert len(slow.snapshot()) == 1


def test_filters_choose_what_each_destination_is_sent(
    app_with: AppWith, receivers: Receivers, database_url: str
) -> None:
    receiver = receivers()
    everything = receivers()
    client = app_with(
        destination(
            "captures", receiver.url, providers=["razorpay"], event_types=["payment.*"], statuses=["captured"]
        ),
        destination("everything", everything.url),
    )
    post(client, event="payment.captured", payment_id="pay_f1", event_id="evt_f1")
    post(client, event="payment.authorized", payment_id="pay_f2", event_id="evt_f2")
    post(client, event="refund.created", payment_id="pay_f3", event_id="evt_f3")
    wait_for(lambda: len(everything.delivered()) == 3)
    wait_for(lambda: len(receiver.delivered()) == 1)
    assert receiver.delivered()[0].event["event_id"] == "evt_f1"
    assert ("captures", "evt_f2") not in states(database_url)


def test_a_paused_destination_keeps_its_events_and_delivers_them_on_resume(
    app_with: AppWith, receivers: Receivers, database_url: str
) -> None:
    receiver = receivers()
    client = app_with(destination("orders", receiver.url))
    assert client.post("/destinations/orders/pause", headers=AUTH).json() == {
        "name": "orders",
        "paused": True,
    }
    ids = [post(client, payment_id=f"pay_p{n}") for n in range(3)]
    wait_for(lambda: len(states(database_url)) == 3)
    (listed,) = client.get("/destinations", headers=AUTH).json()
    assert (listed["state"], listed["backlog"]) == ("paused", 3)
    # A replay of the same filter while its events are pending queues nothing twice.
    first = client.post("/destinations/orders/replay", json={"provider": "razorpay"}, headers=AUTH).json()
    again = client.post("/destinations/orders/replay", json={"provider": "razorpay"}, headers=AUTH).json()
    assert first["queued"] == 0  # all three are pending already
    assert again["repeated"] is False
    assert receiver.snapshot() == []

    assert client.post("/destinations/orders/resume", headers=AUTH).json()["paused"] is False
    wait_for(lambda: len(receiver.delivered()) == 3)
    assert sorted(r.event["event_id"] for r in receiver.delivered()) == sorted(ids)


def test_replaying_delivered_events_is_idempotent_while_it_runs(
    app_with: AppWith, receivers: Receivers, database_url: str
) -> None:
    receiver = receivers()
    client = app_with(destination("orders", receiver.url))
    ids = [post(client, payment_id=f"pay_r{n}") for n in range(3)]
    wait_for(lambda: list(states(database_url).values()) == ["delivered"] * 3)
    client.post("/destinations/orders/pause", headers=AUTH)
    wanted = {"provider": "razorpay", "since": "2000-01-01T00:00:00Z"}
    first = client.post("/destinations/orders/replay", json=wanted, headers=AUTH).json()
    again = client.post("/destinations/orders/replay", json=wanted, headers=AUTH).json()
    assert (first["queued"], first["repeated"]) == (3, False)
    assert again == {**first, "repeated": True}
    client.post("/destinations/orders/resume", headers=AUTH)
    # Recorded, not only received: the replay is over when no event of it is pending.
    wait_for(lambda: sum(a.outcome == "delivered" for a in attempts(database_url)) == 6)
    assert sorted(r.webhook_id for r in receiver.delivered()) == sorted(f"razorpay:{i}" for i in ids * 2)
    # Done: the same filter replays again.
    assert client.post("/destinations/orders/replay", json=wanted, headers=AUTH).json()["repeated"] is False


def test_unknown_destinations_and_events_are_404_in_the_one_error_shape(
    app_with: AppWith, receivers: Receivers
) -> None:
    client = app_with(destination("orders", receivers().url))
    for method, path in [
        ("GET", "/destinations/nope/dead"),
        ("POST", "/destinations/nope/replay"),
        ("POST", "/destinations/nope/pause"),
        ("POST", "/destinations/nope/resume"),
    ]:
        response = client.request(method, path, json={} if path.endswith("replay") else None, headers=AUTH)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "destination_not_found"
    missing = client.get("/events/razorpay/evt_missing/attempts", headers=AUTH)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "event_not_found")
    assert client.get("/destinations").status_code == 401


def test_metrics_show_backlog_attempts_and_dead(
    app_with: AppWith, receivers: Receivers, database_url: str
) -> None:
    import uuid

    from tests.conftest import free_port

    # Counters live as long as the process: names of this test's own.
    down, up = f"down-{uuid.uuid4().hex[:8]}", f"up-{uuid.uuid4().hex[:8]}"
    url = f"http://127.0.0.1:{free_port()}/down"
    client = app_with(destination(down, url, max_attempts=2), destination(up, receivers().url))
    post(client, payment_id="pay_m")
    wait_for(lambda: sorted(states(database_url).values()) == ["dead", "delivered"])
    text = client.get("/metrics", headers=AUTH).text
    assert f'destination_attempts_total{{destination="{down}",outcome="connect_error"}} 2.0' in text
    assert f'destination_attempts_total{{destination="{up}",outcome="delivered"}} 1.0' in text
    assert f'destination_dead_total{{destination="{down}"}} 1.0' in text
    assert f'destination_backlog{{destination="{up}"}} 0.0' in text


def test_redirects_are_not_followed_answers_are_kept_to_1_kib_and_nothing_secret_is_logged(
    app_with: AppWith, receivers: Receivers, database_url: str, destination_log: Lines
) -> None:
    elsewhere = receivers()
    redirecting = receivers(lambda event, index: Answer(307, headers={"Location": elsewhere.url}))
    talkative = receivers(lambda event, index: Answer(200, body=b"x" * 100_000))
    client = app_with(
        destination("redirecting", redirecting.url, max_attempts=3),
        destination("talkative", talkative.url),
    )
    event_id = post(client, payment_id="pay_safe", amount=123456)
    wait_for(
        lambda: (
            states(database_url) == {("redirecting", event_id): "dead", ("talkative", event_id): "delivered"}
        )
    )
    assert elsewhere.snapshot() == []
    tried = attempts(database_url)
    assert {(a.destination, a.status_code, a.error) for a in tried} == {
        ("redirecting", 307, "http_status"),
        ("talkative", 200, None),
    }
    (kept,) = [a.response_body for a in tried if a.destination == "talkative"]
    assert kept == "x" * 1024
    logged = "\n".join(r.getMessage() for r in destination_log.records)
    assert "redirecting" in logged  # the failing line was written...
    for secret_or_payload in (SECRET, SECRET.removeprefix("whsec_"), event_id, "123456", "pay_safe"):
        assert secret_or_payload not in logged  # ...without the secret or anything of the event


def test_https_to_a_plain_http_server_is_a_tls_failure(
    app_with: AppWith, receivers: Receivers, database_url: str
) -> None:
    plain = receivers()
    client = app_with(destination("tls", plain.url.replace("http://", "https://"), max_attempts=1))
    event_id = post(client, payment_id="pay_tls")
    wait_for(lambda: states(database_url) == {("tls", event_id): "dead"})
    assert [a.error for a in attempts(database_url)] == ["tls_error"]


def test_two_instances_on_one_database_deliver_each_event_once(
    app_with: AppWith, receivers: Receivers, database_url: str
) -> None:
    receiver = receivers()
    entry = destination("orders", receiver.url)
    first, second = app_with(entry), app_with(entry)
    ids = [post(first if n % 2 else second, payment_id=f"pay_i{n}") for n in range(20)]
    wait_for(lambda: list(states(database_url).values()) == ["delivered"] * 20)
    assert Counter(r.webhook_id for r in receiver.delivered()) == Counter(f"razorpay:{i}" for i in ids)


def test_an_owed_event_that_retention_deleted_is_dead_and_its_payment_goes_on(
    app_with: AppWith, receivers: Receivers, database_url: str
) -> None:
    from sqlalchemy import create_engine, delete

    from database import normalise_url
    from models import Event

    receiver = receivers()
    client = app_with(destination("orders", receiver.url))
    client.post("/destinations/orders/pause", headers=AUTH)
    post(client, event="payment.authorized", payment_id="pay_gone", event_id="evt_gone", created_at=100)
    post(client, event="payment.captured", payment_id="pay_gone", event_id="evt_kept", created_at=200)
    wait_for(lambda: len(states(database_url)) == 2)
    engine = create_engine(normalise_url(database_url))
    with engine.begin() as connection:
        connection.execute(delete(Event).where(Event.event_id == "evt_gone"))
    engine.dispose()
    client.post("/destinations/orders/resume", headers=AUTH)
    wait_for(
        lambda: states(database_url) == {("orders", "evt_gone"): "dead", ("orders", "evt_kept"): "delivered"}
    )
    assert [r.event["event_id"] for r in receiver.delivered()] == ["evt_kept"]


def test_no_more_than_max_in_flight_requests_at_once(
    app_with: AppWith, receivers: Receivers, database_url: str
) -> None:
    receiver = receivers(lambda event, index: Answer(hold=True))
    client = app_with(destination("narrow", receiver.url, max_in_flight=2, timeout_seconds=1, max_attempts=1))
    client.post("/destinations/narrow/pause", headers=AUTH)
    for n in range(6):
        post(client, payment_id=f"pay_n{n}")
    wait_for(lambda: len(states(database_url)) == 6)
    client.post("/destinations/narrow/resume", headers=AUTH)  # six due at once
    wait_for(lambda: len(attempts(database_url)) >= 4)
    started = sorted(a.attempted_at for a in attempts(database_url))
    # Two at once; the next two only once those two timed out a second later.
    assert (started[2] - started[0]).total_seconds() >= 0.9
    assert (started[1] - started[0]).total_seconds() < 0.5
