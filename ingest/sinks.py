"""Where a batch of events is written: the SQL of one batch, and one sink per database.

A batch is one transaction: `INSERT ... ON CONFLICT DO NOTHING RETURNING` for its events (the unique
constraints on (provider, event_id) and (provider, signed_key) decide what is new), the delivery count
of each stored event delivered again, then their fold into the payments projection, then the commit.
Events not stored that carry a signed key are settled by one more read, of the rows holding those keys:
a duplicate, or a signature reused for another body.
Rows travel as one JSON parameter, which orjson writes in C, and each database reads it with its own
JSON functions. On SQLite, in a writer process of its own (ingest/sqlite_writer.py), that is two
statements (events, then payments folded in Python) and the commit; on PostgreSQL one statement, folded
in SQL and committed as it ends.
The statements are compiled once from their Core definitions and run on the driver's own cursor:
measured, SQLAlchemy's per-execute layers (cache keys, result objects) cost more per event than the
insert itself.
"""

import asyncio
import base64
import contextlib
import os
import pickle
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from functools import partial
from typing import Any, Final, Protocol, TypeVar, cast

import orjson
import psycopg
from sqlalchemy import (
    CTE,
    JSON,
    BigInteger,
    Column,
    ColumnElement,
    Dialect,
    Engine,
    FromClause,
    LargeBinary,
    MetaData,
    Select,
    String,
    Table,
    Text,
    Update,
    and_,
    bindparam,
    case,
    column,
    exists,
    func,
    literal_column,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy import cast as type_cast
from sqlalchemy.dialects import postgresql, sqlite

from config import Settings
from database import (
    SQLITE_BUSY_TIMEOUT_MS,
    compile_for,
    connect_async,
    sqlite_connect_args,
    sqlite_pragmas,
)
from ingest import sqlite_writer
from ingest.batch import DELIVERED_ORIGIN, Batch, EventKey, Outcome, SignedKey
from ingest.sqlite_writer import MESSAGE_SIZE, WriterSetup, message, signed_key_parameters, sqlite_time
from models import Event, Payment, UTCDateTime
from payments import projection
from payments.events import NormalizedEvent


class Sink(Protocol):
    # Errors that blame one row rather than the database: the writer retries such a batch row by row.
    row_errors: tuple[type[Exception], ...]

    async def open(self) -> None:
        """Get ready to write, before the first delivery waits on it."""

    async def write(self, events: Sequence[NormalizedEvent]) -> list[Outcome]:
        """Store `events` and commit; per event, whether it was new, or None when it was refused
        (batch.Outcome). Raises when the batch was not stored: one of `row_errors` when a row is at
        fault."""

    async def reset(self) -> None:
        """Drop the connection after an error; the next write opens a new one."""

    async def close(self) -> None: ...


AnyInsert = TypeVar("AnyInsert", postgresql.Insert, sqlite.Insert)


RowsOf = Callable[[Sequence[Column[Any]]], Select[*tuple[Any, ...]]]

_rows = MetaData()
# The rows `count_deliveries` reads: one per delivery to count, as received.
DELIVERIES = Table(
    "deliveries",
    _rows,
    Column("provider", String(32)),
    Column("event_id", String(255)),
    Column("signed_key", String(255)),
    Column("raw_body", LargeBinary),
    Column("received_at", UTCDateTime()),
)
# PostgreSQL's batch statement: the events of `unique` delivered more than once in the batch
# (Batch.delivered); every other event counts one delivery, or none when recovered.
REPEATED = Table(
    "repeated",
    _rows,
    Column("provider", String(32)),
    Column("event_id", String(255)),
    Column("delivery_count", BigInteger),
    Column("last_delivered_at", UTCDateTime()),
)


def delivered_row(rows: FromClause, *, fallback: bool) -> ColumnElement[Any]:
    """The id of the stored row a delivery in `rows` (provider, event_id, signed_key, raw_body) is a
    delivery of, or NULL when it must not be counted. With a signed key: the row holding it, when that
    row holds the same body or none (retention emptied it). Without one, or (`fallback`) when no row
    holds the key: the row of its event id. A key held with another body is a reused signature
    (Batch.outcomes refuses it): NULL. Without `fallback`, a keyed delivery whose key no row holds is
    left to a later statement, which sees what other transactions have committed since."""
    events = cast(Table, Event.__table__)
    held, named = events.alias("held"), events.alias("named")
    holds_key = and_(
        held.c.signed_key == rows.c.signed_key, by_signed_key(held.c.provider) == rows.c.provider
    )
    holder = select(held.c.id).where(
        holds_key, or_(held.c.redacted_at.is_not(None), held.c.raw_body == rows.c.raw_body)
    )
    by_event_id = select(named.c.id).where(
        named.c.provider == rows.c.provider, named.c.event_id == rows.c.event_id
    )
    unheld = ~exists().where(holds_key) if fallback else rows.c.signed_key.is_(None)
    return func.coalesce(holder.scalar_subquery(), case((unheld, by_event_id.scalar_subquery())))


def add_deliveries(targets: CTE, dialect_name: str) -> Update:
    """`WITH targets ... UPDATE webhook_events SET delivery_count = delivery_count + (their deliveries),
    last_delivered_at = the later of the two WHERE id IN (the targets)`, from `targets` (target: a row
    id, deliveries, last: a time), several of which may name one row. The rows are found by their
    primary key, one lookup each: joined instead, the planner may scan the whole table while its
    statistics still count it small (a table that has just grown)."""
    table = cast(Table, Event.__table__)
    events = table.c
    mine = targets.c.target == events.id
    added = select(func.sum(targets.c.deliveries)).where(mine).scalar_subquery()
    latest = select(func.max(targets.c.last)).where(mine).scalar_subquery()
    known = func.coalesce(events.last_delivered_at, latest)
    wanted = select(targets.c.target)
    if dialect_name == "postgresql":  # = ANY(ARRAY(...)): an index scan of the primary key
        among = events.id == func.any(func.array(wanted.scalar_subquery()))
        later: ColumnElement[Any] = func.greatest(known, latest)
    else:  # SQLite looks each rowid of IN (...) up
        among = events.id.in_(wanted)
        later = func.max(known, latest)
    return (
        update(table)
        .where(among)
        .values(delivery_count=events.delivery_count + added, last_delivered_at=later)
    )


def count_deliveries(rows_of: RowsOf, dialect_name: str) -> Update:
    """`UPDATE webhook_events ...` by the deliveries in `rows_of(DELIVERIES columns)`: each stored event
    gains its deliveries, and the latest of their times. Those whose signed key is held with another
    body (refused) count nowhere: `delivered_row` decides as Batch.outcomes does, from the rows this
    statement sees."""
    rows = rows_of(list(DELIVERIES.c)).subquery("delivered")
    targets = select(
        delivered_row(rows, fallback=True).label("target"),
        literal_column("1").label("deliveries"),
        rows.c.received_at.label("last"),
    ).cte("targets")
    return add_deliveries(targets, dialect_name).add_cte(targets)


def new_events(insert: AnyInsert, rows_of: RowsOf) -> AnyInsert:
    """`INSERT INTO webhook_events (...) SELECT ... ON CONFLICT DO NOTHING`, the rows from
    `rows_of(columns)`: every column but the generated id. The unique constraints decide which are new,
    both of them: (provider, event_id) and (provider, signed_key), so no conflict target is named. The
    caller says what to return."""
    columns = [column for column in cast(Table, Event.__table__).c if column.name != "id"]
    return insert.from_select([column.name for column in columns], rows_of(columns)).on_conflict_do_nothing()


def by_signed_key(provider: ColumnElement[Any]) -> ColumnElement[Any]:
    """A holder's provider as the signed-key lookups compare it: `provider || ''`, which no index covers,
    so the only index those lookups can use is the signed key's. PostgreSQL keeps one plan for the
    writer's prepared statements; made while the table was small, where every index looked as cheap,
    it could find holders through (provider, event_id) on the provider alone, a scan of all that
    provider's rows for each lookup, which grew with the table (BENCHMARKS.md, "Where PostgreSQL
    ingest's time goes")."""
    return provider.concat(literal_column("''"))


def signed_key_holders(rows_of: RowsOf) -> Select[*tuple[Any, ...]]:
    """`SELECT provider, signed_key, raw_body FROM webhook_events JOIN (the keys) ...`: the stored body
    of each row holding one of the signed keys in `rows_of` (rows of provider and signed_key), NULL
    where retention emptied it. Batch.outcomes compares it with the body of each event not stored."""
    table = cast(Table, Event.__table__)
    wanted = rows_of([table.c.provider, table.c.signed_key]).subquery("wanted")
    return select(
        table.c.provider, table.c.signed_key, case((table.c.redacted_at.is_(None), table.c.raw_body))
    ).join_from(
        table,
        wanted,
        and_(by_signed_key(table.c.provider) == wanted.c.provider, table.c.signed_key == wanted.c.signed_key),
    )


class SqliteSql:
    """A batch as two statements on SQLite, each reading its rows from one JSON parameter (json_each):
    the events, then their fold into payments (`fold.fold`, in Python); a third, in batches that hold
    deliveries of events stored before, counts those (`count_deliveries`). The writer process runs them
    (ingest/sqlite_writer.py), with values in the form SQLite stores them (times as `sqlite_time`,
    booleans as 0/1). SQLite's JSON has no binary type and this SQLite (3.40) no unhex(), so the raw
    bodies travel as one BLOB parameter, each row naming its slice. Chosen over a statement per row
    with SQLAlchemy's conversions for the writer's CPU a delivery (BENCHMARKS.md)."""

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
        holders = signed_key_holders(sqlite_json_rows)
        self.signed_key_holders = str(holders.compile(dialect=compile_for(dialect)))
        counting = count_deliveries(sqlite_json_rows, "sqlite")
        self.count_deliveries = str(counting.compile(dialect=compile_for(dialect)))


def sqlite_writer_setup(engine: Engine, settings: Settings) -> WriterSetup:
    """What SQLite's writer process needs: the batch statements, and the connection the engine would
    open (its arguments and pragmas, database.make_engine)."""
    sql = SqliteSql(engine.dialect)
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    return WriterSetup(
        insert_events=sql.insert_events,
        upsert_payments=sql.upsert_payments,
        signed_key_holders=sql.signed_key_holders,
        count_deliveries=sql.count_deliveries,
        connect_args=tuple(args),
        connect_kwargs={**kwargs, **sqlite_connect_args(settings)},
        pragmas=sqlite_pragmas(settings.sqlite_synchronous),
        lock_wait_seconds=SQLITE_BUSY_TIMEOUT_MS / 1000,
    )


def json_time(dialect_name: str) -> Callable[[datetime], str]:
    """How a time is written into the JSON rows the readers below take: ISO 8601 for PostgreSQL, which
    casts it to its column's type; SQLite's stored form (`sqlite_time`), which is compared as text."""
    return datetime.isoformat if dialect_name == "postgresql" else sqlite_time


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
    data-modifying CTE), the events delivered again counted on their stored rows (a third), and the
    keys of the new rows and of the rows counted returned. Chosen over two statements and a COMMIT: the
    event loop does not wait out several round trips per batch, each taking its turn behind the
    deliveries, and psycopg encodes one text parameter in C instead of an array per column in Python
    (BENCHMARKS.md).

    The statement's CTEs share one snapshot, so the count finds only rows committed before it began: a
    row another transaction commits meanwhile (its ON CONFLICT waited for that commit) is counted by
    the `settle` statement after it, which also reads the rows holding the signed keys of the events
    not stored (`signed_key_holders`), in one round trip."""

    def __init__(self, dialect: Dialect) -> None:
        table = cast(Table, Event.__table__)
        counts = ("delivery_count", "last_delivered_at")
        batch = postgres_json_rows([c for c in table.c if c.name != "id" and c.name not in counts]).cte(
            "batch"
        )
        repeated = postgres_json_rows(list(REPEATED.c), parameter="repeated").subquery("repeated")
        # Constants are written into the SQL: the statement takes only the batch as parameters.
        delivered = batch.c.origin == literal_column(f"'{DELIVERED_ORIGIN}'")
        one: ColumnElement[int] = literal_column("1")
        zero: ColumnElement[int] = literal_column("0")
        computed: dict[str, ColumnElement[Any]] = {
            "delivery_count": func.coalesce(repeated.c.delivery_count, case((delivered, one), else_=zero)),
            "last_delivered_at": func.coalesce(
                repeated.c.last_delivered_at, case((delivered, batch.c.received_at), else_=null())
            ),
        }
        with_counts = batch.outerjoin(
            repeated, and_(repeated.c.provider == batch.c.provider, repeated.c.event_id == batch.c.event_id)
        )

        def rows_of(columns: Sequence[Column[Any]]) -> Select[*tuple[Any, ...]]:
            return select(
                *(computed[c.name].label(c.name) if c.name in computed else batch.c[c.name] for c in columns)
            ).select_from(with_counts)

        inserted = (
            new_events(postgresql.insert(table), rows_of)
            .returning(table.c.id, *(table.c[name] for name in projection.FACTS), table.c.event_id)
            .cte("inserted")
        )
        folded = projection.upsert_statement("postgresql", rows=projection.fold_select(inserted))
        # The rows of this batch's own inserts are not in the statement's snapshot: only events stored
        # before are found, and counted with the deliveries of them in this batch. The events this
        # statement inserted have no such row, so they are not looked up at all: in a batch of new
        # events that spares an index probe or two per event.
        stored_now = (
            select(inserted.c.event_id)
            .where(inserted.c.provider == batch.c.provider, inserted.c.event_id == batch.c.event_id)
            .exists()
        )
        again = (
            select(
                *(batch.c[name] for name in ("provider", "event_id", "signed_key", "raw_body")),
                computed["delivery_count"].label("deliveries"),
                computed["last_delivered_at"].label("last"),
            )
            .select_from(with_counts)
            .where(~stored_now)
            .subquery("again")
        )
        targets = (
            select(delivered_row(again, fallback=False).label("target"), again.c.deliveries, again.c.last)
            .add_columns(again.c.provider, again.c.event_id)
            .where(again.c.deliveries > zero)
            .cte("targets")
        )
        counted = add_deliveries(targets, "postgresql").returning(table.c.id).cte("counted")
        # Every delivery whose row was found and counted: several can name one row (a Razorpay body under
        # two header ids), and all of them were added to it.
        found = select(type_cast(null(), BigInteger), targets.c.provider, targets.c.event_id).join_from(
            targets, counted, counted.c.id == targets.c.target
        )
        statement = (
            select(inserted.c.id, inserted.c.provider, inserted.c.event_id)
            .union_all(found)
            .add_cte(folded.cte("folded"))
        )
        self.write_batch = str(statement.compile(dialect=dialect))
        counting = count_deliveries(partial(postgres_json_rows, parameter="deliveries"), "postgresql").cte(
            "counting"
        )
        self.settle = str(signed_key_holders(postgres_json_rows).add_cte(counting).compile(dialect=dialect))


def postgres_json_rows(columns: Sequence[Column[Any]], parameter: str = "rows") -> Select[*tuple[Any, ...]]:
    """`SELECT ... FROM json_to_recordset(CAST(:rows AS JSON)) AS batch(name type, ...)`: the rows of
    one parameter (`parameter`), a JSON array of objects keyed by column name (PostgreSQL only). The
    server turns each value into its column's type; binary values travel as base64 text and are decoded
    here."""

    def as_sent(column: Column[Any]) -> Any:
        return Text() if isinstance(column.type, LargeBinary) else column.type

    rows = (
        func.json_to_recordset(type_cast(bindparam(parameter), postgresql.JSON))
        .table_valued(*(column(c.name, as_sent(c)) for c in columns))
        .render_derived(parameter, with_types=True)
    )
    return select(
        *(
            func.decode(rows.c[c.name], literal_column("'base64'")).label(c.name)
            if isinstance(c.type, LargeBinary)
            else rows.c[c.name]
            for c in columns
        )
    )


def json_parameter(rows: Sequence[NormalizedEvent]) -> dict[str, str]:
    """`rows` as the JSON array `postgres_json_rows` reads. orjson writes dataclasses as objects and
    datetimes as RFC 3339 with their offset; the server converts them to UTC."""
    return {"rows": orjson.dumps(rows, default=_base64).decode()}


def batch_parameters(batch: Batch) -> dict[str, str]:
    """The parameters of PostgresSql.write_batch: the batch's events, and those of them delivered more
    than once in it (REPEATED), usually none."""
    repeated = []
    for event in batch.unique:
        if (event.provider, event.event_id) in batch.repeats:
            count, last = batch.delivered(event)
            repeated.append(
                {
                    "provider": event.provider,
                    "event_id": event.event_id,
                    "delivery_count": count,
                    "last_delivered_at": last,
                }
            )
    return {**json_parameter(batch.unique), "repeated": orjson.dumps(repeated).decode()}


def settle_parameters(unsettled: Sequence[SignedKey], uncounted: Sequence[NormalizedEvent]) -> dict[str, str]:
    """The parameters of PostgresSql.settle: the signed keys to read the holders of, and the deliveries
    to count (DELIVERIES), each body only where a signed key needs it compared."""
    deliveries = [
        {
            "provider": event.provider,
            "event_id": event.event_id,
            "signed_key": event.signed_key,
            "raw_body": None if event.signed_key is None else event.raw_body,
            "received_at": event.received_at,
        }
        for event in uncounted
    ]
    return {
        **signed_key_parameters(unsettled),
        "deliveries": orjson.dumps(deliveries, default=_base64).decode(),
    }


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


# Stopping SQLite's writer process: it finishes the batch in hand first (at most a busy timeout).
_STOP_WAIT_SECONDS: Final = 10.0
# The folder holding the app's packages, for the writer process's import path.
APP_ROOT: Final = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RelayedError(Exception):
    """An error raised in the writer process, relayed by its type's name only: its text could quote a
    row's values, which are payment data."""


