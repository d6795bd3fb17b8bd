"""SQLite's writer process (ingest/sqlite_writer.py): it never outlives the app, and losing it costs the
batch in hand a 503, never a 2xx, while the next write starts a new one."""

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import Engine

from database import make_engine
from errors import StorageUnavailable
from ingest.sinks import SqliteProcessSink, sqlite_writer_setup
from ingest.store import EventWriter
from ops import migrate
from tests.conftest import make_settings
from tests.live import LoggedServer, stored_bodies, wait_until
from tests.support import an_event, razorpay_delivery, razorpay_event


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting to be reaped counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped between the open and the read
        return True


def sqlite_sink(engine: Engine) -> SqliteProcessSink:
    return SqliteProcessSink(
        sqlite_writer_setup(engine, make_settings(engine.url.render_as_string(hide_password=False)))
    )


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'webhooks.db'}"
    migrate.upgrade_to_head(url)
    engine = make_engine(make_settings(url))
    yield engine
    engine.dispose()


def test_a_lost_process_fails_its_batch_then_the_next_write_starts_another(
    sqlite_engine: Engine,
) -> None:
    first, lost, retried = an_event(), an_event(), an_event()

    async def run() -> list[bool | BaseException]:
        sink = sqlite_sink(sqlite_engine)
        writer = EventWriter([sink], batch_max=16, queue_max=100, timeout=10)
        assert sink.pid is None
        await writer.start()
        try:
            assert sink.pid is not None  # started with the writer, before the first delivery waits
            outcomes: list[bool | BaseException] = [await writer.store(first)]
            killed = sink.pid
            assert killed is not None
            os.kill(killed, signal.SIGKILL)
            assert await asyncio.to_thread(wait_until, lambda: gone(killed), deadline_s=10)
            for event in (lost, retried):
                try:
                    outcomes.append(await writer.store(event))
                except StorageUnavailable as exc:
                    outcomes.append(exc)
            assert sink.pid not in (None, killed)
            return outcomes
        finally:
            await writer.stop()
            assert sink.pid is None

    outcomes = asyncio.run(run())
    assert outcomes[0] is True and outcomes[2] is True
    assert isinstance(outcomes[1], StorageUnavailable)  # its batch was sent to a dead process
    assert set(stored_bodies(sqlite_engine.url.render_as_string(hide_password=False))) == {
        first.event_id,
        retried.event_id,
    }


def test_sigterm_stops_an_idle_process_and_the_next_write_starts_another(sqlite_engine: Engine) -> None:
    async def run() -> None:
        sink = sqlite_sink(sqlite_engine)
        try:
            assert await sink.write([an_event()]) == [True]
            stopped = sink.pid
            assert stopped is not None
            os.kill(stopped, signal.SIGTERM)
            assert await asyncio.to_thread(wait_until, lambda: gone(stopped), deadline_s=10)
            try:
                await sink.write([an_event()])
            except Exception:
                await sink.reset()  # as the EventWriter does: its deliveries are answered 503
            assert await sink.write([an_event()]) == [True]
            assert sink.pid not in (None, stopped)
        finally:
            await sink.close()

    asyncio.run(run())


def test_the_process_exits_when_the_app_is_killed(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'webhooks.db'}", "RAZORPAY_WEBHOOK_SECRET": "test_secret"}
    server = LoggedServer(env, log_path=tmp_path / "server.log").start()
    try:
        body, headers = razorpay_delivery(razorpay_event(event_id="evt_before_kill"))
        assert requests.post(f"{server.url}/webhooks/razorpay", data=body, headers=headers, timeout=10).ok
        below = descendants(server.pid)
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in below]
        assert [b"ingest.sqlite_writer" in command for command in commands] == [True]
    finally:
        server.kill()
    # Its stdin closed with the app: it exits by itself.
    assert wait_until(lambda: all(gone(pid) for pid in below), deadline_s=10)


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
            found += [int(child), *descendants(int(child))]
    return found
