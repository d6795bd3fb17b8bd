"""A recording load client, a live server whose log goes to a file, and raw-socket helpers.

The reliability tests judge the service by what a provider would see: every 2xx a client ever got is
recorded, so a test can later prove that each acknowledged event is stored. Nothing here sleeps to
wait for a race: waits are on events, on futures, or on polling with a deadline.
"""

import asyncio
import contextlib
import itertools
import json
import os
import queue
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from sqlalchemy import create_engine, select

from database import normalise_url
from models import Event
from tests.conftest import ROOT, LiveServer, scratch_postgres_database
from tests.support import razorpay_delivery, razorpay_event

# --- the server ---------------------------------------------------------------------------------------


class LoggedServer(LiveServer):
    """A LiveServer whose stderr goes to a file: a long run never fills (and blocks on) a pipe, and a
    test can read everything the process logged."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        log_path: Path,
        port: int | None = None,
        access_log: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(env, port=port)
        self.log_path = log_path
        self.access_log = access_log
        self.extra_args = list(extra_args)

    def launch(self) -> "LoggedServer":
        """Start the process without waiting for it to be ready (or to fail)."""
        command = [*self.command(access_log=self.access_log), *self.extra_args]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=log)
        return self

    def start(self, deadline_s: float = 30.0) -> "LoggedServer":
        self.launch().wait_ready(deadline_s)
        return self

    def wait_ready(self, deadline_s: float) -> None:
        try:
            super().wait_ready(deadline_s)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- server log ---\n{self.log()[-4000:]}") from None

    @property
    def database_url(self) -> str:
        return self.env["DATABASE_URL"]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rss_kib(self) -> int:
        """Resident memory of the server process, from /proc (Linux)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("VmRSS not found")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut of the process (not of the machine)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def terminate_within(self, deadline_s: float) -> tuple[int | None, float]:
        """SIGTERM, then (return code or None if still running at the deadline, seconds taken)."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(deadline_s)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - started


def shut_down_cleanly(code: int | None, log: str) -> bool:
    """uvicorn finishes its graceful shutdown (lifespan included), then re-raises the SIGTERM it caught
    so that a supervisor sees the signal: -SIGTERM after "Application shutdown complete." is clean."""
    return code in (0, -signal.SIGTERM) and "Application shutdown complete." in log


def report(name: str, **figures: object) -> None:
    """One line of measured figures (shown by `make soak`, which runs pytest with -rP)."""
    print(f"FIGURES {name}: " + " ".join(f"{key}={value}" for key, value in figures.items()))


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def wait_until(predicate: Callable[[], bool], *, deadline_s: float, interval_s: float = 0.05) -> bool:
    """Poll `predicate` until it holds or the deadline passes; returns whether it held."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)  # polling interval, not a wait for a race
    return predicate()


def ready_status(url: str) -> int | None:
    try:
        return requests.get(url + "/readyz", timeout=10).status_code
    except requests.RequestException:
        return None


# --- deliveries and the recording client ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    event_id: str
    body: bytes
    headers: dict[str, str]


_EVENT_TYPES = ("payment.authorized", "payment.captured", "payment.failed")


def razorpay_deliveries(count: int, *, run: str | None = None, secret: str = "test_secret") -> list[Delivery]:
    """`count` distinct signed deliveries; three events per payment so the projection is exercised."""
    run = run or uuid.uuid4().hex[:8]
    deliveries = []
    for index in range(count):
        event_id = f"evt_{run}_{index:06d}"
        payload = razorpay_event(
            event=_EVENT_TYPES[index % 3],
            payment_id=f"pay_{run}_{index // 3:06d}",
            event_id=event_id,
            created_at=1_751_885_965 + index,
        )
        body, headers = razorpay_delivery(payload, secret)
        deliveries.append(Delivery(event_id, body, headers))
    return deliveries


@dataclass(slots=True)
class Answer:
    event_id: str
    started: float  # time.monotonic() when the request was sent
    finished: float
    status: int | None  # None: no HTTP answer (connection refused or dropped)
    code: str | None  # the JSON "status" of a 2xx, or the error code otherwise
    error: str | None = None  # the exception's type when there was no answer

    @property
    def seconds(self) -> float:
        return self.finished - self.started


