"""Forwarding under faults, with real processes: the service killed mid-burst, NATS stopped during a
burst, a stream that refuses messages, two instances with the publishing one killed. After each, the
stream is compared with the events table: every stored event in it exactly once, and each payment's
last state message agreeing with the payments table."""

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import nats
import pytest
import requests
from nats.js.api import DiscardPolicy
from sqlalchemy import create_engine, select

from database import normalise_url
from forwarding import outbox
from models import Event, Payment
from tests.forwarding.nats_support import NatsCluster, NatsServer, StreamMessage, read_stream
from tests.live import (
    Delivery,
    LoggedServer,
    Recorder,
    backend_database,
    razorpay_deliveries,
    ready_status,
    report,
    retry_until_acked,
    send_all,
    wait_until,
)

pytestmark = pytest.mark.soak

THREADS = 16


def loader(urls: list[str], deliveries: list[Delivery], **options: Any) -> threading.Thread:
    """A thread sending `deliveries` to `urls` from THREADS connections (send_all's `options`)."""
    return threading.Thread(
        target=send_all, args=(urls, deliveries), kwargs={"threads": THREADS, **options}, daemon=True
    )


def forward_env(database_url: str, nats: NatsServer, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "RAZORPAY_WEBHOOK_SECRET": "test_secret",
        "NATS_URL": nats.url,
        **extra,
    }


def lag(database_url: str) -> int:
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as connection:
            return outbox.status(connection, stream="PAYMENTS").lag_events
    finally:
        engine.dispose()


def assert_stream_matches_table(database_url: str, messages: list[StreamMessage]) -> int:
    """Every event row in the stream exactly once, nothing else; each payment's last state message
    says what the payments table says. Returns the number of events."""
    engine = create_engine(normalise_url(database_url))
    with engine.connect() as connection:
        rows = connection.execute(select(Event.provider, Event.event_id)).all()
        payments = dict(connection.execute(select(Payment.payment_id, Payment.status)).all())
    engine.dispose()
    ids = Counter(m.headers["Nats-Msg-Id"] for m in messages)
    duplicates = {msg_id: n for msg_id, n in ids.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} messages are in the stream more than once"
    events = {msg_id for msg_id in ids if not msg_id.startswith("state:")}
    assert events == {f"{provider}:{event_id}" for provider, event_id in rows}
    last_state: dict[str, str] = {}
    for message in messages:
        if message.subject.startswith("payments.state."):
            last_state[message.body["payment_id"]] = message.body["to"]
    assert last_state == {payment: status for payment, status in payments.items() if status is not None}
    return len(rows)


def drained(database_url: str, deadline_s: float = 60) -> float:
    started = time.monotonic()
    assert wait_until(lambda: lag(database_url) == 0, deadline_s=deadline_s, interval_s=0.2), "lag stayed"
    return time.monotonic() - started


@pytest.fixture
def nats_server(tmp_path: Path) -> NatsServer:
    server = NatsServer(tmp_path / "nats").start()
    yield server  # type: ignore[misc]
    server.stop()


def test_sigkill_mid_burst_every_acknowledged_event_is_in_the_stream_once(
    database_url: str, nats_server: NatsServer, tmp_path: Path
) -> None:
    events = 3_000
    deliveries = razorpay_deliveries(events)
    env = forward_env(database_url, nats_server)
    server = LoggedServer(env, log_path=tmp_path / "before.log").start()
    first = Recorder(notify_at=int(events * 0.4))
    stop = threading.Event()
    sender = loader([server.url], deliveries, recorder=first, stop=stop)
    sender.start()
    assert first.reached.wait(120)
    server.kill()
    stop.set()
    sender.join(60)
    restarted = LoggedServer(env, log_path=tmp_path / "after.log", port=server.port).start()
    try:
        retry = retry_until_acked(
            restarted.url,
            [d for d in deliveries if d.event_id not in first.acked],
            threads=THREADS,
            rounds=3,
        )
        seconds = drained(database_url)
    finally:
        restarted.stop()
    assert first.acked | retry.acked == {d.event_id for d in deliveries}
    stored = assert_stream_matches_table(database_url, read_stream(nats_server.url))
    assert stored == events
    report(
        "forward-sigkill", events=events, acked_before_kill=len(first.acked), drain_after_s=f"{seconds:.1f}"
    )


