"""Where a batch of events is written: the SQL of one batch, and one sink per database.

A batch is one transaction: `INSERT ... ON CONFLICT (provider, event_id) DO NOTHING RETURNING` for its
events (the database decides what is new), then their fold into the payments projection, then the
commit. On SQLite that is a statement per row on one thread. On PostgreSQL it is one statement for the
whole batch, its rows read from one JSON parameter, folded in SQL, and committed as it ends.
The statements are compiled once from their Core definitions and run on the driver's own cursor:
measured, SQLAlchemy's per-execute layers (cache keys, result objects) cost more per event than the
insert itself.
"""

import asyncio
import base64
import contextlib
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from functools import partial
from typing import Any, Final, Protocol, cast

import orjson
import psycopg
from sqlalchemy import (
    Column,
    Dialect,
    Engine,
    LargeBinary,
    PoolProxiedConnection,
    Select,
    Table,
    Text,
    bindparam,
    column,
    func,
    literal_column,
    select,
)
from sqlalchemy import cast as type_cast
from sqlalchemy.dialects import postgresql, sqlite

import projection
from database import connect_async
from events import NormalizedEvent
from models import Event, Payment
from precompiled import column_binds, compile_for, parameters

_FIELDS: Final = tuple(field.name for field in fields(NormalizedEvent))


class Sink(Protocol):
    # Errors that blame one row rather than the database: the writer retries such a batch row by row.
    row_errors: tuple[type[Exception], ...]

    async def write(self, events: Sequence[NormalizedEvent]) -> list[bool]:
        """Store `events` and commit; per event, whether it was new. Raises the driver's errors."""

    async def reset(self) -> None:
        """Drop the connection after an error; the next write opens a new one."""

    async def close(self) -> None: ...


@dataclass
class Batch:
    """The events of one transaction: each (provider, event_id) once, in key order."""

    events: Sequence[NormalizedEvent]
    unique: list[NormalizedEvent]
    first_index: dict[tuple[str, str], int]

    @classmethod
    def plan(cls, events: Sequence[NormalizedEvent]) -> "Batch":
        first_index: dict[tuple[str, str], int] = {}
        for index, event in enumerate(events):
            first_index.setdefault((event.provider, event.event_id), index)
        # Sorted keys: concurrent writers (other processes) take the unique-index locks in the same
        # order, so they queue behind each other instead of deadlocking.
        keys = sorted(first_index)
        return cls(events=events, unique=[events[first_index[key]] for key in keys], first_index=first_index)

    def outcomes(self, inserted: Collection[tuple[str, str]]) -> list[bool]:
        """Per event, new or not, given the keys the database inserted. Of several deliveries of one
        event in a batch, the first is the new one; the rest are duplicates, as if they had arrived
        just after it."""
        keys = ((event.provider, event.event_id) for event in self.events)
        return [self.first_index[key] == index and key in inserted for index, key in enumerate(keys)]


def _columns() -> tuple[list[Column[Any]], list[Column[Any]]]:
    """The events table's columns but its generated id, and the payments table's columns."""
    events = [column for column in cast(Table, Event.__table__).c if column.name != "id"]
    return events, list(cast(Table, Payment.__table__).c)


class SqliteSql:
    """A batch's two statements on SQLite, each run once per row with SQLAlchemy's conversions for
    every value (SQLite stores times as naive UTC text, and so on)."""

    def __init__(self, dialect: Dialect) -> None:
        table = cast(Table, Event.__table__)
        event_columns, payment_columns = _columns()
        self._event_binds = column_binds(event_columns, dialect)
        self._payment_binds = column_binds(payment_columns, dialect)
        insert_event = (
            sqlite.insert(table)
            .values({column.name: bindparam(column.name) for column in event_columns})
            .on_conflict_do_nothing(index_elements=["provider", "event_id"])
            .returning(table.c.id)
        )
        self.insert_event = str(insert_event.compile(dialect=compile_for(dialect)))
        self.upsert_payment = str(projection.upsert_statement("sqlite").compile(dialect=compile_for(dialect)))

    def event_row(self, event: NormalizedEvent) -> dict[str, Any]:
        return parameters({name: getattr(event, name) for name in _FIELDS}, self._event_binds)

    def payment_row(self, payment: dict[str, Any]) -> dict[str, Any]:
        return parameters(payment, self._payment_binds)


