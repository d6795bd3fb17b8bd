"""No wedge: many connections at once each get every request answered (2xx, or 503 when the bounded
write queue is full), and the process still shuts down cleanly on SIGTERM. The soak suite repeats this
at 1, 32, 128 and 512 connections."""

import socket
from pathlib import Path

import pytest
import requests

from tests.live import (
    LoggedServer,
    hammer,
    razorpay_deliveries,
    request_head,
    shut_down_cleanly,
    stored_bodies,
)
from tests.support import razorpay_delivery, razorpay_event


@pytest.mark.parametrize(("connections", "queue_max"), [(64, 10_000)])
def test_every_connection_gets_every_answer_then_sigterm_is_clean(
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
    unique = razorpay_deliveries(connections * 3 // 2)
    sends = unique + unique  # each event twice, on different connections
    per_connection = [sends[index::connections] for index in range(connections)]

    try:
        results = hammer(server.port, per_connection, timeout=60)
    finally:
        code, seconds = server.terminate_within(15)

    assert [result.error for result in results if result.error] == []
    assert [len(result.statuses) for result in results] == [len(sent) for sent in per_connection]
    answers = [
        (status, code)
        for result in results
        for status, code in zip(result.statuses, result.codes, strict=True)
    ]
    assert set(answers) <= {(200, "processed"), (200, "duplicate"), (503, "storage_unavailable")}
    acked = {
        delivery.event_id
        for result, sent in zip(results, per_connection, strict=True)
        for delivery, status in zip(sent, result.statuses, strict=True)
        if status == 200
    }
    stored = stored_bodies(database_url)
    assert acked <= set(stored)
    assert all(len(bodies) == 1 for bodies in stored.values())
    if queue_max >= len(sends):  # nothing can be turned away: every event is processed exactly once
        assert answers.count((200, "processed")) == len(unique)
    assert shut_down_cleanly(code, server.log()), (code, seconds, server.log()[-2000:])
    assert seconds < 10


def test_a_stalled_client_cannot_hold_up_shutdown(tmp_path: Path) -> None:
    """uvicorn waits for open requests before it exits; a body that never arrives is cut off by
    BODY_READ_TIMEOUT_SECONDS, so SIGTERM still finishes (before that deadline existed, it never did)."""
    server = LoggedServer(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'webhooks.db'}", "BODY_READ_TIMEOUT_SECONDS": "1"},
        log_path=tmp_path / "server.log",
    ).start()
    body, headers = razorpay_delivery(razorpay_event())
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled:
        head = request_head("/webhooks/razorpay", [*headers.items(), ("Content-Length", "4096")])
        stalled.sendall(head + body)
        # Answered after the stalled bytes were read (one event loop, in order): the request is in flight.
        assert requests.get(server.url + "/healthz", timeout=10).status_code == 200

        code, seconds = server.terminate_within(15)

    assert shut_down_cleanly(code, server.log()), (code, server.log()[-2000:])
    assert seconds < 1 + 3
