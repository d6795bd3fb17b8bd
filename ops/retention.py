"""Retention: delete the events received more than N days ago, or keep their rows and empty the raw body.

The work goes in batches, each its own short transaction, so deliveries that arrive meanwhile wait for
one batch at most and never for the whole purge. A batch is found by walking the received_at index from
the oldest event (a keyset, so no batch rescans what earlier ones passed) and written by primary key
with one statement, with no read before it in that transaction: on SQLite a read-then-write transaction
fails outright when the service commits in between, where a lone write waits its turn.

The payments projection is a fold of every event ever stored; purging events leaves its rows as they
are (still correct). A later `rebuild-payments` folds only the events that remain.

Deleting an event also forgets that it was delivered: a provider re-sending it afterwards stores it
again. Keep events longer than the providers retry (days), or use `redact`, which keeps the row (and so
the deduplication) and drops only the body.

The event with the highest id is redacted rather than deleted. SQLite gives a new row the id after the
highest one in the table, so deleting the newest rows would hand their ids out again: forwarding's
cursor on SQLite (the last event id published) would then pass over the new events, and a delivery
owed to a destination for the old event would stand in for the new one. PostgreSQL's sequence never
goes back; the rule is the same on both.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import ColumnElement, Engine, Row, Update, delete, func, select, tuple_, update

from models import Event

BATCH_SIZE: Final = 1_000


@dataclass(frozen=True, slots=True)
class PurgeResult:
    events: int  # deleted, or redacted
    batches: int
    cutoff: datetime


def purge(
    engine: Engine,
    *,
    older_than: timedelta,
    redact: bool = False,
    batch_size: int = BATCH_SIZE,
    now: datetime | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> PurgeResult:
    """Delete (or, with `redact`, empty the raw body of) events received before now - `older_than`.

    `on_batch(events so far)` runs after each committed batch."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    started = now or datetime.now(UTC)
    cutoff = started - older_than
    old = Event.received_at < cutoff
    if redact:
        old = old & Event.redacted_at.is_(None)
    done = batches = 0
    last: Row[datetime, int] | None = None
    while batch := _next_batch(engine, old=old, after=last, size=batch_size):
        ids = [row.id for row in batch]
        with engine.begin() as connection:
            if redact:
                done += connection.execute(_redact(ids, old, started)).rowcount
            else:
                newest = select(func.max(Event.id)).scalar_subquery()
                done += connection.execute(
                    delete(Event).where(Event.id.in_(ids), old, Event.id < newest)
                ).rowcount
                # The newest event, if it is in this batch: its row stays, so that its id is not reused.
                done += connection.execute(_redact(ids, old & (Event.id == newest), started)).rowcount
        batches += 1
        last = batch[-1]
        if on_batch is not None:
            on_batch(done)
    return PurgeResult(events=done, batches=batches, cutoff=cutoff)


def _redact(ids: list[int], old: ColumnElement[bool], at: datetime) -> Update:
    return (
        update(Event)
        .where(Event.id.in_(ids), old, Event.redacted_at.is_(None))
        .values(raw_body=b"", redacted_at=at)
    )


def _next_batch(
    engine: Engine, *, old: ColumnElement[bool], after: Row[datetime, int] | None, size: int
) -> Sequence[Row[datetime, int]]:
    """The next `size` old events, oldest first, after the last one of the previous batch."""
    stmt = select(Event.received_at, Event.id).where(old).order_by(Event.received_at, Event.id).limit(size)
    if after is not None:
        # The plain >= lets the database range-scan the received_at index; the tuple breaks ties.
        stmt = stmt.where(
            Event.received_at >= after.received_at,
            tuple_(Event.received_at, Event.id) > tuple_(after.received_at, after.id),
        )
    with engine.connect() as connection:
        return connection.execute(stmt).all()
