"""The outbox on SQLite, where ids are commit order: a relay resumes after its cursor, and still sees
new events once retention has deleted every row (SQLite then counts ids from 1 again). On PostgreSQL,
two cursors advancing at once still clean up the batches both have passed."""

import threading

import pytest
from sqlalchemy import Connection, Engine, delete, func, select, text

from forwarding.outbox import Outbox, Pending
from models import Event, ForwardBatch
from tests.forwarding.test_commit_order import insert_event, published
from tests.live import wait_until


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_new_events_after_everything_was_purged_are_published(migrated_engine: Engine) -> None:
    outbox = Outbox(migrated_engine, stream="PAYMENTS", raw_body=False)
    outbox.start()
    with migrated_engine.begin() as connection:
        for index in range(3):
            insert_event(connection, f"evt_{index}")
    assert published(outbox) == ["evt_0", "evt_1", "evt_2"]
    with migrated_engine.begin() as connection:
        connection.execute(delete(Event))
        insert_event(connection, "evt_after_purge")
    assert published(outbox) == ["evt_after_purge"]
    assert published(outbox) == []
    outbox.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_cursors_advancing_at_once_leave_no_batch_both_have_passed(migrated_engine: Engine) -> None:
    """Two streams' relays each delete the batches every cursor has passed. Run at once,
    each DELETE saw the other's cursor as it was before, and the last batches stayed. The second advance
    now waits for the first's commit (the cursors' rows are locked first)."""
    relay = Outbox(migrated_engine, stream="PAYMENTS", raw_body=False)
    other = Outbox(migrated_engine, stream="ARCHIVE", raw_body=False)
    relay.start()
    other.start()
    with migrated_engine.begin() as connection:
        for index in range(3):
            insert_event(connection, f"evt_{index}")

    def all_pending(outbox: Outbox) -> Pending:
        # The horizon is the server's oldest running transaction: other work can hold it back a moment.
        found: list[Pending] = []

        def read() -> bool:
            if (pending := outbox.pending(limit=10)) is not None:
                found.append(pending)
            return bool(found)

        assert wait_until(read, deadline_s=10)
        assert len(found[0].events) == 3
        return found[0]

    relay_pending, other_pending = all_pending(relay), all_pending(other)
    entered, release = threading.Event(), threading.Event()

    def hold(_: Connection) -> None:
        entered.set()
        assert release.wait(10)

    first = threading.Thread(target=relay.advance, args=(relay_pending, {}), kwargs={"along": hold})
    first.start()
    assert entered.wait(10)
    second = threading.Thread(target=other.advance, args=(other_pending, {}))
    second.start()

    def waiting_on_a_lock() -> bool:
        with migrated_engine.connect() as connection:
            query = text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return bool(connection.execute(query).scalar_one())

    try:
        assert wait_until(waiting_on_a_lock, deadline_s=10)
    finally:
        release.set()
        first.join(10)
        second.join(10)
    with migrated_engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(ForwardBatch)).scalar_one() == 0
    relay.close()
    other.close()
