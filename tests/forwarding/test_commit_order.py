"""On PostgreSQL ids come from a sequence before commit: a batch that commits late can hold a lower id
than one already published. The relay must neither skip it nor publish anything uncommitted."""

import asyncio
import time

import pytest
from sqlalchemy import Connection, Engine, insert

from config import Settings
from forwarding.outbox import Outbox
from forwarding.relay import Relay
from models import Event
from tests.conftest import make_settings
from tests.forwarding.nats_support import NatsServer, msg_ids, read_stream
from tests.support import event_row

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def settings(database_url: str, nats_server: NatsServer) -> Settings:
    return make_settings(database_url, nats_url=nats_server.url)


def insert_event(connection: Connection, event_id: str) -> int:
    row_id: int = connection.execute(
        insert(Event).values(event_row(event_id)).returning(Event.id)
    ).scalar_one()
    return row_id


def published(outbox: Outbox) -> list[str]:
    """Drain the outbox as the relay does (without NATS): the event ids, in publish order."""
    order = []
    while (pending := outbox.pending(limit=100)) is not None:
        order.extend(event.event_id for event in pending.events)
        outbox.advance(pending, {})
    return order


def published_at_least(outbox: Outbox, count: int, deadline_s: float = 10.0) -> list[str]:
    """Drain until `count` events came out. The horizon is the server's oldest running transaction, in
    any database: other work on a shared test server can hold it back for a moment."""
    order: list[str] = []
    deadline = time.monotonic() + deadline_s
    while len(order) < count and time.monotonic() < deadline:
        order.extend(published(outbox))
        time.sleep(0.02)  # polling the horizon, not a wait for a race
    return order + published(outbox)


def test_a_batch_committing_late_with_a_lower_id_is_published_not_skipped(
    engine: Engine, settings: Settings
) -> None:
    outbox = Outbox(engine, stream="PAYMENTS", raw_body=False)
    outbox.start()
    with engine.connect() as early, engine.connect() as late:
        late.begin()
        late_id = insert_event(late, "evt_late")  # the lower id, not committed yet
        with early.begin():
            early_id = insert_event(early, "evt_early")
        assert late_id < early_id
        # A cursor on "id > last published" would publish evt_early now and never see evt_late.
        # Here nothing is published while a transaction that began earlier is still open.
        assert published(outbox) == []
        late.commit()
    assert published_at_least(outbox, 2) == ["evt_late", "evt_early"]
    assert published(outbox) == []
    outbox.close()


def test_a_rolled_back_batch_is_never_published(engine: Engine) -> None:
    outbox = Outbox(engine, stream="PAYMENTS", raw_body=False)
    outbox.start()
    with engine.connect() as rolled_back, engine.connect() as committed:
        rolled_back.begin()
        insert_event(rolled_back, "evt_rolled_back")
        with committed.begin():
            insert_event(committed, "evt_committed")
        rolled_back.rollback()
    assert published_at_least(outbox, 1) == ["evt_committed"]
    outbox.close()


def test_the_relay_publishes_the_interleaving_exactly_once(
    engine: Engine, settings: Settings, nats_server: NatsServer
) -> None:
    # A relay that is never woken and polls hourly: the test drives publish_next itself.
    relay = Relay(engine, settings.model_copy(update={"forward_poll_seconds": 3600}))

    async def scenario() -> tuple[int, int, int]:
        await relay.start()
        try:
            with engine.connect() as early, engine.connect() as late:
                late.begin()
                insert_event(late, "evt_late")
                with early.begin():
                    insert_event(early, "evt_early")
                while_open = await relay.publish_next()
                late.commit()
            after_commit = 0
            deadline = time.monotonic() + 10
            while after_commit < 2 and time.monotonic() < deadline:
                after_commit += await relay.publish_next()
                await asyncio.sleep(0.02)  # polling the horizon (see published_at_least)
            return while_open, after_commit, await relay.publish_next()
        finally:
            await relay.stop()

    assert asyncio.run(scenario()) == (0, 2, 0)
    messages = read_stream(nats_server.url)
    assert msg_ids(messages) == {
        "razorpay:evt_late": 1,
        "razorpay:evt_early": 1,
        "state:razorpay:evt_late": 1,
        "state:razorpay:evt_early": 1,
    }
    events = [m.body["event_id"] for m in messages if m.subject.startswith("payments.events.")]
    assert events == ["evt_late", "evt_early"]
