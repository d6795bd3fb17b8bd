"""Where a batch of events is written: the SQL of one batch, and one sink per database.

A batch is one transaction: `INSERT ... ON CONFLICT (provider, event_id) DO NOTHING RETURNING` for its
events (the database decides what is new), then their fold into the payments projection, then the
commit. Rows travel as one JSON parameter, which orjson writes in C, and each database reads it with
its own JSON functions. On SQLite, on one thread, that is two statements (events, then payments folded
in Python) and the commit; on PostgreSQL one statement, folded in SQL and committed as it ends.
The statements are compiled once from their Core definitions and run on the driver's own cursor:
measured, SQLAlchemy's per-execute layers (cache keys, result objects) cost more per event than the
insert itself.
"""

import base64
import contextlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar, cast

import orjson
import psycopg
from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
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
    true,
)
from sqlalchemy import cast as type_cast
from sqlalchemy.dialects import postgresql, sqlite

import projection
from database import connect_async
from events import NormalizedEvent
from models import Event, Payment, sqlite_time
from precompiled import compile_for


class Sink(Protocol):
    # Errors that blame one row rather than the database: the writer retries such a batch row by row.
    row_errors: tuple[type[Exception], ...]

    async def open(self) -> None:
        """Get ready to write, before the first delivery waits on it."""

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


AnyInsert = TypeVar("AnyInsert", postgresql.Insert, sqlite.Insert)


def new_events(
    insert: AnyInsert, rows_of: Callable[[Sequence[Column[Any]]], Select[*tuple[Any, ...]]]
) -> AnyInsert:
    """`INSERT INTO webhook_events (...) SELECT ... ON CONFLICT (provider, event_id) DO NOTHING`, the
    rows from `rows_of(columns)`: every column but the generated id. The unique constraint decides
    which are new; the caller says what to return."""
    columns = [column for column in cast(Table, Event.__table__).c if column.name != "id"]
    return insert.from_select([column.name for column in columns], rows_of(columns)).on_conflict_do_nothing(
        index_elements=["provider", "event_id"]
    )


class SqliteSql:
    """A batch as two statements on SQLite, each reading its rows from one JSON parameter (json_each):
    the events, then their fold into payments (`projection.fold`, in Python). Values go in the form
    SQLite stores them (times as `sqlite_time`, booleans as 0/1). SQLite's JSON has no binary type and
    this SQLite (3.40) no unhex(), so the raw bodies travel as one BLOB parameter, each row naming its
    slice. Measured against a statement per row with SQLAlchemy's conversions: about a third less of
    this thread's CPU a delivery, and 900-1,800 more deliveries a second in 4 of 5 paired runs over
    sockets, though not in a full benchmark run (BENCHMARKS.md)."""

    def __init__(self, dialect: Dialect) -> None:
        table = cast(Table, Event.__table__)
        insert_events = new_events(sqlite.insert(table), sqlite_json_rows).returning(
            table.c.id, table.c.provider, table.c.event_id
        )
        upsert_payments = projection.upsert_statement(
            "sqlite", rows=sqlite_json_rows(list(cast(Table, Payment.__table__).c))
        )
        self.insert_events = str(insert_events.compile(dialect=compile_for(dialect)))
        self.upsert_payments = str(upsert_payments.compile(dialect=compile_for(dialect)))

    @staticmethod
    def event_parameters(events: Sequence[NormalizedEvent]) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        bodies: list[bytes] = []
        at = 1  # SQLite's substr() counts from 1
        for event in events:
            texts = (
                event.provider,
                event.event_id,
                event.event_type,
                event.payment_id,
                event.status,
                event.provider_status,
                event.currency,
            )
            if any(value and "\x00" in value for value in texts):
                # SQLite's JSON functions would cut the text off at the NUL: refused, as PostgreSQL does.
                raise ValueError("NUL in an event's text")
            rows.append(
                {
                    "provider": event.provider,
                    "event_id": event.event_id,
                    "id_derived": event.id_derived,
                    "event_type": event.event_type,
                    "payment_id": event.payment_id,
                    "status": event.status,
                    "provider_status": event.provider_status,
                    "amount": event.amount,
                    "currency": event.currency,
                    "occurred_at": sqlite_time(event.occurred_at),
                    "received_at": sqlite_time(event.received_at),
                    "raw_body_at": at,
                    "raw_body_length": len(event.raw_body),
                    "headers": event.headers,
                }
            )
            bodies.append(event.raw_body)
            at += len(event.raw_body)
        return {"rows": orjson.dumps(rows).decode(), "bodies": b"".join(bodies)}

    @staticmethod
    def payment_parameters(payments: list[dict[str, Any]]) -> dict[str, Any]:
        for payment in payments:
            for name in ("first_seen_at", "last_event_at", "status_occurred_at"):
                payment[name] = sqlite_time(payment[name])
        return {"rows": orjson.dumps(payments).decode()}


