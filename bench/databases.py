"""Throwaway databases: a fresh SQLite file or a fresh PostgreSQL database for every run."""

import secrets
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

PG_ADMIN = "postgresql://root@127.0.0.1:5432/test"
PG_START_TIMEOUT_S = 60


@dataclass(frozen=True, slots=True)
class Database:
    kind: str  # "sqlite" or "postgresql"
    url: str  # as the servers read it from DATABASE_URL

    def scalar(self, query: str) -> Any:
        """The first column of the first row; queries are the harness's own constants."""
        if self.kind == "sqlite":
            with closing(sqlite3.connect(self.url.removeprefix("sqlite:///"))) as connection:
                row = connection.execute(query).fetchone()
        else:
            with psycopg.connect(self.url) as pg:
                row = pg.execute(query.encode()).fetchone()
        return row[0] if row else None

    def count_rows(self, table: str) -> int | None:
        """Rows in `table`, or None when the table does not exist (the server never created it)."""
        try:
            return int(self.scalar(f"SELECT count(*) FROM {table}"))
        except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):
            return None


@contextmanager
def fresh_sqlite(directory: Path, name: str) -> Iterator[Database]:
    path = directory / f"{name}.db"
    yield Database("sqlite", f"sqlite:///{path}")
    for leftover in directory.glob(f"{path.name}*"):  # -wal, -shm, and any lock file beside it
        leftover.unlink(missing_ok=True)


def ensure_postgres() -> None:
    """Starts this machine's cluster if it is down; the harness needs nothing else from it."""
    try:
        psycopg.connect(PG_ADMIN, connect_timeout=3).close()
        return
    except psycopg.OperationalError:
        pass
    version = next(Path("/etc/postgresql").iterdir()).name
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
        check=True,
        timeout=PG_START_TIMEOUT_S,
    )
    psycopg.connect(PG_ADMIN, connect_timeout=10).close()


@contextmanager
def fresh_postgres() -> Iterator[Database]:
    name = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield Database("postgresql", f"postgresql://root@127.0.0.1:5432/{name}")
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            # FORCE: a server killed mid-run may leave connections open that would block the drop.
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def fresh(kind: str, directory: Path, name: str) -> Iterator[Database]:
    with fresh_sqlite(directory, name) if kind == "sqlite" else fresh_postgres() as database:
        yield database
