"""Taking SQLite's write lock as soon as another connection frees it: `ingest.sqlite_writer.take_write_lock`
(the batch writer's, by BEGIN IMMEDIATE tried again rather than waited for in SQLite's busy handler) and
`database.write_when_free` (a background writer's transaction, begun the same way), whose transaction
lands once, whole."""

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

from sqlalchemy import Connection, create_engine, event, text

from database import SQLITE_BUSY_TIMEOUT_MS, sqlite_pragmas, write_when_free
from ingest.sqlite_writer import take_write_lock


class Tries:
    """Counts the BEGIN IMMEDIATE statements a sqlite3 connection runs, and says when the count
    reaches `wanted` (a second try: the first found the lock held, and the writer did not block in it)."""

    def __init__(self, wanted: int = 2) -> None:
        self.count = 0
        self.wanted = wanted
        self.reached = threading.Event()

    def __call__(self, statement: str) -> None:
        if statement.strip().upper() == "BEGIN IMMEDIATE":
            self.count += 1
            if self.count >= self.wanted:
                self.reached.set()


def test_the_batch_writer_tries_for_the_lock_again_and_takes_it_once_it_is_free(tmp_path: Path) -> None:
    path = tmp_path / "lock.db"
    with closing(sqlite3.connect(path)) as setup:
        for statement in sqlite_pragmas("FULL"):
            setup.execute(statement)
        setup.execute("CREATE TABLE rows (what TEXT)")
        setup.commit()
    holder = sqlite3.connect(path, check_same_thread=False)
    writer = sqlite3.connect(path, check_same_thread=False)
    for statement in sqlite_pragmas("FULL"):
        writer.execute(statement)
    tries = Tries()
    writer.set_trace_callback(tries)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO rows VALUES ('holder')")
    thread = threading.Thread(target=lambda: take_write_lock(writer, wait_seconds=10))
    thread.start()
    try:
        assert tries.reached.wait(10)
        assert thread.is_alive()  # still trying while the lock is held
        holder.commit()
        thread.join(10)
        assert not thread.is_alive()
        assert writer.in_transaction
        writer.execute("INSERT INTO rows VALUES ('writer')")
        writer.commit()
        assert [row for (row,) in holder.execute("SELECT what FROM rows ORDER BY rowid")] == [
            "holder",
            "writer",
        ]
        assert writer.execute("PRAGMA busy_timeout").fetchone() == (10_000,)
    finally:
        holder.close()
        writer.close()


def test_the_batch_writer_gives_up_with_sqlites_own_error_after_its_wait(tmp_path: Path) -> None:
    path = tmp_path / "lock.db"
    holder = sqlite3.connect(path)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN IMMEDIATE")
    with closing(sqlite3.connect(path)) as writer:
        try:
            take_write_lock(writer, wait_seconds=0.02)
        except sqlite3.OperationalError as exc:
            assert exc.sqlite_errorcode == sqlite3.SQLITE_BUSY
        else:
            raise AssertionError("the lock was taken while another connection held it")
        assert not writer.in_transaction
        assert writer.execute("PRAGMA busy_timeout").fetchone() == (20,)
    holder.close()


def test_a_write_waiting_for_the_sqlite_lock_lands_once_after_the_holder_commits(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'lock.db'}", connect_args={"check_same_thread": False})
    tries = Tries()

    @event.listens_for(engine, "connect")
    def pragmas(dbapi_connection: sqlite3.Connection, _: object) -> None:
        for statement in sqlite_pragmas("FULL"):
            dbapi_connection.execute(statement)
        dbapi_connection.set_trace_callback(tries)

    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE rows (what TEXT)"))
    written = 0

    def write(connection: Connection) -> None:
        nonlocal written
        written += 1
        connection.execute(text("INSERT INTO rows VALUES ('first')"))
        connection.execute(text("INSERT INTO rows VALUES ('second')"))

    holder = engine.connect()
    holder.execute(text("INSERT INTO rows VALUES ('holder')"))  # holds the write lock until its commit
    writer = engine.connect()
    thread = threading.Thread(target=lambda: write_when_free(writer, lambda: write(writer)))
    thread.start()
    try:
        assert tries.reached.wait(10)
        assert written == 0  # nothing of the transaction runs before it holds the lock
        holder.commit()
        thread.join(10)
        assert not thread.is_alive()
        assert written == 1
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT what FROM rows ORDER BY rowid")).scalars().all()
            assert rows == ["holder", "first", "second"]
        # The connection goes back to the pool waiting as every other does.
        busy_timeout = writer.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
        assert busy_timeout == SQLITE_BUSY_TIMEOUT_MS
    finally:
        holder.close()
        writer.close()
        engine.dispose()
