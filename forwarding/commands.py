"""What `python -m cli relay` and `python -m cli republish` run."""

import asyncio
from datetime import datetime

from sqlalchemy import Engine

from config import Settings
from forwarding.messages import StoredEvent, event_message
from forwarding.outbox import event_columns, stored_event
from forwarding.relay import Relay
from forwarding.stream import Outcomes, Publisher, connect, ensure_stream
from models import Event
from ops.signals import until_stopped

REPUBLISH_CHUNK = 1000


async def run_relay(engine: Engine, settings: Settings) -> None:
    """The relay on its own, until SIGTERM or SIGINT."""
    relay = Relay(engine, settings)
    await relay.start()
    try:
        await until_stopped()
    finally:
        await relay.stop()


def _chunk(
    engine: Engine, settings: Settings, *, since: datetime, provider: str | None, after: int
) -> list[StoredEvent]:
    query = event_columns(settings.forward_raw_body).where(Event.received_at >= since, Event.id > after)
    if provider is not None:
        query = query.where(Event.provider == provider)
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(Event.id).limit(REPUBLISH_CHUNK)).all()
    return [stored_event(row) for row in rows]


async def republish(engine: Engine, settings: Settings, *, since: datetime, provider: str | None) -> Outcomes:
    """Publish again the events received since `since`, with their own Nats-Msg-Id: within the stream's
    duplicate window they are acknowledged as duplicates, beyond it (a stream lost or purged) stored
    again. State messages are not re-sent."""
    client = await connect(settings)
    total = Outcomes()
    try:
        await ensure_stream(client.jetstream(), settings=settings)
        publisher = Publisher(client)
        after = 0
        while events := await asyncio.to_thread(
            _chunk, engine, settings, since=since, provider=provider, after=after
        ):
            after = events[-1].row_id
            messages = [event_message(event, prefix=settings.nats_subject_prefix) for event in events]
            outcomes = await publisher.publish(messages, stream=settings.nats_stream)
            total.published.update(outcomes.published)
            total.duplicate.update(outcomes.duplicate)
            total.failures.extend(outcomes.failures)
            if outcomes.failures:
                break
    finally:
        await client.close()
    return total
