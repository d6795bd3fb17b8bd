"""Several instances: two server processes on one PostgreSQL database, the same 1,000 events delivered
to both at once, each several times. Exactly one delivery of each event is answered "processed", every
other one "duplicate", there are exactly 1,000 rows whose delivery counts add up to every delivery, and
not one 5xx. This is how the service scales past one process or one machine: stateless processes
behind a load balancer, PostgreSQL deciding."""

import random
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from database import normalise_url
from models import Event, Payment
from tests.live import LoggedServer, Recorder, backend_database, razorpay_deliveries, report, send_all

pytestmark = pytest.mark.soak

EVENTS = 1_000
COPIES_PER_INSTANCE = 3
THREADS = 24


def test_two_instances_on_one_postgres_store_each_event_exactly_once(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with backend_database("postgresql", request=request, folder=tmp_path) as database_url:
        env = {"DATABASE_URL": database_url, "RAZORPAY_WEBHOOK_SECRET": "test_secret"}
        # Launched together: both migrate the empty database at once (serialised by an advisory lock).
        servers = [LoggedServer(env, log_path=tmp_path / f"instance-{n}.log").launch() for n in (1, 2)]
        for server in servers:
            server.wait_ready(60)
        deliveries = razorpay_deliveries(EVENTS)
        sends = deliveries * (COPIES_PER_INSTANCE * len(servers))
        random.Random(6).shuffle(sends)
        recorder = Recorder()
        try:
            # Round-robin over the two instances, request by request, from every thread.
            send_all([server.url for server in servers], sends, threads=THREADS, recorder=recorder)
        finally:
            for server in servers:
                server.stop()
        engine = create_engine(normalise_url(database_url))
        with engine.connect() as connection:
            rows = connection.scalar(select(func.count()).select_from(Event))
            distinct = connection.scalar(select(func.count(func.distinct(Event.event_id))))
            folded = connection.scalar(select(func.sum(Payment.event_count)))
            delivered = connection.scalar(select(func.sum(Event.delivery_count)))
            payments = connection.scalar(select(func.count()).select_from(Payment))
        engine.dispose()

    assert recorder.statuses() == {200: len(sends)}, "a delivery got something other than 200"
    assert recorder.codes() == {"processed": EVENTS, "duplicate": len(sends) - EVENTS}
    processed = [a.event_id for a in recorder.snapshot() if a.code == "processed"]
    assert sorted(processed) == sorted(d.event_id for d in deliveries), "an event was processed twice"
    assert (rows, distinct) == (EVENTS, EVENTS)
    assert (folded, payments) == (EVENTS, -(-EVENTS // 3))  # the projection counted each event once
    assert delivered == len(sends), "the delivery counts do not add up to the deliveries answered"
    seconds = max(a.finished for a in recorder.answers) - min(a.started for a in recorder.answers)
    report(
        "instances[postgresql]",
        instances=len(servers),
        events=EVENTS,
        deliveries=len(sends),
        rows=rows,
        five_xx=0,
        deliveries_per_s=round(len(sends) / seconds),
    )
