"""The API client's manners: Retry-After honoured within reason, every call timed out."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from errors import ProviderUnavailable
from providers.stripe import _STATUS_BY_EVENT
from recovery.http import retry_after
from recovery.stripe import PAYMENT_EVENT_TYPES
from tests.recovery.conftest import Recoverer
from tests.recovery.fake_api import STRIPE_RATE_LIMITED, FakeProviders, Fault, stripe_event

SINCE = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "wait"),
    [("3", 3.0), ("0", 0.0), (None, 0.5), ("Wed, 21 Oct 2026 07:28:00 GMT", 0.5), ("-1", 0.0)],
)
def test_retry_after_is_read_as_seconds(header: str | None, wait: float) -> None:
    assert retry_after(header, default=0.5) == wait


def test_a_retry_after_too_long_stops_the_run_instead_of_waiting() -> None:
    with pytest.raises(ProviderUnavailable, match="asked to wait 3600 s"):
        retry_after("3600", default=0.5)


def test_a_long_retry_after_ends_the_run_as_provider_unavailable(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    fake.fail_next("/v1/events", Fault(429, STRIPE_RATE_LIMITED, {"Retry-After": "3600"}))
    recover = Recoverer(client)

    report = recover("stripe", since=SINCE, until=SINCE + timedelta(days=1))

    assert report.outcome == "provider_unavailable"
    assert recover.waits == []


def test_every_call_is_timed_out(app: Callable[..., TestClient], fake: FakeProviders) -> None:
    client = app(recovery_timeout_seconds=0.2, recovery_max_retries=1)
    fake.stripe_events.append(stripe_event(1, created=int(SINCE.timestamp())))
    fake.latency = 1.0
    recover = Recoverer(client)

    report = recover("stripe", since=SINCE, until=SINCE + timedelta(days=1))

    assert report.outcome == "provider_unavailable"
    assert "ReadTimeout after 2 attempts" in report.message
    assert recover.waits == [0.5]


@pytest.mark.parametrize("provider", ["stripe", "razorpay", "paypal", "paystack"])
def test_an_answer_that_is_not_json_ends_the_run_as_provider_unavailable(
    app: Callable[..., TestClient], fake: FakeProviders, provider: str
) -> None:
    client = app()
    page = b"<html><body>502 Bad Gateway</body></html>"
    for path in ("/v1/events", "/v1/payments", "/v1/notifications/webhooks-events", "/transaction"):
        fake.fail_next(path, Fault(200, page))

    report = Recoverer(client)(provider, since=SINCE, until=SINCE + timedelta(days=1))

    assert report.outcome == "provider_unavailable"
    assert "not JSON" in report.message


def test_recovery_asks_stripe_for_every_event_type_the_adapter_reads() -> None:
    assert set(_STATUS_BY_EVENT) <= set(PAYMENT_EVENT_TYPES)
    assert len(PAYMENT_EVENT_TYPES) <= 20  # Stripe's limit on types[]
