"""Bringing the database to the schema this code needs, safely when several processes start at once.

Alembic (migrations/) owns the schema. Every process that starts (each worker of each instance) calls
`prepare_schema`: when the database is already at head that is one cheap read; otherwise the process
takes a lock that all processes on this database share (a PostgreSQL advisory lock, or a file lock
beside a SQLite file), looks again, and only then upgrades. So two workers or two instances starting
on an empty database migrate it exactly once: the second waits for the first and then finds nothing to
do. `make migrate` (alembic's own command line) takes the same lock through migrations/env.py.
"""

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from config import Settings
from database import normalise_url

ROOT: Final = Path(__file__).resolve().parent.parent
# Any constant shared by every process of this service; pg_advisory_lock takes a bigint.
ADVISORY_LOCK_KEY: Final = 7_406_625_318_170_153_001


class SchemaError(RuntimeError):
    """The database's schema cannot be brought to (or is not at) the revision this code needs."""


def alembic_config(database_url: str | None = None) -> Config:
    """Config without alembic.ini: run inside the service, alembic must not reconfigure logging."""
    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


@lru_cache
def head_revisions() -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def migration_engine(database_url: str) -> Engine:
    """A one-off engine for schema work. No statement_timeout (the service's engine has one): a
    migration, or waiting for another process's migration, may take longer than a delivery may."""
    url = normalise_url(database_url)
    if url.get_backend_name() == "sqlite":
        # timeout: wait out the running instances' writes rather than fail with "database is locked".
        engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 60})
        event.listen(engine, "connect", partial(_sqlite_wal, _sqlite_lock_path(url)))
        return engine
    return create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 10})


def _sqlite_wal(lock_path: Path | None, dbapi_connection: Any, _record: Any) -> None:
    """The service's journal mode (database.py) from the file's first moment.

    Switching needs an exclusive lock, and SQLite answers "database is locked" at once, without
    waiting, to the second of two connections that both try to take it from a shared lock: so
    processes starting together on a new file switch one at a time, under the migration's file lock.
    The mode is stored in the file: once one process has switched, the others only read it."""
    cursor = dbapi_connection.cursor()
    try:
        if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
            return
        with _file_lock(lock_path):
            cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


@contextmanager
def migration_lock(connection: Connection) -> Iterator[None]:
    """Held by one process at a time per database, for as long as the block runs."""
    url = connection.engine.url
    if url.get_backend_name() == "postgresql":
        # Session-level: it survives the commits the migration makes, and is released if we die.
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        connection.commit()
        try:
            yield
        finally:
            connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
            connection.commit()
        return
    with _file_lock(_sqlite_lock_path(url)):
        yield


@contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    if path is None:  # an in-memory database belongs to one process: nobody to wait for
        yield
        return
    # A separate file: opening and closing the database file itself would drop SQLite's own locks.
    with path.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _sqlite_lock_path(url: URL) -> Path | None:
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        return None
    return Path(url.database).resolve().with_name(Path(url.database).name + "-migrate.lock")


def current_revisions(connection: Connection) -> frozenset[str]:
    revisions = frozenset(MigrationContext.configure(connection).get_current_heads())
    connection.rollback()  # end the read's implicit transaction: alembic then runs its own
    return revisions


def upgrade_to_head(database_url: str) -> None:
    """Apply the migrations this database lacks, once, however many processes call this at once."""
    heads = head_revisions()
    engine = migration_engine(database_url)
    try:
        with engine.connect() as connection:
            if current_revisions(connection) == heads:
                return
            with migration_lock(connection):
                current = current_revisions(connection)  # another process may have just done it
                if current == heads:
                    return
                _refuse_unknown_state(connection, current)
                config = alembic_config(database_url)
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
    finally:
        engine.dispose()


def require_head(database_url: str) -> None:
    """For MIGRATE_ON_START=false: start only on a database someone already migrated."""
    engine = migration_engine(database_url)
    try:
        with engine.connect() as connection:
            current = current_revisions(connection)
    finally:
        engine.dispose()
    if current != head_revisions():
        needed = _names(head_revisions())
        raise SchemaError(
            f"the database is at revision {_names(current)} but this version needs {needed}: "
            "run `make migrate` (or set MIGRATE_ON_START=true)"
        )


def prepare_schema(settings: Settings) -> None:
    if settings.migrate_on_start:
        upgrade_to_head(settings.database_url)
    else:
        require_head(settings.database_url)


def _refuse_unknown_state(connection: Connection, current: frozenset[str]) -> None:
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if unknown := current - known:
        raise SchemaError(
            f"the database is at revision {_names(frozenset(unknown))}, which this version does not know "
            "(was a newer version deployed against it?): deploy that version or restore a backup"
        )
    unversioned = not current and inspect(connection).has_table("webhook_events")
    connection.rollback()
    if unversioned:
        raise SchemaError(
            "the database has a webhook_events table but no alembic_version table (it was created before "
            "migrations): if its schema is the initial one, run `alembic stamp 0001` and then `make migrate`"
        )


def _names(revisions: frozenset[str]) -> str:
    return ", ".join(sorted(revisions)) or "<empty>"
