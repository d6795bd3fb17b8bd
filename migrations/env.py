"""Alembic environment: the database is DATABASE_URL (config.py), the target is models.py.

`alembic upgrade head` (`make migrate`) takes the same cross-process lock as the service's start-up
(migrate.migration_lock), so running it while instances start is safe. Inside the service, ops/migrate.py
hands over a connection that already holds the lock.
"""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from config import get_settings
from database import normalise_url
from models import Base
from ops import migrate

config = context.config
# Only from the command line: inside the service, logging is the service's (ops/telemetry.py).
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    url: str | None = config.attributes.get("database_url")
    return url or get_settings().database_url


def run_offline() -> None:
    """`alembic upgrade head --sql`: the SQL for a DBA to review and apply."""
    context.configure(
        url=normalise_url(database_url()),
        literal_binds=True,
        target_metadata=Base.metadata,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_on(connection: Connection) -> None:
    # Batch mode: SQLite cannot ALTER most things, so it copies the table; other databases ALTER.
    context.configure(
        connection=connection, target_metadata=Base.metadata, render_as_batch=True, compare_type=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given: Connection | None = config.attributes.get("connection")
    if given is not None:
        run_on(given)
        return
    engine = migrate.migration_engine(database_url())
    try:
        with engine.connect() as connection, migrate.migration_lock(connection):
            run_on(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
