"""The `payments` projection: each payment's current state, folded from its events.

The fold is a maximum (the status comes from the event with the greatest (rank, occurred_at, row id)),
a sum (event_count) and a min/max (first_seen_at, last_event_at). All three are order-independent, so
deliveries in any order, in any batches, and a rebuild from the events table all give the same rows.
It exists twice: `fold` in Python (payments/fold.py: SQLite's writer, rebuilds) and `fold_select` in
SQL (PostgreSQL's writer folds a batch in the statement that inserts it);
tests/payments/test_projection_fold.py holds them equal.
"""

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Insert,
    Integer,
    Select,
    String,
    bindparam,
    case,
    delete,
    func,
    literal_column,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.selectable import NamedFromClause

from models import Event, Payment
from payments.events import NO_STATUS_RANK, STATUS_RANK
from payments.fold import FACTS, EventFacts, fold

__all__ = ["FACTS", "EventFacts", "apply", "fold", "fold_select", "rebuild", "upsert_statement"]

REBUILD_CHUNK = 5_000


def fold_select(new: NamedFromClause) -> Select[*tuple[Any, ...]]:
    """`fold` in SQL (PostgreSQL): one row per payment, in the payments table's column order, from
    `new` (rows of newly stored events: `id` and the FACTS columns). The status row is the first of
    its payment by (rank, occurred_at, id) descending: DISTINCT ON keeps it, and the windows give the
    count, min and max over all the payment's rows. Payments come in key order, as from `fold`."""
    c = new.c
    rank = rank_expression(c.status)
    payment = (c.provider, c.payment_id)
    # Code point order, as Python sorts `fold`'s keys: all writers lock payments in one order.
    key = (c.provider.collate("C"), c.payment_id.collate("C"))
    return (
        select(
            c.provider,
            c.payment_id,
            case((rank == _constant(NO_STATUS_RANK), None), else_=c.status).label("status"),
            c.provider_status,
            c.amount,
            c.currency,
            func.min(c.received_at).over(partition_by=payment).label("first_seen_at"),
            func.max(c.occurred_at).over(partition_by=payment).label("last_event_at"),
            func.count().over(partition_by=payment).label("event_count"),
            rank.label("status_rank"),
            c.occurred_at.label("status_occurred_at"),
            c.id.label("status_event_id"),
        )
        .where(c.payment_id.is_not(None))
        .ext(postgresql.distinct_on(*key))
        .order_by(*key, rank.desc(), c.occurred_at.desc(), c.id.desc())
    )


def rank_expression(status: ColumnElement[Any]) -> ColumnElement[int]:
    """`_rank` in SQL: `CASE status WHEN 'created' THEN 0 ... ELSE -1 END`."""
    whens = {_constant(name): _constant(rank) for name, rank in STATUS_RANK.items()}
    return case(whens, value=status, else_=_constant(NO_STATUS_RANK))


def _constant(value: str | int) -> ColumnElement[Any]:
    # Written into the SQL rather than bound: the writer's statement takes one parameter, the batch.
    if isinstance(value, int):
        return literal_column(str(value), Integer())
    return literal_column("'" + value.replace("'", "''") + "'", String())


@lru_cache(maxsize=2)
def upsert_statement(dialect_name: str, *, rows: Select[*tuple[Any, ...]] | None = None) -> Insert:
    """`INSERT INTO payments ... ON CONFLICT DO UPDATE` folding one row per payment: the row's values
    are bind parameters named after the columns, or come from `rows` (one row per payment, the
    columns in table order). Built once per dialect: the writer compiles it for its hot path."""
    table = Payment.__table__
    current = table.c
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    stmt = insert(table)  # type: ignore[arg-type]  # __table__ is typed as a FromClause
    if rows is None:
        stmt = stmt.values({column.name: bindparam(column.name) for column in table.c})
    else:
        stmt = stmt.from_select([column.name for column in table.c], rows)
    new = stmt.excluded
    newer = tuple_(new.status_rank, new.status_occurred_at, new.status_event_id) > tuple_(
        current.status_rank, current.status_occurred_at, current.status_event_id
    )
    status_columns = (
        "status",
        "provider_status",
        "amount",
        "currency",
        "status_rank",
        "status_occurred_at",
        "status_event_id",
    )
    return stmt.on_conflict_do_update(
        index_elements=[current.provider, current.payment_id],
        set_={
            **{name: case((newer, new[name]), else_=current[name]) for name in status_columns},
            "event_count": current.event_count + new.event_count,
            "first_seen_at": case(
                (new.first_seen_at < current.first_seen_at, new.first_seen_at), else_=current.first_seen_at
            ),
            "last_event_at": case(
                (new.last_event_at > current.last_event_at, new.last_event_at), else_=current.last_event_at
            ),
        },
    )


def apply(connection: Connection, stored: Iterable[tuple[int, EventFacts]]) -> None:
    """Fold stored events into `payments`, inside the caller's transaction."""
    rows = fold(stored)
    if rows:
        connection.execute(upsert_statement(connection.dialect.name), rows)


def rebuild(connection: Connection) -> int:
    """Recompute every payment from the events table, in chunks, inside the caller's transaction.

    Returns the number of events folded (those that name a payment)."""
    if connection.dialect.name == "postgresql":
        # Writers fold new events into `payments` in their own transactions. Holding them off until
        # this commits means each event is folded exactly once: by the rebuild if it committed before
        # the lock, else by its writer afterwards (its uncommitted row is invisible to the scan below).
        # Reads go on meanwhile, against the old rows. SQLite's single writer serialises this anyway.
        connection.execute(text("LOCK TABLE payments IN EXCLUSIVE MODE"))
    connection.execute(delete(Payment))
    columns = (
        Event.id,
        Event.provider,
        Event.payment_id,
        Event.status,
        Event.provider_status,
        Event.amount,
        Event.currency,
        Event.occurred_at,
        Event.received_at,
    )
    folded = 0
    last_id = 0
    while True:
        chunk = connection.execute(
            select(*columns)
            .where(Event.id > last_id, Event.payment_id.is_not(None))
            .order_by(Event.id)
            .limit(REBUILD_CHUNK)
        ).all()
        if not chunk:
            return folded
        apply(connection, ((row.id, row) for row in chunk))
        folded += len(chunk)
        last_id = chunk[-1].id
