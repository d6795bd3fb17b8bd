"""Destinations beside forwarding to NATS: two readers of one outbox, each from its own cursor. Every
event reaches both, and PostgreSQL's record of committed batches is trimmed only once both passed it."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select

from database import normalise_url
from models import ForwardBatch
from tests.destinations.conftest import destination, post, states, wait_for
from tests.destinations.receiver import Receiver
from tests.forwarding.nats_support import NatsServer, msg_ids, read_stream, stream_count


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


def batches_left(database_url: str) -> int:
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(ForwardBatch)).scalar_one())
    finally:
        engine.dispose()


def test_every_event_reaches_the_stream_and_the_destination(
    app_with: Callable[..., TestClient],
    receivers: Callable[..., Receiver],
    nats_server: NatsServer,
    database_url: str,
) -> None:
    receiver = receivers()
    client = app_with(destination("orders", receiver.url), nats_url=nats_server.url)
    ids = [post(client, event="payment.captured", payment_id=f"pay_n{n}") for n in range(10)]
    wait_for(lambda: list(states(database_url).values()) == ["delivered"] * 10)
    wait_for(lambda: stream_count(nats_server.url) >= 20)  # an event and a state message each
    published = msg_ids(read_stream(nats_server.url))
    assert {f"razorpay:{i}" for i in ids} <= set(published)
    assert sorted(r.webhook_id for r in receiver.delivered()) == sorted(f"razorpay:{i}" for i in ids)
    wait_for(lambda: batches_left(database_url) == 0)