def test_nats_down_for_ten_seconds_during_a_burst(
    database_url: str, nats_server: NatsServer, tmp_path: Path
) -> None:
    events = 3_000
    deliveries = razorpay_deliveries(events)
    server = LoggedServer(forward_env(database_url, nats_server), log_path=tmp_path / "server.log").start()
    recorder = Recorder(notify_at=events // 5)
    sender = loader([server.url], deliveries, recorder=recorder)
    try:
        sender.start()
        assert recorder.reached.wait(60)
        nats_server.stop()
        down_at = time.monotonic()
        readiness = set()
        while time.monotonic() - down_at < 10:
            readiness.add(ready_status(server.url))
            time.sleep(0.5)  # the outage's length, sampling /readyz meanwhile
        peak_lag = lag(database_url)
        nats_server.start()
        sender.join(300)
        seconds = drained(database_url)
        metrics = requests.get(server.url + "/metrics", timeout=10).text
    finally:
        server.stop()
    assert recorder.statuses() == {200: events}, "a delivery was not answered 200 during the outage"
    assert readiness == {200}
    assert "forward_lag_events 0.0" in metrics
    assert server.log().count("forwarding paused") == 1, "not one warning for the outage"
    stored = assert_stream_matches_table(database_url, read_stream(nats_server.url))
    assert stored == events
    report(
        "forward-nats-outage", events=events, lag_at_restart=peak_lag, drain_after_restart_s=f"{seconds:.1f}"
    )


def create_tiny_stream(url: str) -> None:
    async def create() -> None:
        client = await nats.connect(url)
        try:
            await client.jetstream().add_stream(
                name="PAYMENTS",
                subjects=["payments.events.>", "payments.state.>"],
                duplicate_window=3600,
                max_bytes=4096,
                discard=DiscardPolicy.NEW,
            )
        finally:
            await client.close()

    asyncio.run(create())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_stream_that_refuses_messages_leaves_ingest_alone(
    database_url: str, nats_server: NatsServer, tmp_path: Path
) -> None:
    create_tiny_stream(nats_server.url)
    server = LoggedServer(forward_env(database_url, nats_server), log_path=tmp_path / "server.log").start()
    recorder = Recorder()
    try:
        send_all([server.url], razorpay_deliveries(300), threads=8, recorder=recorder)
        refused_since = time.monotonic()
        time.sleep(8)  # the relay keeps retrying meanwhile: count its attempts over this span
        metrics = requests.get(server.url + "/metrics", timeout=10).text
        elapsed = time.monotonic() - refused_since
    finally:
        server.stop()
    assert recorder.statuses() == {200: 300}
    log = server.log()
    assert log.count("forwarding paused") == 1
    assert "maximum bytes exceeded" in log, [line for line in log.splitlines() if "forward" in line]
    refused = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("forward_publish_total{") and 'outcome="refused"' in line
    )
    # Capped exponential backoff: a refused batch is retried a few times a second at first, then every
    # 5 s; each attempt is refused from its first message to its last (at most a batch of 1,000).
    attempts_bound = (elapsed / 5 + 6) * 1000
    assert 0 < refused <= attempts_bound
    assert lag(database_url) > 0
    report("forward-refused", refused_messages=int(refused), seconds=f"{elapsed:.1f}")


def relay_pid(database_url: str) -> int | None:
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as connection:
            holder = outbox.holder(connection, stream="PAYMENTS")
    finally:
        engine.dispose()
    if holder is None:
        return None
    return int(holder.split(":", 1)[1].split(" ", 1)[0])


