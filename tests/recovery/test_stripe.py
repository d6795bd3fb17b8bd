"""Stripe recovery: GET /v1/events fills a gap exactly, and a recovered event and its webhook dedupe."""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from models import Event, Payment
from recovery import state
from recovery.stripe import PAYMENT_EVENT_TYPES
from tests.recovery.conftest import Recoverer
from tests.recovery.fake_api import (
    STRIPE_KEY,
    STRIPE_RATE_LIMITED,
    STRIPE_SERVER_ERROR,
    FakeProviders,
    Fault,
    stripe_event,
)
from tests.support import stripe_headers

OUTAGE_START = datetime(2026, 11, 1, tzinfo=UTC)
SINCE, UNTIL = OUTAGE_START - timedelta(hours=1), OUTAGE_START + timedelta(days=1)


def outage(fake: FakeProviders, count: int) -> list[dict[str, object]]:
    """`count` payments succeeded during an outage, a second apart; none of their webhooks arrived."""
    start = int(OUTAGE_START.timestamp())
    events = [stripe_event(i, created=start + i) for i in range(count)]
    fake.stripe_events.extend(events)
    return events


def count(client: TestClient, model: type[Event] | type[Payment], **where: str) -> int:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    stmt = select(func.count()).select_from(model).filter_by(**where)
    with engine.connect() as connection:
        return int(connection.execute(stmt).scalar_one())


def deliver(client: TestClient, event: dict[str, object]) -> str:
    body = json.dumps(event).encode()
    response = client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert response.status_code == 200
    return str(response.json()["status"])


def test_a_gap_of_500_events_is_filled_exactly(app: Callable[..., TestClient], fake: FakeProviders) -> None:
    client = app()
    outage(fake, 500)
    # Events outside the window, and of types that are not about payments, are not asked for.
    fake.stripe_events.append(stripe_event(900, created=int((UNTIL + timedelta(hours=1)).timestamp())))
    fake.stripe_events.append(
        {**stripe_event(901, created=int(OUTAGE_START.timestamp())), "type": "customer.created"}
    )

    report = Recoverer(client)("stripe", since=SINCE, until=UNTIL)

    assert (report.outcome, report.new, report.duplicate, report.pages) == ("ok", 500, 0, 5)
    assert len(report.changed) == 500
    assert count(client, Event, provider="stripe", origin="recovery") == 500
    assert count(client, Event) == 500
    assert count(client, Payment, provider="stripe", status="captured") == 500
    # What Stripe saw: its documented list parameters, the secret key as a bearer token, and each page
    # starting after the last event of the one before.
    calls = fake.requests_to("/v1/events")
    assert len(calls) == 5
    for call in calls:
        assert call.headers["authorization"] == f"Bearer {STRIPE_KEY}"
        assert call.query["created[gte]"] == [str(int(SINCE.timestamp()))]
        assert call.query["created[lt]"] == [str(int(UNTIL.timestamp()))]
        assert call.query["types[]"] == list(PAYMENT_EVENT_TYPES)
        assert call.query["limit"] == ["100"]
        assert "delivery_success" not in call.query
    assert "starting_after" not in calls[0].query
    assert [c.query["starting_after"] for c in calls[1:]] == [
        [f"evt_3Rec{i:08d}"] for i in (400, 300, 200, 100)
    ]


