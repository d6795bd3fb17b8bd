"""PayPal recovery: the webhook-events list, paged by its links, with an OAuth2 token cached until it
expires and fetched again when PayPal refuses it early."""

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from tests.recovery.conftest import Recoverer
from tests.recovery.fake_api import PAYPAL_CLIENT, FakeProviders, paypal_event
from tests.support import PAYPAL_WEBHOOK_ID, paypal_headers, write_paypal_cert

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)


def outage(fake: FakeProviders, count: int) -> list[dict[str, object]]:
    events = [
        paypal_event(i, create_time=(SINCE + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"))
        for i in range(count)
    ]
    fake.paypal_events.extend(events)
    return events


def test_events_are_read_page_by_page_following_the_next_link(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    outage(fake, 250)
    recover = Recoverer(client)

    report = recover("paypal", since=SINCE, until=UNTIL)

    assert (report.outcome, report.new, report.pages) == ("ok", 250, 3)
    calls = fake.requests_to("/v1/notifications/webhooks-events")
    assert [c.query.get("next_page_token") for c in calls] == [None, ["100"], ["200"]]
    assert calls[0].query == {
        "page_size": ["100"],
        "start_time": ["2026-11-01T00:00:00Z"],
        "end_time": ["2026-11-02T00:00:00Z"],
    }
    # One token, fetched with the client id and secret, carried by every call.
    [token_call] = fake.requests_to("/v1/oauth2/token")
    basic = base64.b64encode(":".join(PAYPAL_CLIENT).encode()).decode()
    assert token_call.headers["authorization"] == f"Basic {basic}"
    assert token_call.body == "grant_type=client_credentials"
    assert {c.headers["authorization"] for c in calls} == {f"Bearer {next(iter(fake.paypal_tokens))}"}
    assert client.get("/events/paypal/WH-0000-RECOVERY-5KH13541YK893784T").json()["origin"] == "recovery"


def test_a_token_about_to_expire_is_not_used(app: Callable[..., TestClient], fake: FakeProviders) -> None:
    client = app()
    outage(fake, 250)
    fake.paypal_token_lifetime = 30  # under the margin: each call needs a new one

    report = Recoverer(client)("paypal", since=SINCE, until=UNTIL)

    assert report.new == 250
    assert len(fake.requests_to("/v1/oauth2/token")) == 3


def test_a_token_refused_early_is_fetched_again_once(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    outage(fake, 250)
    original = fake.paypal_list

    def expire_after_first_page(seen):  # type: ignore[no-untyped-def]
        answer = original(seen)
        if len(fake.requests_to("/v1/notifications/webhooks-events")) == 1:
            fake.paypal_tokens.clear()  # PayPal expired it on its side
        return answer

    fake.paypal_list = expire_after_first_page  # type: ignore[method-assign]

    report = Recoverer(client)("paypal", since=SINCE, until=UNTIL)

    assert (report.outcome, report.new) == ("ok", 250)
    assert len(fake.requests_to("/v1/oauth2/token")) == 2
    statuses = [c.headers["authorization"] for c in fake.requests_to("/v1/notifications/webhooks-events")]
    assert len(statuses) == 4  # page 1, page 2 refused, page 2 with the new token, page 3


def test_wrong_client_credentials_stop_the_run_naming_them(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app(paypal_client_secret="wrong-secret")
    outage(fake, 5)

    report = Recoverer(client)("paypal", since=SINCE, until=UNTIL)

    assert report.outcome == "credentials_refused"
    assert "PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET" in report.message
    assert "wrong-secret" not in report.message
    assert fake.requests_to("/v1/notifications/webhooks-events") == []


def test_a_late_webhook_of_a_recovered_event_is_a_duplicate(
    app: Callable[..., TestClient], fake: FakeProviders, tmp_path: Path
) -> None:
    client = app(paypal_webhook_id=[PAYPAL_WEBHOOK_ID], paypal_cert_path=write_paypal_cert(tmp_path))
    [event] = outage(fake, 1)
    Recoverer(client)("paypal", since=SINCE, until=UNTIL)

    body = json.dumps(event).encode()
    response = client.post("/webhooks/paypal", content=body, headers=paypal_headers(body))

    assert response.json()["status"] == "duplicate"