def test_two_instances_one_killed_the_other_publishes_the_rest_exactly_once(
    request: pytest.FixtureRequest, nats_server: NatsServer, tmp_path: Path
) -> None:
    events = 3_000
    deliveries = razorpay_deliveries(events)
    with backend_database("postgresql", request=request, folder=tmp_path) as database_url:
        env = forward_env(database_url, nats_server)
        servers = [LoggedServer(env, log_path=tmp_path / f"instance-{n}.log").start() for n in (1, 2)]
        try:
            assert wait_until(lambda: relay_pid(database_url) is not None, deadline_s=10)
            holder_pid = relay_pid(database_url)
            (publisher,) = [s for s in servers if s.pid == holder_pid]
            (survivor,) = [s for s in servers if s is not publisher]
            first = Recorder(notify_at=events // 3)
            stop = threading.Event()
            sender = loader([s.url for s in servers], deliveries, recorder=first, stop=stop)
            sender.start()
            assert first.reached.wait(120)
            publisher.kill()
            killed_at = time.monotonic()
            stop.set()
            sender.join(60)
            assert wait_until(lambda: relay_pid(database_url) == survivor.pid, deadline_s=30)
            takeover = time.monotonic() - killed_at
            retry = retry_until_acked(
                survivor.url,
                [d for d in deliveries if d.event_id not in first.acked],
                threads=THREADS,
                rounds=3,
            )
            seconds = drained(database_url)
        finally:
            for server in servers:
                server.stop()
        assert first.acked | retry.acked == {d.event_id for d in deliveries}
        stored = assert_stream_matches_table(database_url, read_stream(nats_server.url))
    assert stored == events
    assert takeover < 10
    report("forward-instances", events=events, takeover_s=f"{takeover:.1f}", drain_s=f"{seconds:.1f}")


def stream_placement(urls: list[str]) -> tuple[int, str | None]:
    """The stream's replicas and the server that leads it now ((0, None) before it exists)."""

    async def read() -> tuple[int, str | None]:
        client = await nats.connect(servers=urls)
        try:
            info = await client.jetstream().stream_info("PAYMENTS")
        except nats.js.errors.NotFoundError:
            return 0, None
        finally:
            await client.close()
        return info.config.num_replicas or 1, info.cluster.leader if info.cluster else None

    return asyncio.run(read())


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_three_node_cluster_losing_the_streams_leader_mid_burst_keeps_every_event_once(
    database_url: str, tmp_path: Path
) -> None:
    """The deployment that outgrows one machine: a NATS cluster of three, the stream on all three
    (NATS_STREAM_REPLICAS=3). The server leading the stream is SIGKILLed during a burst: the other two
    elect a leader and take the rest; then it is started again and rejoins."""
    events = 3_000
    deliveries = razorpay_deliveries(events)
    cluster = NatsCluster(tmp_path / "nats").start()
    env = {
        "DATABASE_URL": database_url,
        "RAZORPAY_WEBHOOK_SECRET": "test_secret",
        "NATS_URL": cluster.url,
        "NATS_STREAM_REPLICAS": "3",
    }
    server = LoggedServer(env, log_path=tmp_path / "server.log")
    recorder = Recorder(notify_at=events // 3)
    sender = loader([server.url], deliveries, recorder=recorder)
    try:
        server.start()
        assert wait_until(
            lambda: stream_placement(cluster.urls)[1] is not None, deadline_s=30, interval_s=0.2
        )
        replicas, leader = stream_placement(cluster.urls)
        assert replicas == 3 and leader is not None
        sender.start()
        assert recorder.reached.wait(60)
        killed = cluster.member(leader)
        killed.kill()
        sender.join(300)
        lag_after_burst = lag(database_url)
        # With one server down the other two hold a majority: the backlog drains before it returns.
        seconds = drained(database_url)
        _, new_leader = stream_placement(cluster.urls)
        killed.start()
        messages = read_stream(killed.url)  # the restarted server answers for the stream too
    finally:
        server.stop()
        cluster.stop()
    assert recorder.statuses() == {200: events}, "a delivery was not answered 200 while a node was down"
    assert new_leader not in (None, leader)
    stored = assert_stream_matches_table(database_url, messages)
    assert stored == events
    report(
        "forward-nats-cluster",
        events=events,
        lag_after_burst=lag_after_burst,
        drain_with_a_node_down_s=f"{seconds:.1f}",
        leader_before=leader,
        leader_after=new_leader,
    )
