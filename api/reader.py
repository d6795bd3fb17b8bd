"""Running the read API's database work without blocking the event loop (`Reader`).

Routes that use a Session or a connection hand their work to the reader's own threads; a payment's
history, a precompiled statement (api/precompiled.py), runs on the event loop itself.
"""

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Generic, TypeVar

import asyncpg
from sqlalchemy import Connection, Dialect, Engine
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from api.precompiled import PrecompiledSelect
from database import make_sessionmaker

T = TypeVar("T")


S = TypeVar("S")


class Slots(Generic[S]):
    """A fixed set of things (connections) lent out first come, first served: a returned one goes
    straight to the longest waiter. With an asyncio.Queue, a request arriving between the return and
    the waiter's wake-up took it first, and the waiter went back to the end of the line, which showed
    in the history's p99 (BENCHMARKS.md). asyncpg's own pool hands out through a LifoQueue, the same
    unfair hand-over."""

    def __init__(self, items: list[S]) -> None:
        self._free: deque[S] = deque(items)
        self._waiters: deque[asyncio.Future[S]] = deque()

    async def take(self) -> S:
        if self._free and not self._waiters:
            return self._free.popleft()
        waiter: asyncio.Future[S] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give(waiter.result())  # handed over as the wait was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def give(self, item: S) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        self._free.append(item)

    def drain(self) -> list[S]:
        """What is not lent out, taken for good (at shutdown)."""
        items, self._free = list(self._free), deque()
        return items


class Reader:
    """Runs the read API's database work without blocking the event loop.

    Routes that use a Session or a connection hand their work to threads of the reader's own, one
    hand-off per request to a plain executor (anyio's thread pool, FastAPI's default, cost several
    times the query it ran); as many threads as the pool has connections, so a
    thread never waits for one.

    Precompiled statements (a payment's history, api/precompiled.py) run on the event loop itself: the
    hand-off to a thread and back was about half of such a read's latency. On PostgreSQL they use
    asyncpg's connections, whose client CPU a read is well under psycopg's (BENCHMARKS.md: psycopg's
    pool was tried and missed the history's p99 target), up to `threads` of them, opened on first use
    and replaced after any error.
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
        # What the precompiled reads are compiled for: on PostgreSQL asyncpg's dialect, since they run on
        # asyncpg's connections.
        postgres = engine.dialect.name == "postgresql"
        self.dialect: Dialect = PGDialect_asyncpg() if postgres else engine.dialect  # type: ignore[no-untyped-call]
        self._connect = partial(
            connect_asyncpg,
            engine,
            connect_timeout=connect_timeout,
            statement_timeout_ms=statement_timeout_ms,
        )
        # PostgreSQL: a slot per connection, None until opened (or after an error).
        self._slots: Slots[asyncpg.Connection | None] = Slots([None] * threads)
        self._sqlite: Any = None  # SQLite: the loop's own connection
        dbapi = engine.dialect.loaded_dbapi
        # Errors that mean the database cannot be read right now (documented as 503 storage_unavailable),
        # from SQLAlchemy and from the driver alike.
        self.unavailable: tuple[type[Exception], ...] = (
            OperationalError,
            InterfaceError,
            PoolTimeout,
            dbapi.OperationalError,
            dbapi.InterfaceError,
            *ASYNCPG_UNAVAILABLE,
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
        if self.engine.dialect.name == "sqlite":
            return self._select_sqlite(statement, values)
        connection = await self._slots.take()
        try:
            if connection is None:
                try:
                    connection = await self._connect()
                except Exception as exc:
                    # Whatever the server answered (not accepting connections, starting up, out of
                    # slots), a read that cannot connect finds the database unavailable, as psycopg's
                    # OperationalError says for all of them.
                    raise ConnectFailed(type(exc).__name__) from exc
            # Outside a transaction block, as asyncpg runs it: each SELECT is its own transaction.
            rows = await statement.fetch(connection, values)
        except BaseException:
            if connection is not None:
                connection.terminate()
            self._slots.give(None)
            raise
        self._slots.give(connection)
        return rows

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
        for connection in self._slots.drain():
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.close(timeout=1)
        if self._sqlite is not None:
            with contextlib.suppress(Exception):
                self._sqlite.close()
            self._sqlite = None


async def connect_asyncpg(
    engine: Engine, *, connect_timeout: int, statement_timeout_ms: int
) -> asyncpg.Connection:
    """An asyncpg connection to the engine's PostgreSQL database, for the reads on the event loop."""
    # asyncpg sends URL parameters it does not know to the server as settings, and the server refuses
    # libpq's own (connect_timeout, options, keepalives...): only those asyncpg reads are kept.
    query = {key: value for key, value in engine.url.query.items() if key in ASYNCPG_URL_PARAMETERS}
    return await asyncpg.connect(
        engine.url.set(drivername="postgresql", query=query).render_as_string(hide_password=False),
        timeout=connect_timeout,
        server_settings={"statement_timeout": str(statement_timeout_ms)},
    )


ASYNCPG_URL_PARAMETERS = frozenset(
    {
        "host",
        "port",
        "passfile",
        "service",
        "sslmode",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslcrl",
        "sslpassword",
        "sslnegotiation",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "target_session_attrs",
        "krbsrvname",
        "gsslib",
    }
)


class ConnectFailed(Exception):
    """A read's connection to PostgreSQL could not be opened."""


# asyncpg's errors that mean the database cannot be read right now, as psycopg's OperationalError and
# InterfaceError say: a connection that could not be opened (ConnectFailed, whatever the server said),
# one that failed or was lost (class 08, and asyncpg's own InterfaceError), a server out of resources
# (53) or stopping, or cancelling the statement at its timeout (57), and a reset socket (OSError).
ASYNCPG_UNAVAILABLE: tuple[type[Exception], ...] = (
    ConnectFailed,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.OperatorInterventionError,
    OSError,
)
