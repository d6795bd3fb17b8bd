"""The outbox on SQLite, where ids are commit order: a relay resumes after its cursor, and still sees
new events once retention has deleted every row (SQLite then counts ids from 1 again)."""

import pytest
from sqlalchemy import Engine, delete

from forwarding.outbox import Outbox
from models import Event
from tests.forwarding.test_commit_order import insert_event, published


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