class PostgresSql:
    """A batch as one statement on PostgreSQL: the events inserted from one JSON parameter (`json_rows`),
    the new ones folded into payments (`projection.fold_select`, in a second data-modifying CTE), and
    the new rows' keys returned. Measured against the events and the payments as two statements and a
    COMMIT: the event loop no longer waits out four round trips per batch, each taking its turn behind
    the deliveries, and psycopg encodes one text parameter in C instead of an array per column in
    Python (BENCHMARKS.md)."""

    def __init__(self, dialect: Dialect) -> None:
        table = cast(Table, Event.__table__)
        event_columns, _ = _columns()
        inserted = (
            postgresql.insert(table)
            .from_select([column.name for column in event_columns], json_rows(event_columns))
            .on_conflict_do_nothing(index_elements=["provider", "event_id"])
            .returning(table.c.id, *(table.c[name] for name in projection.FACTS), table.c.event_id)
            .cte("inserted")
        )
        folded = projection.upsert_statement("postgresql", rows=projection.fold_select(inserted))
        statement = select(inserted.c.id, inserted.c.provider, inserted.c.event_id).add_cte(
            folded.cte("folded")
        )
        self.write_batch = str(statement.compile(dialect=dialect))


def json_rows(columns: Sequence[Column[Any]]) -> Select[*tuple[Any, ...]]:
    """`SELECT ... FROM json_to_recordset(CAST(:rows AS JSON)) AS batch(name type, ...)`: the rows of
    one parameter, a JSON array of objects keyed by column name (PostgreSQL only). The server turns
    each value into its column's type; binary values travel as base64 text and are decoded here."""

    def as_sent(column: Column[Any]) -> Any:
        return Text() if isinstance(column.type, LargeBinary) else column.type

    rows = (
        func.json_to_recordset(type_cast(bindparam("rows"), postgresql.JSON))
        .table_valued(*(column(c.name, as_sent(c)) for c in columns))
        .render_derived("batch", with_types=True)
    )
    return select(
        *(
            func.decode(rows.c[c.name], literal_column("'base64'"))
            if isinstance(c.type, LargeBinary)
            else rows.c[c.name]
            for c in columns
        )
    )


def json_parameter(rows: Sequence[NormalizedEvent]) -> dict[str, str]:
    """`rows` as the JSON array `json_rows` reads. orjson writes dataclasses as objects and datetimes
    as RFC 3339 with their offset; the server converts them to UTC."""
    return {"rows": orjson.dumps(rows, default=_base64).decode()}


def _base64(value: object) -> str:
    # orjson calls this for what JSON has no type for; of a batch's values, only bytes (the raw body).
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} in a batch row")


def require_aware(events: Sequence[NormalizedEvent]) -> None:
    """Refuse naive datetimes, as UTCDateTime does for the ORM: written without an offset, they would
    be read in the server's time zone, a guess."""
    for event in events:
        if event.occurred_at.tzinfo is None or event.received_at.tzinfo is None:
            raise ValueError("naive datetime in an event")


