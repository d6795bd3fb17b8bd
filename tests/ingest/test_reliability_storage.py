"""When the database cannot take a write, deliveries are answered 503 storage_unavailable (so the
provider retries) within a bounded time, never a 500 and never a 2xx; once it can, the same process
stores the retries without a restart."""

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from fastapi.testclient import TestClient

from main import create_app
from tests.conftest import make_settings
from tests.live import LoggedServer, storage_outage, stored_bodies, wait_until, writes_stalled
from tests.support import razorpay_delivery, razorpay_event

STORE_TIMEOUT = 0.5
QUEUE_STORE_TIMEOUT = 1.0


def deliver(client: TestClient, event_id: str, payment_id: str = "pay_outage") -> tuple[int, str, float]:
    body, headers = razorpay_delivery(razorpay_event(event_id=event_id, payment_id=payment_id))
    started = time.monotonic()
    response = client.post("/webhooks/razorpay", content=body, headers=headers)
    answer = response.json()
    return response.status_code, answer.get("status") or answer["error"]["code"], time.monotonic() - started


def test_storage_outage_gives_503_in_bounded_time_then_the_same_app_recovers(
    client_factory: Callable[..., TestClient], database_url: str
) -> None:
    client = client_factory(store_timeout_seconds=STORE_TIMEOUT)
    assert deliver(client, "evt_before")[:2] == (200, "processed")
    assert client.get("/payments/pay_outage/events").status_code == 200  # the history's connection opens

    with storage_outage(database_url):
        during = [deliver(client, "evt_during") for _ in range(3)]
        ready = client.get("/readyz")
        read = client.get("/payments/pay_outage")
        # Twice: the first read finds its connection ended, the second cannot open a new one.
        histories = [client.get("/payments/pay_outage/events") for _ in range(2)]

    assert [(status, code) for status, code, _ in during] == [(503, "storage_unavailable")] * 3
    assert max(seconds for *_, seconds in during) < STORE_TIMEOUT + 1.0
    if database_url.startswith("postgresql"):  # SQLite's lock leaves SELECT 1 (and reads) working
        assert (ready.status_code, ready.json()["error"]["code"]) == (503, "storage_unavailable")
        assert (read.status_code, read.json()["error"]["code"]) == (503, "storage_unavailable")
        for history in histories:
            assert (history.status_code, history.json()["error"]["code"]) == (503, "storage_unavailable")
    # The abandoned write may still have landed once the lock went: then the retry is a duplicate.
    retried: list[tuple[int, str, float]] = []

    def retry_accepted() -> bool:
        retried.append(deliver(client, "evt_during"))
        return retried[-1][0] == 200

    assert wait_until(retry_accepted, deadline_s=15)
    assert retried[-1][1] in ("processed", "duplicate")
    assert client.get("/readyz").status_code == 200
    assert wait_until(lambda: client.get("/payments/pay_outage/events").status_code == 200, deadline_s=15)
    assert {event_id: len(bodies) for event_id, bodies in stored_bodies(database_url).items()} == {
        "evt_before": 1,
        "evt_during": 1,
    }


def test_read_only_sqlite_database_gives_503_not_500(tmp_path: Path) -> None:
    """SQLite only (the file's own mode). Opened read-only through its URI, since root ignores chmod."""
    path = tmp_path / "webhooks.db"
    with TestClient(create_app(make_settings(f"sqlite:///{path}"))) as writable:
        assert deliver(writable, "evt_writable")[:2] == (200, "processed")

    read_only_url = f"sqlite:///file:{path}?mode=ro&uri=true"
    settings = make_settings(read_only_url, store_timeout_seconds=STORE_TIMEOUT)
    with TestClient(create_app(settings), raise_server_exceptions=False) as read_only:
        status, code, seconds = deliver(read_only, "evt_read_only")

    assert (status, code) == (503, "storage_unavailable")
    assert seconds < STORE_TIMEOUT + 1.0
    assert list(stored_bodies(f"sqlite:///{path}")) == ["evt_writable"]


def test_full_write_queue_answers_503_at_once_and_nothing_waits_past_the_timeout(
    database_url: str, tmp_path: Path
) -> None:
    server = LoggedServer(
        {
            "DATABASE_URL": database_url,
            "RAZORPAY_WEBHOOK_SECRET": "test_secret",
            "WRITE_QUEUE_MAX": "2",
            "STORE_TIMEOUT_SECONDS": str(QUEUE_STORE_TIMEOUT),
            "WRITE_CONCURRENCY": "1",
        },  # one batch in flight, as counted below
        log_path=tmp_path / "server.log",
    ).start()
    deliveries = [razorpay_delivery(razorpay_event(event_id=f"evt_queue_{index}")) for index in range(12)]
    go = threading.Barrier(len(deliveries))

    def send(index: int) -> tuple[int, str, float]:
        body, headers = deliveries[index]
        with requests.Session() as session:
            go.wait(timeout=10)
            started = time.monotonic()
            response = session.post(server.url + "/webhooks/razorpay", data=body, headers=headers, timeout=30)
            return response.status_code, response.json()["error"]["message"], time.monotonic() - started

    try:
        with writes_stalled(database_url), ThreadPoolExecutor(len(deliveries)) as pool:
            answers = list(pool.map(send, range(len(deliveries))))
    finally:
        assert server.stop() is not None

    assert {status for status, _, _ in answers} == {503}
    turned_away = [seconds for _, message, seconds in answers if message.startswith("too many deliveries")]
    # At most one batch in the writer plus WRITE_QUEUE_MAX queued wait; everyone else is told at once.
    assert len(turned_away) >= len(deliveries) - 1 - 2 - 1
    assert max(turned_away) < 1.0
    assert max(seconds for _, _, seconds in answers) < QUEUE_STORE_TIMEOUT + 1.0


def test_sqlite_history_reads_do_not_wait_for_a_held_write_lock(tmp_path: Path) -> None:
    """On SQLite the history is read on the event loop: in WAL mode a reader never waits for the writer,
    so a write lock held elsewhere neither delays the read nor hides what was committed."""
    url = f"sqlite:///{tmp_path / 'webhooks.db'}"
    with TestClient(create_app(make_settings(url))) as client:
        assert deliver(client, "evt_committed")[:2] == (200, "processed")
        with storage_outage(url):
            started = time.monotonic()
            response = client.get("/payments/pay_outage/events")
            elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert [event["event_id"] for event in response.json()] == ["evt_committed"]
    assert elapsed < 1.0  # a reader that waited for the lock would take the 5 s busy timeout
