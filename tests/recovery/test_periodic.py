"""RECOVERY_INTERVAL: a moving window from the high-water mark, one runner at a time."""

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from models import Event
from recovery import state
from recovery.periodic import PeriodicRecovery
from tests.recovery.fake_api import FakeProviders, stripe_event


def stored(client: TestClient) -> int:
    with client.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        return int(connection.execute(select(func.count()).select_from(Event)).scalar_one())


def test_each_pass_reads_on_from_the_high_water_mark(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app(recovery_overlap_seconds=300)
    recovery: PeriodicRecovery = client.app.state.recovery  # type: ignore[attr-defined]
    engine = client.app.state.engine  # type: ignore[attr-defined]
    now = int(datetime.now(UTC).timestamp())
    fake.stripe_events.extend(stripe_event(i, created=now - 3600 + i) for i in range(5))
    fake.stripe_events.append(stripe_event(99, created=now - 2 * 86_400))  # before the first lookback

    [first] = [r for r in client.portal.call(recovery.run_once) if r.provider == "stripe"]  # type: ignore[union-attr]
    mark = state.high_water_mark(engine, provider="stripe")
    # Listed by Stripe only after the first pass, created within the overlap.
    fake.stripe_events.extend(stripe_event(i, created=now - 20 + i) for i in range(10, 13))
    [second] = [r for r in client.portal.call(recovery.run_once) if r.provider == "stripe"]  # type: ignore[union-attr]

    assert (first.new, second.new) == (5, 3)
    assert mark is not None and first.since is not None and second.since is not None
    assert abs(first.since - (mark - timedelta(days=1))) < timedelta(seconds=5)
    assert second.since == mark - timedelta(seconds=300)
    # Only configured providers are read; the fake has every provider's credentials.
    assert {r.provider for r in client.portal.call(recovery.run_once)} == {  # type: ignore[union-attr]
        "stripe",
        "paypal",
        "razorpay",
        "paystack",
    }


def test_the_service_runs_it_every_interval(app: Callable[..., TestClient], fake: FakeProviders) -> None:
    now = int(datetime.now(UTC).timestamp())
    fake.stripe_events.extend(stripe_event(i, created=now - 60 + i) for i in range(4))

    client = app(recovery_interval=0.2)

    deadline = time.monotonic() + 10
    while stored(client) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)  # polling for the background pass, not waiting out a race
    assert stored(client) == 4
    while len(fake.requests_to("/v1/events")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(fake.requests_to("/v1/events")) >= 2