class SqliteSink:
    """sqlite3 has no asynchronous driver, and a commit waits for fsync: batches run on one dedicated
    thread (SQLite takes one writer at a time anyway), and the event loop awaits them."""

    def __init__(self, engine: Engine, sql: SqliteSql) -> None:
        self._engine = engine
        self._sql = sql
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-writer")
        self._connection: PoolProxiedConnection | None = None
        dbapi = engine.dialect.loaded_dbapi
        # sqlite3 refuses an integer past 64 bits with an OverflowError; UTCDateTime a naive time with
        # a ValueError. Like the driver's own two, each blames one row.
        self.row_errors: tuple[type[Exception], ...] = (
            dbapi.IntegrityError,
            dbapi.DataError,
            OverflowError,
            ValueError,
        )

    async def write(self, events: Sequence[NormalizedEvent]) -> list[bool]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._write, events)

    def _write(self, events: Sequence[NormalizedEvent]) -> list[bool]:
        # One long-lived connection: the writer is its only user, and a pool checkout per batch would
        # cost a pre-ping each time. It is replaced after any error.
        if self._connection is None:
            self._connection = self._engine.raw_connection()
        batch = Batch.plan(events)
        cursor = self._connection.cursor()
        try:
            new: list[tuple[int, NormalizedEvent]] = []
            for event in batch.unique:  # sqlite3's executemany cannot return rows
                cursor.execute(self._sql.insert_event, self._sql.event_row(event))
                if returned := cursor.fetchone():
                    new.append((returned[0], event))
            payments = [self._sql.payment_row(payment) for payment in projection.fold(new)]
            if payments:
                cursor.executemany(self._sql.upsert_payment, payments)
        except BaseException:
            self._connection.rollback()
            raise
        finally:
            cursor.close()
        self._connection.commit()  # only now may a delivery of this batch be acknowledged
        return batch.outcomes({(event.provider, event.event_id) for _, event in new})

    async def reset(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._drop_connection)

    def _drop_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.invalidate()
            self._connection = None

    async def close(self) -> None:
        await self.reset()
        self._executor.shutdown(wait=True)


class PostgresSink:
    """psycopg's asynchronous connection, driven by the event loop itself: a batch is one statement
    (PostgresSql) and one round trip, with no thread to hand work to and back. The connection is in
    autocommit mode, so the statement is its own transaction: the server answers after the commit, and
    a commit that fails is an error here, like any other."""

    # A value the server cannot take (too long, out of range, a NUL) is a DataError; one orjson
    # cannot write (an integer past 64 bits, a lone surrogate) a JSONEncodeError; a naive time a
    # ValueError (require_aware). Each blames one row. The adapters check every field, so all are rare.
    row_errors: tuple[type[Exception], ...] = (
        psycopg.IntegrityError,
        psycopg.DataError,
        orjson.JSONEncodeError,
        ValueError,
    )

    def __init__(
        self, engine: Engine, sql: PostgresSql, *, connect_timeout: int, statement_timeout_ms: int
    ) -> None:
        self._connect = partial(
            connect_async,
            engine,
            connect_timeout=connect_timeout,
            statement_timeout_ms=statement_timeout_ms,
            autocommit=True,
        )
        self._sql = sql
        self._connection: psycopg.AsyncConnection[Any] | None = None

    async def write(self, events: Sequence[NormalizedEvent]) -> list[bool]:
        if self._connection is None:
            self._connection = await self._connect()
        batch = Batch.plan(events)
        require_aware(batch.unique)
        async with self._connection.cursor() as cursor:
            await cursor.execute(self._sql.write_batch, json_parameter(batch.unique))
            inserted = {(provider, event_id) for _, provider, event_id in await cursor.fetchall()}
        return batch.outcomes(inserted)  # committed: the statement has ended

    async def reset(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    async def close(self) -> None:
        await self.reset()


def make_sinks(
    engine: Engine, *, concurrency: int, connect_timeout: int, statement_timeout_ms: int
) -> list[Sink]:
    """PostgreSQL: `concurrency` connections, each with a batch in flight. SQLite: one, since SQLite
    takes one writer at a time. The batch statements are compiled once and shared."""
    if engine.dialect.name != "postgresql":
        return [SqliteSink(engine, SqliteSql(engine.dialect))]
    sql = PostgresSql(engine.dialect)
    return [
        PostgresSink(engine, sql, connect_timeout=connect_timeout, statement_timeout_ms=statement_timeout_ms)
        for _ in range(concurrency)
    ]
