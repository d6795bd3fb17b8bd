"""Engine, sessions and the dialect-aware insert, for SQLite (default) and PostgreSQL."""

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
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


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def dialect_insert(engine: Engine, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's own INSERT, which has `on_conflict_do_nothing` / `on_conflict_do_update`: the
    race-free way to insert once, where a check-then-insert would let two deliveries both insert."""
    return (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(table)


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
