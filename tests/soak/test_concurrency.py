"""No wedge at any concurrency: 1, 32, 128 and 512 connections at once (all opened before the first
request), each sending its deliveries one after another; every request is answered (2xx, or 503 when
the bounded write queue is full), and afterwards the process shuts down cleanly on SIGTERM."""

import time
from pathlib import Path

import pytest

from tests.live import (
    LoggedServer,
    hammer,
    percentile,
    razorpay_deliveries,
    report,
    shut_down_cleanly,
    stored_bodies,
)

pytestmark = pytest.mark.soak

# connections -> requests on each: about 2,000 requests per level.
LEVELS = {1: 400, 32: 40, 128: 16, 512: 4}


@pytest.mark.parametrize("queue_max", [10_000, 32])
@pytest.mark.parametrize("connections", sorted(LEVELS))
def test_every_request_is_answered_at_every_concurrency(
    database_url: str, tmp_path: Path, connections: int, queue_max: int
) -> None:
    server = LoggedServer(
        {
            "DATABASE_URL": database_url,
            "RAZORPAY_WEBHOOK_SECRET": "test_secret",
            "WRITE_QUEUE_MAX": str(queue_max),
        },
        log_path=tmp_path / "server.log",
    ).start()
    total = connections * LEVELS[connections]
    unique = razorpay_deliveries(total // 2)
    sends = unique + unique
    per_connection = [sends[index::connections] for index in range(connections)]

    try:
        started = time.monotonic()
        results = hammer(server.port, per_connection, timeout=120)
        seconds = time.monotonic() - started
    finally:
        code, shutdown_s = server.terminate_within(20)

    assert [r.error for r in results if r.error] == []
    assert sum(len(r.statuses) for r in results) == total, "a request went unanswered"
    answers = [(s, c) for r in results for s, c in zip(r.statuses, r.codes, strict=True)]
    assert set(answers) <= {(200, "processed"), (200, "duplicate"), (503, "storage_unavailable")}
    stored = stored_bodies(database_url)
    acked = {
        d.event_id
        for r, sent in zip(results, per_connection, strict=True)
        for d, status in zip(sent, r.statuses, strict=True)
        if status == 200
    }
    assert acked <= set(stored)
    assert all(len(bodies) == 1 for bodies in stored.values())
    if queue_max >= total:
        assert answers.count((200, "processed")) == len(unique)
    assert shut_down_cleanly(code, server.log()), (code, server.log()[-2000:])
    assert shutdown_s < 15
    latencies = [seconds for r in results for seconds in r.seconds]
    report(
        f"concurrency[{database_url.split(':')[0]},{connections},queue={queue_max}]",
        requests=total,
        ok=sum(1 for s, _ in answers if s == 200),
        busy_503=sum(1 for s, _ in answers if s == 503),
        requests_per_s=round(total / seconds),
        shutdown_s=round(shutdown_s, 2),
        p50_ms=round(1000 * percentile(latencies, 0.5), 1),
        p99_ms=round(1000 * percentile(latencies, 0.99), 1),
        max_ms=round(1000 * max(latencies), 1),
    )
