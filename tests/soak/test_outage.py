"""Database outage: on a throwaway PostgreSQL cluster of its own, the server is stopped (immediate
mode, a crash) under load. Meanwhile every delivery is answered 503 storage_unavailable within the store
timeout (no hang, no 500, no 2xx) and /readyz fails; once PostgreSQL is back, the same server process,
never restarted, accepts the providers' retries and every event is stored exactly once."""

import threading
import time
from pathlib import Path

import pytest
import requests

from tests.live import (
    LoggedServer,
    Recorder,
    percentile,
    razorpay_deliveries,
    ready_status,
    report,
    send_until_acked,
    stored_bodies,
    wait_until,
)
from tests.soak.pg_cluster import throwaway_cluster

pytestmark = pytest.mark.soak

EVENTS = 3_000
THREADS = 8
STORE_TIMEOUT = 5.0
ANSWER_BOUND = STORE_TIMEOUT + 0.5  # the store timeout, plus what answering itself may take


def test_postgres_outage_gives_bounded_503s_and_the_same_process_recovers(tmp_path: Path) -> None:
    with throwaway_cluster() as cluster:
        server = LoggedServer(
            {
                "DATABASE_URL": cluster.url,
                "RAZORPAY_WEBHOOK_SECRET": "test_secret",
                "STORE_TIMEOUT_SECONDS": str(STORE_TIMEOUT),
            },
            log_path=tmp_path / "server.log",
        ).start()
        pid = server.pid
        deliveries = razorpay_deliveries(EVENTS)
        recorder = Recorder(notify_at=EVENTS // 6)
        stop = threading.Event()
        loader = threading.Thread(
            target=send_until_acked,
            args=(server.url, deliveries),
            kwargs={"threads": THREADS, "recorder": recorder, "stop": stop},
            daemon=True,
        )
        loader.start()
        try:
            assert recorder.reached.wait(300), "the load never got going"
            stopping = time.monotonic()
            cluster.stop("immediate")
            down = time.monotonic()
            ready_started = time.monotonic()
            ready = requests.get(server.url + "/readyz", timeout=30)
            ready_seconds = time.monotonic() - ready_started
            read = requests.get(server.url + "/payments/pay_x", timeout=30)
            # Let the outage last while deliveries keep arriving (each retried after its 503).
            assert wait_until(
                lambda: (
                    sum(1 for a in recorder.snapshot() if a.started > down and a.status == 503) >= 200
                    and time.monotonic() - down > 3
                ),
                deadline_s=60,
            )
            restarting = time.monotonic()
            cluster.start()
            up = time.monotonic()
            loader.join(300)
        finally:
            stop.set()
            loader.join(60)
        recovered_ready = ready_status(server.url)
        alive = server.process is not None and server.process.poll() is None
        server.stop()
        stored = stored_bodies(cluster.url)

    answers = recorder.snapshot()
    while_down = [a for a in answers if a.started > down and a.finished < restarting]
    first_ack_after = min((a.finished for a in answers if a.status == 200 and a.started > up), default=None)
    assert not loader.is_alive()
    assert alive and server.pid == pid, "the server had to be restarted"
    assert (ready.status_code, ready.json()["error"]["code"]) == (503, "storage_unavailable")
    assert ready_seconds < ANSWER_BOUND
    assert (read.status_code, read.json()["error"]["code"]) == (503, "storage_unavailable")
    assert while_down, "no delivery was answered during the outage"
    assert {(a.status, a.code) for a in while_down} == {(503, "storage_unavailable")}
    assert {a.status for a in answers} <= {200, 503}, "a delivery got something else than 2xx or 503"
    assert max(a.seconds for a in answers) < ANSWER_BOUND
    assert recovered_ready == 200
    assert recorder.acked == {d.event_id for d in deliveries}
    assert set(stored) == recorder.acked
    assert all(len(bodies) == 1 for bodies in stored.values())
    report(
        "outage[postgresql]",
        events=EVENTS,
        outage_s=round(up - stopping, 1),
        answers_while_down=len(while_down),
        p50_503_ms=round(1000 * percentile([a.seconds for a in while_down], 0.5), 1),
        max_503_ms=round(1000 * max(a.seconds for a in while_down), 1),
        max_answer_ms=round(1000 * max(a.seconds for a in answers), 1),
        readyz_down_ms=round(1000 * ready_seconds, 1),
        first_ack_after_restart_s=round(first_ack_after - up, 2) if first_ack_after else None,
        total_503=sum(1 for a in answers if a.status == 503),
    )
