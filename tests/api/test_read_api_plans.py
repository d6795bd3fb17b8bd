"""Reads stay fast however many events are stored: each read route runs one query that the database
answers from an index in the order it needs (no sort, no OFFSET, no COUNT). The queries checked are
the ones the routes really send, captured on the app's engine, then explained. Both databases."""

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from api.precompiled import PrecompiledSelect
from tests.support import next_url, razorpay_delivery, razorpay_event


@pytest.fixture
def statements(client: TestClient) -> Iterator[list[tuple[str, Any]]]:
    for number in range(6):
        body, headers = razorpay_delivery(
            razorpay_event(event_id=f"evt_{number}", created_at=1751885965 + number)
        )
        assert client.post("/webhooks/razorpay", content=body, headers=headers).status_code == 200
    engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    # The history runs precompiled on the driver's cursor, past the engine's events: recorded here.
    def execute(select: PrecompiledSelect, cursor: Any, values: Any) -> Any:
        seen.append((select.sql, select.bound(values)))
        return precompiled_execute(select, cursor, values)

    async def fetch(select: PrecompiledSelect, connection: Any, values: Any) -> Any:
        seen.append((select.sql, select.positional(values)))  # a list: asyncpg's $1, $2, ...
        return await precompiled_fetch(select, connection, values)

    event.listen(engine, "before_cursor_execute", capture)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PrecompiledSelect, "execute", execute)
        patch.setattr(PrecompiledSelect, "fetch", fetch)
        yield seen
    event.remove(engine, "before_cursor_execute", capture)


precompiled_execute = PrecompiledSelect.execute
precompiled_fetch = PrecompiledSelect.fetch


def plan(engine: Engine, statement: str, parameters: Any) -> str:
    if isinstance(parameters, list):  # sent by asyncpg (PostgreSQL's history): explained through it
        return asyncio.run(plan_asyncpg(engine, statement, parameters))
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            # A test table is tiny, where a sequential scan is cheapest; forbidding it asks whether an
            # index can answer the query at all, which is what matters at a million rows.
            connection.exec_driver_sql("SET enable_seqscan = off")
            connection.exec_driver_sql("SET enable_bitmapscan = off")
            rows = connection.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        else:
            rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        return "\n".join(str(row[-1]) for row in rows)


async def plan_asyncpg(engine: Engine, statement: str, arguments: list[Any]) -> str:
    connection = await asyncpg.connect(engine.url.set(drivername="postgresql").render_as_string(False))
    try:
        await connection.execute("SET enable_seqscan = off")
        await connection.execute("SET enable_bitmapscan = off")
        rows = await connection.fetch("EXPLAIN " + statement, *arguments)
    finally:
        await connection.close()
    return "\n".join(str(row[0]) for row in rows)


@pytest.mark.parametrize(
    ("path", "index"),
    [
        ("/payments/pay_014/events?limit=2", "ix_webhook_events_payment_history"),
        (
            "/payments/pay_014/events?limit=2&event_type=payment.authorized",
            "ix_webhook_events_payment_history",
        ),
        # SQLite's table is its rowid b-tree: a SCAN of it is already in id order.
        (
            "/events?limit=2",
            {"postgresql": "Index Scan Backward using webhook_events_pkey", "sqlite": "webhook_events"},
        ),
        (
            "/events?limit=2&status=authorized",
            {"postgresql": "webhook_events_pkey", "sqlite": "webhook_events"},
        ),
        ("/payments/pay_014", "ix_payments_payment_id"),
        (
            "/events/razorpay/evt_3",
            {
                "postgresql": "uq_webhook_events_provider_event_id",
                "sqlite": "sqlite_autoindex_webhook_events_1",
            },
        ),
    ],
)
def test_each_read_is_an_index_range_without_sort_offset_or_count(
    client: TestClient, statements: list[tuple[str, Any]], path: str, index: str | dict[str, str]
) -> None:
    first = client.get(path)
    follow = next_url(first)
    if follow is not None:  # the second page carries a cursor: the keyset condition is checked too
        assert client.get(follow).status_code == 200
    engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
    expected = index if isinstance(index, str) else index[engine.dialect.name]

    queries = [(sql, params) for sql, params in statements if sql.lstrip().upper().startswith("SELECT")]

    assert first.status_code == 200 and queries
    for sql, params in queries:
        assert "COUNT(" not in sql.upper(), sql
        if "OFFSET" in sql.upper():  # SQLAlchemy's SQLite dialect writes LIMIT ? OFFSET ? with OFFSET 0
            assert engine.dialect.name == "sqlite"
            offset = sql.rstrip().rsplit(" ", 1)[-1]
            assert (params[-1] if offset == "?" else params[offset.removeprefix(":")]) == 0
        explained = plan(engine, sql, params)
        assert expected in explained, explained
        assert "Sort" not in explained and "TEMP B-TREE" not in explained, explained
        assert "Seq Scan" not in explained, explained
    assert len(queries) == (1 if follow is None else 2)  # one query per page