@dataclass
class Recorder:
    """Every answer, and the set of acknowledged (2xx) event ids; fires `reached` at `notify_at` acks."""

    notify_at: int | None = None
    answers: list[Answer] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)
    reached: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)
            if answer.status is not None and 200 <= answer.status < 300:
                self.acked.add(answer.event_id)
                if self.notify_at is not None and len(self.acked) >= self.notify_at:
                    self.reached.set()

    def statuses(self) -> Counter[int | None]:
        with self.lock:
            return Counter(answer.status for answer in self.answers)

    def codes(self) -> Counter[str | None]:
        with self.lock:
            return Counter(answer.code for answer in self.answers)

    def snapshot(self) -> list[Answer]:
        with self.lock:
            return list(self.answers)


def post(session: requests.Session, url: str, delivery: Delivery, *, timeout: float) -> Answer:
    started = time.monotonic()
    try:
        response = session.post(url, data=delivery.body, headers=delivery.headers, timeout=timeout)
    except requests.RequestException as exc:
        return Answer(delivery.event_id, started, time.monotonic(), None, None, type(exc).__name__)
    finished = time.monotonic()
    try:
        payload = response.json()
        code = payload["status"] if response.ok else payload["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = "unparseable"
    return Answer(delivery.event_id, started, finished, response.status_code, code)


def send_all(
    urls: Sequence[str],
    deliveries: Iterable[Delivery],
    *,
    threads: int,
    recorder: Recorder,
    stop: threading.Event | None = None,
    timeout: float = 30.0,
) -> None:
    """Deliver each item once from `threads` threads (round-robin over `urls`), recording every answer.

    Returns when every delivery was tried, or soon after `stop` is set (each thread finishes the
    request it has in flight, so every request sent is recorded)."""
    work: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
    for delivery in deliveries:
        work.put(delivery)
    targets = itertools.cycle([url + "/webhooks/razorpay" for url in urls])
    target_lock = threading.Lock()

    def worker() -> None:
        with requests.Session() as session:
            while stop is None or not stop.is_set():
                try:
                    delivery = work.get_nowait()
                except queue.Empty:
                    return
                with target_lock:
                    target = next(targets)
                recorder.record(post(session, target, delivery, timeout=timeout))

    pool = [threading.Thread(target=worker, name=f"load-{index}", daemon=True) for index in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout + 600)
        assert not thread.is_alive(), "a load thread did not finish"


def send_until_acked(
    url: str,
    deliveries: Sequence[Delivery],
    *,
    threads: int,
    recorder: Recorder,
    stop: threading.Event,
    backoff_s: float = 0.05,
    timeout: float = 30.0,
) -> None:
    """A provider under load: every delivery is resent until it is acknowledged (or `stop` is set),
    pausing `backoff_s` after each failure as providers back off. Returns when everything is acked."""
    work: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
    for delivery in deliveries:
        work.put(delivery)
    target = url + "/webhooks/razorpay"
    remaining = len(deliveries)
    remaining_lock = threading.Lock()
    everything_acked = threading.Event()

    def worker() -> None:
        nonlocal remaining
        with requests.Session() as session:
            while not stop.is_set() and not everything_acked.is_set():
                try:
                    delivery = work.get(timeout=0.1)
                except queue.Empty:
                    continue
                answer = post(session, target, delivery, timeout=timeout)
                recorder.record(answer)
                if answer.status is not None and 200 <= answer.status < 300:
                    with remaining_lock:
                        remaining -= 1
                        if remaining == 0:
                            everything_acked.set()
                    continue
                work.put(delivery)
                stop.wait(backoff_s)  # the provider's back-off before its retry, not a wait for a race

    pool = [
        threading.Thread(target=worker, name=f"provider-{index}", daemon=True) for index in range(threads)
    ]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout + 900)
        assert not thread.is_alive(), "a load thread did not finish"


def retry_until_acked(
    url: str, deliveries: Sequence[Delivery], *, threads: int, rounds: int, timeout: float = 30.0
) -> Recorder:
    """What a provider does: resend whatever was not acknowledged, a bounded number of rounds."""
    recorder = Recorder()
    for _ in range(rounds):
        pending = [delivery for delivery in deliveries if delivery.event_id not in recorder.acked]
        if not pending:
            break
        send_all([url], pending, threads=threads, recorder=recorder, timeout=timeout)
    return recorder


# --- what the database holds --------------------------------------------------------------------------------


def stored_bodies(database_url: str) -> dict[str, list[bytes]]:
    """event_id -> the raw bodies stored under it (a list, so a duplicate row would show)."""
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(Event.event_id, Event.raw_body)).all()
    finally:
        engine.dispose()
    stored: dict[str, list[bytes]] = {}
    for event_id, raw_body in rows:
        stored.setdefault(event_id, []).append(bytes(raw_body))
    return stored


