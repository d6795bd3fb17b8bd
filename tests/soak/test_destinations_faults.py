"""Destinations under a crash: the service SIGKILLed while a destination that fails about half its
requests keeps it retrying. After a restart every acknowledged event is delivered, and an event is
taken twice by the destination only where its 2xx came before the kill and was not yet recorded; the
stable webhook-id is how the test (and a receiver) tells."""

import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, func, select

from database import normalise_url
from models import DestinationAttempt, DestinationDelivery
from tests.destinations.conftest import SECRET, destination
from tests.destinations.receiver import OK, Answer, Receiver
from tests.live import (
    LoggedServer,
    Recorder,
    razorpay_deliveries,
    report,
    retry_until_acked,
    send_all,
    wait_until,
)

pytestmark = pytest.mark.soak

THREADS = 8
MAX_IN_FLIGHT = 8


def delivered_counts(database_url: str) -> tuple[dict[str, str], Counter[str]]:
    """(event id -> delivery state, event id -> attempts recorded as delivered)."""
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as connection:
            states = dict(
                connection.execute(select(DestinationDelivery.event_id, DestinationDelivery.state)).all()
            )
            recorded = Counter(
                dict(
                    connection.execute(
                        select(DestinationAttempt.event_id, func.count())
                        .where(DestinationAttempt.outcome == "delivered")
                        .group_by(DestinationAttempt.event_id)
                    ).all()
                )
            )
    finally:
        engine.dispose()
    return states, recorded


def test_sigkill_during_a_retry_storm_loses_nothing_and_doubles_only_unrecorded_2xx(
    database_url: str, tmp_path: Path
) -> None:
    events = 600
    rng = random.Random(17)
    receiver = Receiver(SECRET, lambda event, index: Answer(500) if rng.random() < 0.5 else OK).start()
    path = tmp_path / "destinations.yaml"
    entry = destination(
        "storm", receiver.url, max_in_flight=MAX_IN_FLIGHT, max_attempts=1000, backoff_base_seconds=0.02
    )
    path.write_text(yaml.safe_dump({"destinations": [entry]}))
    env = {
        "DATABASE_URL": database_url,
        "RAZORPAY_WEBHOOK_SECRET": "test_secret",
        "DESTINATIONS_FILE": str(path),
        "DESTINATIONS_POLL_SECONDS": "0.2",
    }
    deliveries = razorpay_deliveries(events)
    server = LoggedServer(env, log_path=tmp_path / "before.log").start()
    restarted: LoggedServer | None = None
    try:
        first = Recorder()
        stop = threading.Event()
        loader = threading.Thread(
            target=send_all,
            args=([server.url], deliveries),
            kwargs={"threads": THREADS, "recorder": first, "stop": stop},
            daemon=True,
        )
        loader.start()
        # Kill while the storm is on: many requests made, many of them failed and being retried.
        assert wait_until(lambda: len(receiver.snapshot()) >= events // 2, deadline_s=120)
        server.kill()
        killed_at = time.monotonic()
        stop.set()
        loader.join(60)
        restarted = LoggedServer(env, log_path=tmp_path / "after.log", port=server.port).start()
        retry = retry_until_acked(
            restarted.url, [d for d in deliveries if d.event_id not in first.acked], threads=THREADS, rounds=3
        )
        acked = first.acked | retry.acked
        assert acked == {d.event_id for d in deliveries}

        def all_delivered() -> bool:
            states, _ = delivered_counts(database_url)
            return all(states.get(event_id) == "delivered" for event_id in acked)

        assert wait_until(all_delivered, deadline_s=180, interval_s=0.5), "events not delivered after restart"
    finally:
        if restarted is not None:
            restarted.stop()
        server.stop()
        receiver.stop()

    _, recorded = delivered_counts(database_url)
    assert set(recorded) == acked and set(recorded.values()) == {1}, "an event recorded delivered twice"
    taken = Counter(r.webhook_id for r in receiver.delivered())
    assert set(taken) == {f"razorpay:{event_id}" for event_id in acked}
    assert all(r.verified for r in receiver.snapshot())
    doubled = {webhook_id for webhook_id, count in taken.items() if count > 1}
    for webhook_id in doubled:
        first_2xx = min(r.at for r in receiver.delivered() if r.webhook_id == webhook_id)
        assert first_2xx < killed_at, f"{webhook_id} was taken twice, the first time after the kill"
    # At most what was in flight when the process died.
    assert len(doubled) <= MAX_IN_FLIGHT
    report(
        "destinations-sigkill",
        events=events,
        requests=len(receiver.snapshot()),
        acked_before_kill=len(first.acked),
        taken_twice=len(doubled),
    )
