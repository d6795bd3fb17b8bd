"""Engine, sessions and the dialect-aware insert, for SQLite (default) and PostgreSQL."""

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table, create_engine, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from config import Settings


def normalise_url(raw: str) -> URL:
    """`postgresql://` and `postgres://` (as hosting platforms hand them out) use the driver we ship."""
    url = make_url(
        "postgresql://" + raw.removeprefix("postgres://") if raw.startswith("postgres://") else raw
    )
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


def _sqlite_pragmas(synchronous: str) -> Callable[[Any, Any], None]:
    def apply(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the writer. synchronous=FULL (the default) makes every commit
        # survive power loss, which group commit (one commit per batch) keeps affordable; NORMAL
        # survives a crashed process but not a crashed machine. busy_timeout waits out other writers.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    return apply


def make_engine(settings: Settings) -> Engine:
    url = normalise_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": settings.store_timeout_seconds},
            pool_size=settings.db_pool_size,
            pool_timeout=settings.store_timeout_seconds,
        )
        event.listen(engine, "connect", _sqlite_pragmas(settings.sqlite_synchronous))
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
            "options": f"-c statement_timeout={int(settings.store_timeout_seconds * 1000)}",
        },
    )


T = TypeVar("T")


class Reader:
    """Runs the read API's database work on threads of its own, so a read never blocks the event loop.

    One hand-off per request to a plain executor: anyio's thread pool (FastAPI's default) measured at
    several times the cost of the query it ran. As many threads as the pool has connections, so a
    thread never waits for a connection. For precompiled statements (precompiled.py) each thread keeps
    one driver connection of its own, taken out of the pool: no checkout, no pre-ping round trip per
    read; after any error it is closed, and the thread's next read opens a new one.

    On SQLite, precompiled reads (a payment's history) run on the event loop itself, on a connection
    of its own: in WAL mode a reader never waits for the writer, an indexed page of history is tens of
    microseconds of work, and the hand-off to a thread and back measured as half the read's latency
    (history p99 at 32 connections 20-23 ms through a thread, 8-12 ms inline). Its busy timeout is
    zero, so the rare moment SQLite cannot start a read at once (recovering after a crash) is answered
    503 rather than stalling the loop.
    """

    def __init__(self, engine: Engine, *, threads: int) -> None:
        self.engine = engine
        self.sessionmaker = make_sessionmaker(engine)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="reader")
        self._local = threading.local()
        self._own: list[Any] = []  # every connection kept out of the pool, to close at shutdown
        self._inline = engine.dialect.name == "sqlite"
        self._loop_connection: Any = None
        dbapi = engine.dialect.loaded_dbapi
        # Errors that mean the database cannot be read right now (documented as 503 storage_unavailable),
        # from SQLAlchemy and from the driver alike.
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

    async def with_cursor(self, work: Callable[[Any], T]) -> T:
        """Run `work` with a cursor on this thread's own driver connection (on SQLite: the event loop's,
        right here)."""
        if self._inline:
            return self._on_loop(work)

        def run() -> T:
            connection = self._thread_connection()
            try:
                cursor = connection.cursor()
                try:
                    return work(cursor)
                finally:
                    cursor.close()
            except BaseException:
                self._local.connection = None
                with contextlib.suppress(Exception):
                    connection.close()
                raise

        return await self.run(run)

    def _on_loop(self, work: Callable[[Any], T]) -> T:
        connection = self._loop_connection
        if connection is None:
            connection = self._loop_connection = self._own_connection()
            connection.execute("PRAGMA busy_timeout=0")
        try:
            cursor = connection.cursor()
            try:
                return work(cursor)
            finally:
                cursor.close()
        except BaseException:
            self._loop_connection = None
            with contextlib.suppress(Exception):
                connection.close()
            raise

    def _own_connection(self) -> Any:
        """A driver connection out of the pool, kept by its user; closed at shutdown."""
        pooled = self.engine.raw_connection()  # the engine's connect options and pragmas apply
        pooled.detach()
        connection = pooled.dbapi_connection
        self._own.append(connection)
        return connection

    def _thread_connection(self) -> Any:
        connection: Any = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._own_connection()
            if self.engine.dialect.name == "postgresql":
                # Each SELECT its own transaction: nothing left open (and no snapshot held) between reads.
                # A pooled connection may come with the pre-ping's transaction open: end it first.
                connection.rollback()
                connection.autocommit = True
            self._local.connection = connection
        return connection

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for connection in self._own:
            with contextlib.suppress(Exception):
                connection.close()
        self._own.clear()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def dialect_insert(engine: Engine, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's own INSERT, which has `on_conflict_do_nothing` / `on_conflict_do_update`: the
    race-free way to insert once, where a check-then-insert would let two deliveries both insert."""
    return (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(table)


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
