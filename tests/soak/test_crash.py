"""Crash durability: SIGKILL the server under load, restart it on the same database and port, let the
client resend what it never saw acknowledged. Every event that ever got a 2xx is stored, byte for byte,
and every event is stored exactly once."""

import threading
import time
from pathlib import Path

import pytest

from tests.live import (
    LoggedServer,
    Recorder,
    razorpay_deliveries,
    report,
    retry_until_acked,
    send_all,
    stored_bodies,
)

pytestmark = pytest.mark.soak

EVENTS = 5_000
THREADS = 16
KILL_AT = 0.4  # of the events acknowledged


def test_every_acknowledged_event_survives_sigkill_and_each_is_stored_once(
    database_url: str, tmp_path: Path
) -> None:
    deliveries = razorpay_deliveries(EVENTS)
    env = {"DATABASE_URL": database_url, "RAZORPAY_WEBHOOK_SECRET": "test_secret"}
    server = LoggedServer(env, log_path=tmp_path / "before-kill.log").start()
    first = Recorder(notify_at=int(EVENTS * KILL_AT))
    stop = threading.Event()
    loader = threading.Thread(
        target=send_all,
        args=([server.url], deliveries),
        kwargs={"threads": THREADS, "recorder": first, "stop": stop},
        daemon=True,
    )
    started = time.monotonic()
    loader.start()

    assert first.reached.wait(300), "the load never reached the kill point"
    server.kill()  # SIGKILL: no shutdown code runs
    killed_at = time.monotonic()
    stop.set()
    loader.join(120)
    acked_before_kill = set(first.acked)
    cut_off = [answer for answer in first.snapshot() if answer.status is None]

    restarted = LoggedServer(env, log_path=tmp_path / "after-restart.log", port=server.port).start()
    try:
        retry = retry_until_acked(
            restarted.url,
            [d for d in deliveries if d.event_id not in acked_before_kill],
            threads=THREADS,
            rounds=3,
        )
    finally:
        restarted.stop()
    stored = stored_bodies(database_url)

    assert acked_before_kill <= set(stored), "an event acknowledged before the kill is missing"
    assert {d.event_id for d in deliveries} == set(stored)
    assert all(len(bodies) == 1 for bodies in stored.values()), "an event was stored twice"
    assert all(stored[d.event_id] == [d.body] for d in deliveries), "a stored body differs from the one sent"
    assert acked_before_kill | retry.acked == {d.event_id for d in deliveries}
    assert set(first.statuses()) <= {200, None}, first.statuses()
    assert set(retry.statuses()) == {200}, retry.statuses()
    # Committed but never acknowledged (the kill cut the answer off): the provider's retry is a duplicate.
    committed_unacked = retry.codes()["duplicate"]
    assert committed_unacked <= len(cut_off) + THREADS
    report(
        f"crash[{database_url.split(':')[0]}]",
        events=EVENTS,
        acked_before_kill=len(acked_before_kill),
        cut_off_in_flight=len(cut_off),
        retried=len(retry.answers),
        retry_duplicates=committed_unacked,
        seconds_to_kill=round(killed_at - started, 1),
        lost=len(acked_before_kill - set(stored)),
    )
