"""Running the read API's database work without blocking the event loop (`Reader`).

Routes that use a Session or a connection hand their work to the reader's own threads; a payment's
history, a precompiled statement (api/precompiled.py), runs on the event loop itself.
"""

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from psycopg import AsyncConnection, AsyncCursor
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Connection, Dialect, Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from api.precompiled import PrecompiledSelect
from database import async_connect_args, make_sessionmaker

T = TypeVar("T")


class ReadConnection(AsyncConnection[Any]):
    """psycopg's asynchronous connection with one cursor kept for the reads run on it: a new cursor for
    every read was a large part of a history read's client CPU (BENCHMARKS.md)."""

    _cursor: "AsyncCursor[Any] | None" = None

    @property
    def reads(self) -> "AsyncCursor[Any]":
        """The cursor, results in binary: fewer bytes to parse a row."""
        if self._cursor is None:
            self._cursor = self.cursor(binary=True)
        return self._cursor


class Reader:
    """Runs the read API's database work without blocking the event loop.

    Routes that use a Session or a connection hand their work to threads of the reader's own, one
    hand-off per request to a plain executor (anyio's thread pool, FastAPI's default, costs several
    times the query it runs); as many threads as the pool has connections, so a thread never waits
    for one.

    Precompiled statements (a payment's history, api/precompiled.py) run on the event loop itself,
    without the hand-off to a thread and back (BENCHMARKS.md).
    On PostgreSQL they run on psycopg's asynchronous connections from psycopg_pool's pool, `threads` of
    them, opened in the background from the first read on. The pool hands a returned connection to the
    request that has waited longest, so under load no request waits behind newcomers; it replaces a
    connection that failed. A request waits for a connection at most the connect timeout: while the
    database is down, its reads are answered 503 after that.
    On SQLite they run on one connection of the loop's own: in WAL mode a reader never waits for the
    writer, and an indexed page of history is tens of microseconds of work. Its busy timeout is zero,
    so the rare moment SQLite cannot start a read at once (recovering after a crash) is answered 503
    rather than stalling the loop.
    """

    def __init__(
        self, engine: Engine, *, threads: int, connect_timeout: int = 10, statement_timeout_ms: int = 5000
    ) -> None:
        self.engine = engine
        self.sessionmaker = make_sessionmaker(engine)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="reader")
        # Precompiled reads run on the engine's own driver (psycopg or sqlite3): its dialect compiles them.
        self.dialect: Dialect = engine.dialect
        self.pool: AsyncConnectionPool[ReadConnection] | None = None
        if engine.dialect.name == "postgresql":
            conninfo, kwargs = async_connect_args(
                engine, connect_timeout=connect_timeout, statement_timeout_ms=statement_timeout_ms
            )
            # Opened by the first read, on the event loop it serves: a database that is down at
            # start-up gives 503s until it is back, not a failed start.
            self.pool = AsyncConnectionPool(
                conninfo,
                connection_class=ReadConnection,
                kwargs=kwargs,
                min_size=threads,
                max_size=threads,
                timeout=connect_timeout,
                open=False,
                name="history",
            )
        self._sqlite: Any = None  # SQLite: the loop's own connection
        dbapi = engine.dialect.loaded_dbapi
        # Errors that mean the database cannot be read right now (documented as 503 storage_unavailable),
        # from SQLAlchemy and from the driver alike. psycopg_pool's (no connection in time, pool closed)
        # are psycopg's OperationalError.
        self.unavailable: tuple[type[Exception], ...] = (
            OperationalError,
            InterfaceError,
            PoolTimeout,
            dbapi.OperationalError,
            dbapi.InterfaceError,
        )

    async def run(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def with_connection(self, work: Callable[[Connection], T]) -> T:
        def run() -> T:
            with self.engine.connect() as connection:
                return work(connection)

        return await self.run(run)

    async def with_session(self, work: Callable[[Session], T]) -> T:
        def run() -> T:
            with self.sessionmaker() as session:
                return work(session)

        return await self.run(run)

    async def select(self, statement: PrecompiledSelect, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of a precompiled SELECT, read on the event loop."""
        if self.pool is None:
            return self._select_sqlite(statement, values)
        if self.pool.closed:
            await self.pool.open()
        # In autocommit, as the connections are opened: each SELECT is its own transaction. Not through
        # pool.connection(), whose transaction handling, moot in autocommit, costs as much as the pool.
        connection = await self.pool.getconn()
        try:
            return await statement.fetch(connection.reads, values)
        finally:
            await self.pool.putconn(connection)  # one that failed is replaced by the pool

    def _select_sqlite(
        self, statement: PrecompiledSelect, values: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        connection: Any = self._sqlite
        if connection is None:
            pooled = self.engine.raw_connection()  # the engine's connect options and pragmas apply
            pooled.detach()
            connection = self._sqlite = pooled.dbapi_connection
            connection.execute("PRAGMA busy_timeout=0")
        try:
            cursor = connection.cursor()
            try:
                return statement.execute(cursor, values)
            finally:
                cursor.close()
        except BaseException:
            self._sqlite = None
            with contextlib.suppress(Exception):
                connection.close()
            raise

    async def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self.pool is not None:
            await self.pool.close()
        if self._sqlite is not None:
            with contextlib.suppress(Exception):
                self._sqlite.close()
            self._sqlite = None