@contextmanager
def backend_database(backend: str, *, request: pytest.FixtureRequest, folder: Path) -> Iterator[str]:
    """An empty database on `backend` for a module-scoped fixture: a SQLite file in `folder`, or a
    PostgreSQL database of its own on the test server (skips when TEST_POSTGRES_URL is not set)."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'webhooks.db'}"
        return
    with scratch_postgres_database(request.getfixturevalue("postgres_server_url")) as url:
        yield url


@contextmanager
def storage_outage(database_url: str) -> Iterator[None]:
    """While inside, the service's database refuses its writes. SQLite: another connection holds the
    write lock (BEGIN EXCLUSIVE). PostgreSQL: this test's own database stops accepting connections and
    the service's sessions are ended (the server itself, shared with others, keeps running)."""
    url = normalise_url(database_url)
    if url.get_backend_name() == "sqlite":
        holder = sqlite3.connect(url.database or "", timeout=5, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            yield
        finally:
            holder.rollback()
            holder.close()
        return
    name = url.database
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        try:
            yield
        finally:
            connection.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


@contextmanager
def writes_stalled(database_url: str) -> Iterator[None]:
    """While inside, the service's writes wait on a lock that another connection holds: SQLite's
    database write lock, or PostgreSQL's lock on the events table. Reads and connections still work."""
    url = normalise_url(database_url)
    if url.get_backend_name() == "sqlite":
        with storage_outage(database_url):
            yield
        return
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as connection:
        connection.execute("LOCK TABLE webhook_events IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            connection.rollback()


# --- raw sockets: what a client library would not send ---------------------------------------------------


def raw_request(
    port: int, head: bytes, body: bytes = b"", *, timeout: float = 10.0
) -> tuple[int, dict[str, Any]]:
    """Send bytes as given, read one response; returns (status, JSON body or {})."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # The server may answer and close before taking everything (e.g. 413).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head + body)
        return read_response(sock)


def read_response(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} bytes without a full response")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, json.loads(rest[:length]) if length else {}


def request_head(path: str, headers: Sequence[tuple[str, str]]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunked(body: bytes, *, chunk_size: int) -> bytes:
    parts = [
        f"{len(body[i : i + chunk_size]):x}\r\n".encode() + body[i : i + chunk_size] + b"\r\n"
        for i in range(0, len(body), chunk_size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


# --- many connections at once (asyncio, raw HTTP/1.1 keep-alive) -----------------------------------------


@dataclass(slots=True)
class ConnectionResult:
    statuses: list[int]
    codes: list[str]
    seconds: list[float] = field(default_factory=list)  # per request, sent to answered
    error: str | None = None


async def _one_connection(
    port: int,
    deliveries: Sequence[Delivery],
    *,
    arrived: Callable[[], None],
    start: asyncio.Event,
    timeout: float,
) -> ConnectionResult:
    result = ConnectionResult([], [])
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            finally:
                arrived()
            await start.wait()
            try:
                for delivery in deliveries:
                    headers = [*delivery.headers.items(), ("Content-Length", str(len(delivery.body)))]
                    sent = time.monotonic()
                    writer.write(request_head("/webhooks/razorpay", headers) + delivery.body)
                    await writer.drain()
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = next(
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    )
                    body = json.loads(await reader.readexactly(length))
                    status = int(head.split(b" ", 2)[1])
                    result.statuses.append(status)
                    result.codes.append(body["status"] if status < 300 else body["error"]["code"])
                    result.seconds.append(time.monotonic() - sent)
            finally:
                writer.close()
    except (OSError, TimeoutError, asyncio.IncompleteReadError, StopIteration, ValueError, KeyError) as exc:
        result.error = type(exc).__name__
    return result


def hammer(
    port: int, per_connection: Sequence[Sequence[Delivery]], *, timeout: float
) -> list[ConnectionResult]:
    """Open one connection per item of `per_connection`; once all are open, send each connection's
    deliveries one after another on it, all connections at once. Bounded by `timeout` per connection."""

    async def main() -> list[ConnectionResult]:
        start = asyncio.Event()
        waiting = len(per_connection)

        def arrived() -> None:
            nonlocal waiting
            waiting -= 1
            if waiting == 0:
                start.set()

        tasks = [
            _one_connection(port, deliveries, arrived=arrived, start=start, timeout=timeout)
            for deliveries in per_connection
        ]
        return list(await asyncio.gather(*tasks))

    return asyncio.run(main())


def environment(**values: object) -> dict[str, str]:
    """Server environment from keyword arguments (DATABASE_URL=..., STORE_TIMEOUT_SECONDS=...)."""
    return {name: str(value) for name, value in values.items()}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
