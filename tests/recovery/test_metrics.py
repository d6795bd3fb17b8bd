"""recovery_runs_total and recovery_events_total, on /metrics."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from tests.recovery.conftest import Recoverer
from tests.recovery.fake_api import FakeProviders, stripe_event

SINCE = datetime(2026, 11, 1, tzinfo=UTC)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_runs_and_events_are_counted(app: Callable[..., TestClient], fake: FakeProviders) -> None:
    client = app()
    fake.stripe_events.extend(stripe_event(i, created=int(SINCE.timestamp()) + i) for i in range(3))
    runs = sample("recovery_runs_total", provider="stripe", outcome="ok")
    new = sample("recovery_events_total", provider="stripe", result="new")
    duplicates = sample("recovery_events_total", provider="stripe", result="duplicate")
    recover = Recoverer(client)

    recover("stripe", since=SINCE, until=SINCE + timedelta(days=1))
    recover("stripe", since=SINCE, until=SINCE + timedelta(days=1))

    assert sample("recovery_runs_total", provider="stripe", outcome="ok") == runs + 2
    assert sample("recovery_events_total", provider="stripe", result="new") == new + 3
    assert sample("recovery_events_total", provider="stripe", result="duplicate") == duplicates + 3
    text = client.get("/metrics").text
    assert 'recovery_runs_total{outcome="ok",provider="stripe"}' in text
    assert 'recovery_events_total{provider="stripe",result="new"}' in text