def sqlite_json_rows(columns: Sequence[Column[Any]]) -> Select[*tuple[Any, ...]]:
    """`SELECT value ->> 'name', ... FROM json_each(:rows) WHERE 1 = 1`: the rows of one parameter, a JSON
    array of objects keyed by column name (SQLite only). JSON columns are read with `->`, as JSON text;
    a binary column `name` is the slice `name_at`, `name_length` of the parameter `bodies`. The WHERE
    is SQLite's: an INSERT ... SELECT with an ON CONFLICT clause needs one."""
    value = func.json_each(bindparam("rows")).table_valued("value").alias("batch").c.value

    def read(column: Column[Any]) -> ColumnElement[Any]:
        if isinstance(column.type, LargeBinary):
            at, length = (value.op("->>")(_key(f"{column.name}_{part}")) for part in ("at", "length"))
            # A BLOB parameter of no bytes reads as NULL in substr(): when every body is empty.
            return func.coalesce(func.substr(bindparam("bodies"), at, length), literal_column("x''"))
        return value.op("->" if isinstance(column.type, JSON) else "->>")(_key(column.name))

    return select(*(read(column).label(column.name) for column in columns)).where(true())


def _key(name: str) -> ColumnElement[Any]:
    # A column name, written into the SQL: the statements take only the batch as parameters.
    return literal_column(f"'{name}'")


class PostgresSql:
    """A batch as one statement on PostgreSQL: the events inserted from one JSON parameter
    (`postgres_json_rows`), the new ones folded into payments (`projection.fold_select`, in a second
    data-modifying CTE), and the new rows' keys returned. Measured against the events and the payments
    as two statements and a COMMIT: the event loop no longer waits out four round trips per batch, each
    taking its turn behind the deliveries, and psycopg encodes one text parameter in C instead of an
    array per column in Python (BENCHMARKS.md)."""

    def __init__(self, dialect: Dialect) -> None:
        table = cast(Table, Event.__table__)
        inserted = (
            new_events(postgresql.insert(table), postgres_json_rows)
            .returning(table.c.id, *(table.c[name] for name in projection.FACTS), table.c.event_id)
            .cte("inserted")
        )
        folded = projection.upsert_statement("postgresql", rows=projection.fold_select(inserted))
        statement = select(inserted.c.id, inserted.c.provider, inserted.c.event_id).add_cte(
            folded.cte("folded")
        )
        self.write_batch = str(statement.compile(dialect=dialect))


def postgres_json_rows(columns: Sequence[Column[Any]]) -> Select[*tuple[Any, ...]]:
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
    """`rows` as the JSON array `postgres_json_rows` reads. orjson writes dataclasses as objects and
    datetimes as RFC 3339 with their offset; the server converts them to UTC."""
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


class SqliteBatches:
    """Writes batches to SQLite, one at a time, synchronously: run by the writer process
    (sqlite_writer.py), since sqlite3 has no asynchronous driver and a commit waits for fsync."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sql = SqliteSql(engine.dialect)
        self._connection: PoolProxiedConnection | None = None
        dbapi = engine.dialect.loaded_dbapi
        # As on PostgreSQL: orjson refuses an integer past 64 bits or a lone surrogate; sqlite_time a
        # naive time, and event_parameters a NUL, with a ValueError. Like the driver's own two, each
        # blames one row.
        self.row_errors: tuple[type[Exception], ...] = (
            dbapi.IntegrityError,
            dbapi.DataError,
            orjson.JSONEncodeError,
            ValueError,
        )

    def write(self, events: Sequence[NormalizedEvent]) -> list[bool]:
        # One long-lived connection: the writer is its only user, and a pool checkout per batch would
        # cost a pre-ping each time. It is replaced after any error.
        if self._connection is None:
            self._connection = self._engine.raw_connection()
        batch = Batch.plan(events)
        cursor = self._connection.cursor()
        try:
            cursor.execute(self._sql.insert_events, self._sql.event_parameters(batch.unique))
            inserted = {(provider, event_id): row_id for row_id, provider, event_id in cursor.fetchall()}
            new = [(inserted[key], e) for e in batch.unique if (key := (e.provider, e.event_id)) in inserted]
            if payments := projection.fold(new):
                cursor.execute(self._sql.upsert_payments, self._sql.payment_parameters(payments))
        except BaseException:
            self._connection.rollback()
            raise
        finally:
            cursor.close()
        self._connection.commit()  # only now may a delivery of this batch be acknowledged
        return batch.outcomes(inserted)

    def reset(self) -> None:
        """Drop the connection after an error; the next write opens a new one."""
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.invalidate()
            self._connection = None


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

    async def open(self) -> None:
        pass  # connected on first write: a database that is down at start-up is then a 503, not a crash

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
