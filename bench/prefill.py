"""Stores events straight into ours' tables, shaped as ours stores them, for the flat-cost runs.

The schema comes from the repository's models.py (never redefined here) and must already exist: the
harness lets ours create it by starting once. PostgreSQL takes COPY; SQLite takes Core executemany.
"""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql
from sqlalchemy import Table, create_engine, insert, text

from bench import payloads
from bench.databases import Database

CHUNK = 20_000  # events per batch; an even number, so a payment's two events share a batch
Row = dict[str, Any]


def _event_row(delivery: payloads.Delivery, *, row_id: int, occurred: datetime, received: datetime) -> Row:
    return {
        "id": row_id,
        "provider": "razorpay",
        "event_id": delivery.event_id,
        "id_derived": False,
        "event_type": delivery.event_type,
        "payment_id": delivery.payment_id,
        "status": delivery.status,
        "provider_status": delivery.status,
        "amount": delivery.amount,
        "currency": "INR",
        "occurred_at": occurred,
        "received_at": received,
        "raw_body": delivery.body,
        "headers": {"x-razorpay-signature": delivery.signature, "x-razorpay-event-id": delivery.event_id},
        "delivery_count": 1,
        "last_delivered_at": received,
    }


def _payment_row(events: list[Row], rank_of: Callable[[str | None], int]) -> Row:
    """The payments projection of one payment's events, by ours' rule: greatest (rank, occurred_at, id)."""
    best = max(events, key=lambda row: (rank_of(row["status"]), row["occurred_at"], row["id"]))
    return {
        "provider": "razorpay",
        "payment_id": best["payment_id"],
        "status": best["status"],
        "provider_status": best["provider_status"],
        "amount": best["amount"],
        "currency": best["currency"],
        "first_seen_at": min(row["received_at"] for row in events),
        "last_event_at": max(row["occurred_at"] for row in events),
        "event_count": len(events),
        "status_rank": rank_of(best["status"]),
        "status_occurred_at": best["occurred_at"],
        "status_event_id": best["id"],
    }


def _batches(*, events: int, tag: str, first_id: int) -> Iterator[tuple[list[Row], list[Row]]]:
    # The repository's own ranking, so the projection agrees with ours.
    from payments.events import NO_STATUS_RANK, STATUS_RANK

    def status_rank(status: str | None) -> int:
        return NO_STATUS_RANK if status is None else STATUS_RANK[status]

    received = datetime.now(UTC)
    base = int(received.timestamp()) - events - 60  # every event happened before it was received
    event_rows: list[Row] = []
    payment_rows: list[Row] = []
    for index in range(events):
        delivery = payloads.unique_delivery(index=index, tag=tag, created_at=base + index)
        occurred = datetime.fromtimestamp(base + index, UTC)
        event_rows.append(_event_row(delivery, row_id=first_id + index, occurred=occurred, received=received))
        if index % 2 == 1 or index == events - 1:
            payment_rows.append(_payment_row(event_rows[-(index % 2 + 1) :], status_rank))
        if len(event_rows) >= CHUNK and index % 2 == 1:
            yield event_rows, payment_rows
            event_rows, payment_rows = [], []
    if event_rows:
        yield event_rows, payment_rows


def prefill(database: Database, *, events: int, tag: str) -> list[str]:
    """Adds `events` events (two per payment) and their payments; returns the payment ids."""
    from models import Event, Payment

    tables: tuple[Table, Table] = (Event.__table__, Payment.__table__)  # type: ignore[assignment]
    batches = _batches(
        events=events, tag=tag, first_id=int(database.scalar("SELECT max(id) FROM webhook_events") or 0) + 1
    )
    payment_ids: list[str] = []
    if database.kind == "postgresql":
        with psycopg.connect(database.url) as connection:
            for event_rows, payment_rows in batches:
                _copy(connection, tables, event_rows, payment_rows)
                connection.commit()
                payment_ids.extend(row["payment_id"] for row in payment_rows)
        with psycopg.connect(database.url, autocommit=True) as connection:
            # Ids continue after the copied ones, and the planner knows the tables' new size, as it
            # would in a database that grew over months.
            connection.execute(
                "SELECT setval(pg_get_serial_sequence('webhook_events', 'id'), "
                "(SELECT max(id) FROM webhook_events))"
            )
            connection.execute("VACUUM ANALYZE webhook_events")
            connection.execute("VACUUM ANALYZE payments")
        return payment_ids
    engine = create_engine(database.url)
    try:
        for event_rows, payment_rows in batches:
            with engine.begin() as connection:
                connection.execute(insert(tables[0]), event_rows)
                connection.execute(insert(tables[1]), payment_rows)
            payment_ids.extend(row["payment_id"] for row in payment_rows)
        with engine.begin() as connection:
            connection.execute(text("ANALYZE"))
    finally:
        engine.dispose()
    return payment_ids


def _copy_value(name: str, value: Any) -> Any:
    return orjson.dumps(value).decode() if name == "headers" else value  # the JSON column takes text


def _copy(
    connection: psycopg.Connection[Any], tables: tuple[Table, Table], events: list[Row], payments: list[Row]
) -> None:
    with connection.cursor() as cursor:
        for table, rows in zip(tables, (events, payments), strict=True):
            names = [column.name for column in table.columns if column.name in rows[0]]
            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, names))
            )
            with cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row([_copy_value(name, row[name]) for name in names])
