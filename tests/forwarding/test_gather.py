"""Under load the relay gathers: a cycle that carried many events is followed by FORWARD_GATHER_SECONDS
without reading, so that the next one carries more; a cycle of a few events is not held back."""

import asyncio
import time

import nats
import pytest
from nats.js import JetStreamContext
from sqlalchemy import Engine, insert

from config import Settings
from forwarding.relay import GATHER_AFTER_EVENTS, Relay
from models import Event
from tests.conftest import make_settings
from tests.forwarding.nats_support import NatsServer
from tests.support import event_row

GATHER_SECONDS = 2.0
DEADLINE_SECONDS = 20.0


@pytest.fixture
def settings(database_url: str, nats_server: NatsServer) -> Settings:
    # Never woken by a poll: only the test's wakes and the relay's own pauses start a cycle.
    return make_settings(
        database_url,
        nats_url=nats_server.url,
        forward_gather_seconds=GATHER_SECONDS,
        forward_poll_seconds=3600,
    )


def store(engine: Engine, event_ids: list[str]) -> None:
    """The events in one transaction, each of a payment of its own (one state message each)."""
    with engine.begin() as connection:
        connection.execute(insert(Event), [event_row(event_id) for event_id in event_ids])


async def in_stream(js: JetStreamContext, messages: int) -> float:
    """When the stream first held `messages` messages (time.monotonic), polling with a deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if (await js.stream_info("PAYMENTS")).state.messages >= messages:
            return time.monotonic()
        await asyncio.sleep(0.01)  # polling the stream, not a wait for a race
    raise AssertionError(f"the stream did not reach {messages} messages in {DEADLINE_SECONDS} s")


def test_a_busy_cycle_is_followed_by_the_gather_and_a_quiet_one_is_not(
    engine: Engine, settings: Settings, nats_server: NatsServer
) -> None:
    relay = Relay(engine, settings)

    async def scenario() -> tuple[float, float]:
        await relay.start()
        client = await nats.connect(nats_server.url)
        try:
            js = client.jetstream()
            busy = [f"evt_busy_{n}" for n in range(GATHER_AFTER_EVENTS)]
            store(engine, busy)
            relay.wake()
            await in_stream(js, 2 * len(busy))  # each event and its payment's first state
            # Committed and announced during the gather that follows the busy cycle: it waits for it.
            started = time.monotonic()
            store(engine, ["evt_during_gather"])
            relay.wake()
            gathered = await in_stream(js, 2 * len(busy) + 2) - started
            # After a cycle of one event the relay reads again at the next commit.
            started = time.monotonic()
            store(engine, ["evt_quiet"])
            relay.wake()
            quiet = await in_stream(js, 2 * len(busy) + 4) - started
            return gathered, quiet
        finally:
            await client.close()
            await relay.stop()

    gathered, quiet = asyncio.run(scenario())
    assert gathered >= GATHER_SECONDS / 2
    assert quiet < GATHER_SECONDS / 2