class RowRefused(RelayedError):
    """The database refused a row of the batch (the writer retries the batch row by row)."""


class WriterFailed(RelayedError):
    """The batch failed for the database's sake (locked, read-only, disk full): never a 2xx."""


def _import_path() -> str:
    return os.pathsep.join(filter(None, (APP_ROOT, os.environ.get("PYTHONPATH"))))


class SqliteProcessSink:
    """The Sink for SQLite: batches go to the writer process, one at a time. It is started when the sink
    opens, and again by the next write after it is lost."""

    row_errors: tuple[type[Exception], ...] = (RowRefused,)

    def __init__(self, setup: WriterSetup) -> None:
        self._setup = setup
        self._process: asyncio.subprocess.Process | None = None
        # False from a request's send to its reply: an exchange cut short (the process died, the write
        # was cancelled) leaves a reply unread, so the process is replaced rather than reused.
        self._in_step = False

    @property
    def pid(self) -> int | None:
        """The writer process's id, while there is one."""
        return None if self._process is None else self._process.pid

    async def open(self) -> None:
        # Started with the app, so the first deliveries need not wait for it, and a writer that cannot
        # start stops the app's start-up rather than answering 503 to everything.
        if not self._in_step:
            await self._stop()
            await self._start()

    async def write(self, events: Sequence[NormalizedEvent]) -> list[Outcome]:
        await self.open()
        self._in_step = False
        outcome, detail = await self._exchange(list(events))
        self._in_step = True
        if outcome == "stored":
            return list(detail)
        raise (RowRefused if outcome == "refused" else WriterFailed)(detail)

    async def reset(self) -> None:
        # A relayed error leaves the process in step: it has dropped its connection itself.
        if not self._in_step:
            await self._stop()

    async def close(self) -> None:
        await self._stop()

    async def _start(self) -> None:
        # `python -m ingest.sqlite_writer`, run by this interpreter with the app's folder first on the
        # process's import path, whatever the app's working directory (which stays the app's, so a
        # relative DATABASE_URL names the same file).
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            sqlite_writer.__name__,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": _import_path()},
        )
        outcome, _ = await self._exchange(asdict(self._setup))
        if outcome != "ready":
            raise WriterFailed(outcome)
        self._in_step = True

    async def _exchange(self, value: object) -> tuple[str, Any]:
        assert self._process is not None and self._process.stdin and self._process.stdout
        self._process.stdin.write(message(value))
        await self._process.stdin.drain()
        (size,) = MESSAGE_SIZE.unpack(await self._process.stdout.readexactly(MESSAGE_SIZE.size))
        reply: tuple[str, Any] = pickle.loads(await self._process.stdout.readexactly(size))  # noqa: S301 (our own process)
        return reply

    async def _stop(self) -> None:
        process, self._process, self._in_step = self._process, None, False
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()  # the process exits when its stdin closes
        try:
            await asyncio.wait_for(process.wait(), _STOP_WAIT_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()


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
        )
        self._sql = sql
        self._connection: psycopg.AsyncConnection[Any] | None = None

    async def open(self) -> None:
        pass  # connected on first write: a database that is down at start-up is then a 503, not a crash

    async def write(self, events: Sequence[NormalizedEvent]) -> list[Outcome]:
        if self._connection is None:
            self._connection = await self._connect()
        batch = Batch.plan(events)
        require_aware(batch.unique)
        holders: dict[SignedKey, bytes | None] = {}
        async with self._connection.cursor() as cursor:
            await cursor.execute(self._sql.write_batch, batch_parameters(batch))
            inserted: set[EventKey] = set()
            counted: set[EventKey] = set()
            for row_id, provider, event_id in await cursor.fetchall():
                (counted if row_id is None else inserted).add((provider, event_id))
            unsettled, uncounted = batch.unsettled(inserted), batch.uncounted(inserted, counted)
            if unsettled or uncounted:
                # A statement of its own, after the batch's: ON CONFLICT waited for the transaction
                # holding a key to commit, and a row committed since the batch statement began is not in
                # that statement's snapshot, but is in this one's. It counts the deliveries the batch
                # statement could not, as `outcomes` settles them, from the same snapshot.
                await cursor.execute(self._sql.settle, settle_parameters(unsettled, uncounted))
                holders = {(provider, key): body for provider, key, body in await cursor.fetchall()}
        return batch.outcomes(inserted, holders)  # committed: each statement commits as it ends

    async def reset(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    async def close(self) -> None:
        await self.reset()


def make_sinks(engine: Engine, settings: Settings) -> list[Sink]:
    """PostgreSQL: `settings.write_concurrency` connections (one by default), each with a batch in
    flight, sharing the compiled batch statement. SQLite: one writer process, since SQLite takes one
    writer at a time."""
    if engine.dialect.name != "postgresql":
        return [SqliteProcessSink(sqlite_writer_setup(engine, settings))]
    sql = PostgresSql(engine.dialect)
    return [
        PostgresSink(
            engine,
            sql,
            connect_timeout=settings.db_connect_timeout_seconds,
            statement_timeout_ms=settings.statement_timeout_ms,
        )
        for _ in range(settings.write_concurrency)
    ]