def test_recovered_events_keep_stripe_ids_and_say_how_they_arrived(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    [event] = outage(fake, 1)

    Recoverer(client)("stripe", since=SINCE, until=UNTIL)

    detail = client.get("/events/stripe/evt_3Rec00000000").json()
    assert detail["origin"] == "recovery"
    assert json.loads(detail["raw_body"]) == event
    assert detail["headers"] == {"recovered-from": "GET /v1/events"}
    [listed] = client.get("/payments/pi_3Rec00000000/events").json()
    assert (listed["origin"], listed["status"], listed["event_type"]) == (
        "recovery",
        "captured",
        "payment_intent.succeeded",
    )


def test_late_webhooks_after_recovery_are_all_duplicates(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    events = outage(fake, 20)
    Recoverer(client)("stripe", since=SINCE, until=UNTIL)

    recovered = client.get(f"/events/stripe/{events[0]['id']}").json()
    assert (recovered["delivery_count"], recovered["last_delivered_at"]) == (0, None)

    assert [deliver(client, event) for event in events] == ["duplicate"] * 20
    assert count(client, Event) == 20
    assert count(client, Event, origin="webhook") == 0
    # A recovered copy is not a delivery: each webhook that arrives afterwards is the first.
    delivered = client.get(f"/events/stripe/{events[0]['id']}").json()
    assert delivered["origin"] == "recovery"
    assert delivered["delivery_count"] == 1
    assert delivered["last_delivered_at"] > delivered["received_at"]


def test_recovery_after_the_webhooks_finds_nothing_new(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    events = outage(fake, 20)
    assert [deliver(client, event) for event in events] == ["processed"] * 20

    report = Recoverer(client)("stripe", since=SINCE, until=UNTIL)

    assert (report.new, report.duplicate, report.changed) == (0, 20, [])
    assert count(client, Event, origin="webhook") == 20
    assert count(client, Event) == 20
    detail = client.get(f"/events/stripe/{events[0]['id']}").json()
    assert (detail["delivery_count"], detail["last_delivered_at"]) == (1, detail["received_at"])


def test_a_rate_limit_is_waited_out_as_retry_after_asks(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    outage(fake, 150)
    fake.fail_next("/v1/events", Fault(429, STRIPE_RATE_LIMITED, {"Retry-After": "2"}))
    recover = Recoverer(client)

    report = recover("stripe", since=SINCE, until=UNTIL)

    assert (report.outcome, report.new) == ("ok", 150)
    assert recover.waits == [2.0]
    assert len(fake.requests_to("/v1/events")) == 3  # the 429, then both pages


def test_a_server_error_is_retried_with_backoff(app: Callable[..., TestClient], fake: FakeProviders) -> None:
    client = app()
    outage(fake, 10)
    fake.fail_next("/v1/events", Fault(500, STRIPE_SERVER_ERROR), Fault(503, STRIPE_SERVER_ERROR))
    recover = Recoverer(client)

    report = recover("stripe", since=SINCE, until=UNTIL)

    assert (report.outcome, report.new) == ("ok", 10)
    assert recover.waits == [0.5, 1.0]


def test_a_wrong_key_stops_the_run_naming_the_setting(
    app: Callable[..., TestClient], fake: FakeProviders, caplog: pytest.LogCaptureFixture
) -> None:
    client = app(stripe_api_key="sk_test_wrong_key_123")
    outage(fake, 10)

    report = Recoverer(client)("stripe", since=SINCE, until=UNTIL)

    assert report.outcome == "credentials_refused"
    assert "STRIPE_API_KEY" in report.message
    assert len(fake.requests_to("/v1/events")) == 1  # a 401 is not retried
    assert count(client, Event) == 0
    assert "sk_test_wrong_key_123" not in caplog.text + report.message


def test_undelivered_only_asks_stripe_for_delivery_success_false(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app(stripe_recovery_undelivered_only=True)
    outage(fake, 3)

    Recoverer(client)("stripe", since=SINCE, until=UNTIL)

    assert fake.requests_to("/v1/events")[0].query["delivery_success"] == ["false"]


def test_a_run_that_stops_part_way_resumes_from_the_high_water_mark(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app(recovery_max_retries=1)
    outage(fake, 500)
    engine = client.app.state.engine  # type: ignore[attr-defined]
    recover = Recoverer(client)
    # Stripe fails for good from the third page on: two pages are stored, and the mark does not move.
    fake.go_down("/v1/events", from_call=3, fault=Fault(500, STRIPE_SERVER_ERROR))

    first = recover("stripe", since=SINCE, until=UNTIL)

    assert (first.outcome, first.pages, first.new) == ("provider_unavailable", 2, 200)
    assert state.high_water_mark(engine, provider="stripe") is None
    fake.go_up("/v1/events")

    second = recover("stripe", since=SINCE, until=UNTIL)

    assert (second.outcome, second.new, second.duplicate) == ("ok", 300, 200)
    assert count(client, Event) == 500
    assert state.high_water_mark(engine, provider="stripe") == UNTIL


def test_one_runner_at_a_time(app: Callable[..., TestClient], fake: FakeProviders) -> None:
    client = app()
    outage(fake, 5)
    engine = client.app.state.engine  # type: ignore[attr-defined]
    assert state.take_lease(engine, provider="stripe", owner="instance-a", seconds=60)

    report = Recoverer(client)("stripe", since=SINCE, until=UNTIL, owner="instance-b")

    assert report.outcome == "busy"
    assert fake.requests_to("/v1/events") == []
    state.release_lease(engine, provider="stripe", owner="instance-a")
    assert Recoverer(client)("stripe", since=SINCE, until=UNTIL, owner="instance-b").new == 5


def test_a_provider_without_credentials_is_skipped_with_one_line(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app(stripe_api_key=None)

    report = Recoverer(client)("stripe", since=SINCE, until=UNTIL)

    assert (report.outcome, report.message) == ("skipped", "stripe: skipped, STRIPE_API_KEY not set")
    assert fake.seen == []


def test_a_dry_run_stores_nothing(app: Callable[..., TestClient], fake: FakeProviders) -> None:
    client = app()
    events = outage(fake, 10)
    deliver(client, events[0])

    report = Recoverer(client)("stripe", since=SINCE, until=UNTIL, dry_run=True)

    assert (report.would_store, report.duplicate, report.new) == (9, 1, 0)
    assert count(client, Event) == 1
