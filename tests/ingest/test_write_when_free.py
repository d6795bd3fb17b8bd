"""`database.write_when_free`: a background writer on SQLite takes the write lock once another
connection frees it, by trying again rather than sleeping in SQLite's busy handler, and its
transaction lands once, whole."""

import threading
from pathlib import Path

from sqlalchemy import Connection, create_engine, event, text

from database import SQLITE_BUSY_TIMEOUT_MS, sqlite_pragmas, write_when_free


def test_a_write_waiting_for_the_sqlite_lock_lands_once_after_the_holder_commits(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'lock.db'}", connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def pragmas(dbapi_connection: object, _: object) -> None:
        for statement in sqlite_pragmas("FULL"):
            dbapi_connection.execute(statement)  # type: ignore[attr-defined]

    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE rows (what TEXT)"))
    tries = 0
    tried_while_held = threading.Event()

    def write(connection: Connection) -> None:
        nonlocal tries
        tries += 1
        if tries == 2:
            tried_while_held.set()  # the first try found the lock held: this is a try again
        # Two statements: a retry must not leave the first one's row twice.
        connection.execute(text("INSERT INTO rows VALUES ('first')"))
        connection.execute(text("INSERT INTO rows VALUES ('second')"))

    holder = engine.connect()
    holder.execute(text("INSERT INTO rows VALUES ('holder')"))  # holds the write lock until its commit
    writer = engine.connect()
    thread = threading.Thread(target=lambda: write_when_free(writer, lambda: write(writer)))
    thread.start()
    try:
        assert tried_while_held.wait(10)
        holder.commit()
        thread.join(10)
        assert not thread.is_alive()
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
