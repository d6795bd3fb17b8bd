"""When a destination's worker reads again. A commit that lands while its read is under way: that read
cannot have seen its events, so the worker reads again at once rather than sleeping until its poll on
what the read found. And a payment's next event, once the one before it is delivered: it is sent
without waiting for that outcome to be recorded."""

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from destinations import attempts, filters
from destinations.file import Destination
from destinations.worker import Read, Worker
from models import Event
from tests.destinations.conftest import SECRET
from tests.destinations.receiver import Receiver
from tests.support import event_row

POLL_SECONDS = 60.0  # far longer than the test waits: only a wake can explain a delivery in time
DEADLINE_SECONDS = 10.0


def store_an_event(engine: Engine, worker: Worker) -> Callable[[], None]:
    """A commit of the ingest writer: an event stored, then the worker told it may be owed."""
    with engine.begin() as connection:
        connection.execute(insert(Event), [event_row("evt_during_read")])
    return worker.owed


def run_with_a_change_during_the_first_read(
    engine: Engine, destination: Destination, change: Callable[[Engine, Worker], Callable[[], None]]
) -> None:
    """Run a worker until the destination has its event delivered, with `change` made after the first
    read's statements and before its result reaches the loop; the wake `change` returns is then called
    on the loop, as the writer's commit or the resume route calls it."""
    changed = threading.Event()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        worker = Worker(engine, destination, poll_seconds=POLL_SECONDS)  # its HTTP client needs the loop
        real_read = worker._read

        def read_then_change(**arguments: Any) -> Read:
            found = real_read(**arguments)
            if not changed.is_set():
                changed.set()
                loop.call_soon_threadsafe(change(engine, worker))
            return found

        worker._read = read_then_change  # type: ignore[method-assign]
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(_delivered(engine), DEADLINE_SECONDS)
        finally:
            await worker.stop()
            await asyncio.wait_for(task, DEADLINE_SECONDS)

    asyncio.run(scenario())


async def _delivered(engine: Engine) -> None:
    """Until every owed delivery is recorded as delivered."""

    def states() -> set[str]:
        with engine.connect() as connection:
            return {row[0] for row in connection.exec_driver_sql("SELECT state FROM destination_deliveries")}

    while await asyncio.to_thread(states) != {attempts.DELIVERED}:
        await asyncio.sleep(0.02)  # polling the database for the recorded outcome, within the deadline


@pytest.fixture
def receiver(receivers: Callable[..., Receiver]) -> Receiver:
    return receivers()


@pytest.fixture
def orders(migrated_engine: Engine, receiver: Receiver) -> Destination:
    """A destination the worker may deliver to: its filter and its status row written."""
    destination = Destination(name="orders", url=receiver.url, secret=SECRET)
    with migrated_engine.begin() as connection:
        filters.write(connection, [destination])
        attempts.ensure_status(connection, [destination.name], now=datetime.now(UTC))
    return destination


def test_an_event_committed_while_a_read_finds_nothing_is_sent_without_waiting_for_the_poll(
    migrated_engine: Engine, orders: Destination
) -> None:
    run_with_a_change_during_the_first_read(migrated_engine, orders, store_an_event)


def test_a_resume_while_a_read_finds_the_destination_paused_is_not_lost(
    migrated_engine: Engine, orders: Destination
) -> None:
    def resume(engine: Engine, worker: Worker) -> Callable[[], None]:
        """The event is stored while paused (its commit wakes nothing); then the resume route's wake."""
        store_an_event(engine, worker)
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE destination_status SET paused = false")
        return worker.wake

    with migrated_engine.begin() as connection:
        connection.exec_driver_sql("UPDATE destination_status SET paused = true")
    run_with_a_change_during_the_first_read(migrated_engine, orders, resume)


def test_a_payments_next_event_is_sent_before_the_earlier_ones_outcome_is_recorded(
    migrated_engine: Engine, orders: Destination, receiver: Receiver
) -> None:
    with migrated_engine.begin() as connection:
        connection.execute(
            insert(Event),
            [{**event_row(name), "payment_id": "pay_both"} for name in ("evt_first", "evt_then")],
        )

    async def scenario() -> None:
        worker = Worker(migrated_engine, orders, poll_seconds=POLL_SECONDS)
        real_record = worker._record
        both_arrived = threading.Event()

        def record_once_both_arrived(batch: list[Any]) -> None:
            # No outcome is recorded until the payment's second event has arrived: it cannot have
            # waited for the first one's record.
            both_arrived.wait(DEADLINE_SECONDS)
            real_record(batch)

        worker._record = record_once_both_arrived  # type: ignore[method-assign]
        task = asyncio.create_task(worker.run())
        try:
            # Well within the record's own wait: the second event arrives without any record.
            await asyncio.wait_for(_arrived(receiver, 2), DEADLINE_SECONDS / 2)
            both_arrived.set()
            await asyncio.wait_for(_delivered(migrated_engine), DEADLINE_SECONDS)
        finally:
            both_arrived.set()
            await worker.stop()
            await asyncio.wait_for(task, DEADLINE_SECONDS)

    asyncio.run(scenario())
    assert [received.event["event_id"] for received in receiver.received] == ["evt_first", "evt_then"]


async def _arrived(receiver: Receiver, count: int) -> None:
    while len(receiver.received) < count:
        await asyncio.sleep(0.02)  # polling the receiver, within the caller's deadline
