"""Recovery against the local fake of the providers' APIs, on the app's own writer and database."""

from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recovery.run import Report, run
from recovery.sources import build_sources
from tests.recovery.fake_api import PAYPAL_CLIENT, PAYSTACK_KEY, RAZORPAY_KEY, STRIPE_KEY, FakeProviders
from tests.support import STRIPE_SECRET


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    with FakeProviders() as api:
        yield api


def recovery_settings(fake: FakeProviders, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "stripe_webhook_secret": [STRIPE_SECRET],
        "stripe_api_key": STRIPE_KEY,
        "stripe_api_base": fake.url,
        "razorpay_key_id": RAZORPAY_KEY[0],
        "razorpay_key_secret": RAZORPAY_KEY[1],
        "razorpay_api_base": fake.url,
        "paypal_client_id": PAYPAL_CLIENT[0],
        "paypal_client_secret": PAYPAL_CLIENT[1],
        "paypal_api_base": fake.url,
        "paystack_secret_key": [PAYSTACK_KEY],
        "paystack_api_base": fake.url,
        "recovery_timeout_seconds": 5,
    }
    values.update(overrides)
    return values


@pytest.fixture
def app(client_factory: Callable[..., TestClient], fake: FakeProviders) -> Callable[..., TestClient]:
    """`app(**settings)`: the service on this test's database, its recovery pointed at the fake."""
    return lambda **overrides: client_factory(**recovery_settings(fake, **overrides))


class Recoverer:
    """Runs recovery in the app's event loop, with its writer and engine, as the periodic runner does;
    waits are recorded instead of slept."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.waits: list[float] = []
        self.sources = build_sources(client.app.state.settings, sleep=self.waits.append)  # type: ignore[attr-defined]

    def __call__(
        self,
        provider: str,
        *,
        since: datetime,
        until: datetime,
        owner: str = "test",
        lease_seconds: float = 60,
        **options: Any,
    ) -> Report:
        state = self.client.app.state  # type: ignore[attr-defined]
        work = partial(
            run,
            source=self.sources[provider],
            store=state.writer,
            engine=state.engine,
            since=since,
            until=until,
            owner=owner,
            lease_seconds=lease_seconds,
            **options,
        )
        return self.client.portal.call(work)  # type: ignore[union-attr]
