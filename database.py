"""Engines and sessions for SQLite (default) and PostgreSQL, and the settings every connection gets.

The service talks to each database through one driver: psycopg for PostgreSQL (SQLAlchemy's engine on
threads, and psycopg's asynchronous connections for the writer's batches on the event loop), sqlite3
for SQLite. Reads are run by `api.reader.Reader`; batches by the sinks in `ingest.sinks`.
"""

import sqlite3
from collections.abc import Callable
from typing import Any, Final, TypeVar

import psycopg
from sqlalchemy import Connection, Dialect, Engine, create_engine, event, make_url, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from ingest.sqlite_writer import take_write_lock

T = TypeVar("T")
SQLITE_BUSY_TIMEOUT_MS: Final = 5000


def normalise_url(raw: str) -> URL:
    """`postgresql://` and `postgres://` (as hosting platforms hand them out) use the driver we ship."""
    url = make_url(
        "postgresql://" + raw.removeprefix("postgres://") if raw.startswith("postgres://") else raw
    )
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


def sqlite_pragmas(synchronous: str) -> tuple[str, ...]:
    """Run on every SQLite connection: the engine's, and the writer process's (ingest/sqlite_writer.py)."""
    # WAL lets readers run beside the writer. synchronous=FULL (the default) makes every commit survive
    # power loss, which group commit (one commit per batch) keeps affordable; NORMAL survives a crashed
    # process but not a crashed machine. busy_timeout waits out other writers.
    return (
        "PRAGMA journal_mode=WAL",
        f"PRAGMA synchronous={synchronous}",
        f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    )


def write_when_free(connection: Connection, write: Callable[[], T]) -> T:
    """`write()` in one transaction on `connection`, committed here. On SQLite the transaction begins
    by taking the write lock as soon as it is free (`ingest.sqlite_writer.take_write_lock`, as the
    batch writer does), so a background writer (forwarding's relay, a destination's worker) neither
    sleeps in SQLite's busy handler after the lock is free nor holds up the ingest writer behind it."""
    with connection.begin():
        if connection.dialect.name == "sqlite":
            dbapi_connection = connection.connection.dbapi_connection
            assert isinstance(dbapi_connection, sqlite3.Connection)
            take_write_lock(dbapi_connection, wait_seconds=SQLITE_BUSY_TIMEOUT_MS / 1000)
        return write()


def sqlite_connect_args(settings: Settings) -> dict[str, Any]:
    return {"check_same_thread": False, "timeout": settings.store_timeout_seconds}


def _run_on_connect(statements: tuple[str, ...]) -> Callable[[Any, Any], None]:
    def apply(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for statement in statements:
            cursor.execute(statement)
        cursor.close()

    return apply


def make_engine(settings: Settings) -> Engine:
    url = normalise_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args=sqlite_connect_args(settings),
            pool_size=settings.db_pool_size,
            pool_timeout=settings.store_timeout_seconds,
        )
        event.listen(engine, "connect", _run_on_connect(sqlite_pragmas(settings.sqlite_synchronous)))
        return engine
    return create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        # Bounded waits everywhere: a pool that is exhausted or a server that is gone fails fast (503)
        # instead of holding a request forever.
        pool_timeout=settings.store_timeout_seconds,
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": settings.db_connect_timeout_seconds,
            "options": f"-c statement_timeout={settings.statement_timeout_ms}",
        },
    )


async def connect_async(
    engine: Engine, *, connect_timeout: int, statement_timeout_ms: int
) -> "psycopg.AsyncConnection[Any]":
    """psycopg's asynchronous connection to the engine's PostgreSQL database, for the writer's batches,
    which run on the event loop. In autocommit mode: each batch is one statement, its own transaction.

    Sequential scans are off for it: the batch statements find every row they touch by key (a stored
    event for its delivery count, a signed key's holder), for which an index scan is always right. psycopg
    prepares a statement after a few executions and the server then keeps one plan for it; planned while
    the table was still small (a new database), that plan scanned the whole table for each lookup as the
    table grew, until the next ANALYZE (BENCHMARKS.md, "Delivery counts")."""
    return await psycopg.AsyncConnection.connect(
        engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
        connect_timeout=connect_timeout,
        options=f"-c statement_timeout={statement_timeout_ms} -c enable_seqscan=off",
        autocommit=True,
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def compile_for(dialect: Dialect) -> Dialect:
    """The dialect hot statements are compiled for: sqlite3 takes :named parameters as well as its
    default ?, and named parameters let one dict per execution serve both databases (psycopg takes
    %(name)s)."""
    return sqlite.dialect(paramstyle="named") if dialect.name == "sqlite" else dialect
