"""Destinations, measured: `python -m bench.destinations [--database postgresql|sqlite] [--quick]`.

1. Ingest with no destinations, and with two (a healthy local receiver and one that is down) delivered
   by the service, by `python -m cli destinations run` beside it, or owed only (the healthy one
   paused), side by side (the same wrk load, alternating, two rounds each), with the CPU each process
   group spent during the load.
2. Delivery rate to a healthy local receiver: events stored while the destination is paused, then the
   rate at which they arrive once it is resumed.
3. The time from our 2xx to the receiver's receipt, at a paced 500 deliveries/s.
4. (`--parts due`, not run by default) How long the worker's read of what is due takes for a
   destination that has fallen behind by a backlog of events, with a read-ahead already claimed.
5. (`--parts owing`, not run by default; PostgreSQL) The CPU PostgreSQL's backend spends storing an
   event with no destination and with two, each event owed to both as it is stored.
Each run has its own database; the receiver is an asyncio HTTP/1.1 server in this process that answers
200 at once and notes when each webhook-id arrived.
"""

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import requests
import yaml
from sqlalchemy import Engine, create_engine, insert, text

from bench import payloads, wrk
from bench.databases import fresh
from bench.forwarding import cpu_by_group, start_command
from bench.recovery_alongside import cpu_seconds
from bench.servers import OURS, Server, free_port
from database import normalise_url
from destinations import attempts, filters
from destinations.file import Destination
from destinations.worker import READ_AHEAD
from models import Event
from ops import migrate

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks specification's example
TOKEN = "bench_token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Receiver:
    """Answers every POST with 200 and records (webhook-id -> first arrival, monotonic)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrived: dict[str, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> "Receiver":
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        server = loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", self.port))
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            loop.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = dict(
                    line.split(":", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ":" in line
                )
                lowered = {name.strip().lower(): value.strip() for name, value in headers.items()}
                await reader.readexactly(int(lowered.get("content-length", "0")))
                self.arrived.setdefault(lowered.get("webhook-id", ""), time.monotonic())
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def destinations_file(folder: Path, *, healthy: str | None, down: bool, max_in_flight: int) -> Path:
    entries = []
    if healthy:
        entries.append({"name": "healthy", "url": healthy, "secret": SECRET, "max_in_flight": max_in_flight})
    if down:
        entries.append({"name": "down", "url": f"http://127.0.0.1:{free_port()}/x", "secret": SECRET})
    path = folder / "destinations.yaml"
    path.write_text(yaml.safe_dump({"destinations": entries}))
    return path


def env_for(database_url: str, destinations: Path | None) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url,
        "RAZORPAY_WEBHOOK_SECRET": payloads.SECRET,
        "LOG_LEVEL": "WARNING",
        "API_TOKENS": TOKEN,
    }
    if destinations is not None:
        env["DESTINATIONS_FILE"] = str(destinations)
    return env


# How destinations run in an ingest round: none configured; delivered by the service; by `python -m
# cli destinations run` beside it (DESTINATIONS_IN_PROCESS=false on the service); or owed only, the
# healthy destination paused before the load (what owing every event to two destinations costs ingest,
# with nothing sent).
MODES = ("none", "service", "apart", "paused")


def ingest_round(
    kind: str, folder: Path, *, mode: str, tag: str, budget_s: float
) -> tuple[float, dict[str, float], int]:
    """wrk's rate; the CPU seconds each process group spent during the load: the service, the workers
    apart, PostgreSQL, the receiver (this process), and the machine's idle time; and how many events
    had reached the healthy receiver when the load ended."""
    receiver = Receiver().start() if mode != "none" else None
    try:
        path = None
        if receiver is not None:
            path = destinations_file(folder, healthy=receiver.url, down=True, max_in_flight=8)
        with fresh(kind, folder, tag) as database:
            env = env_for(database.url, path)
            if mode == "apart":
                env["DESTINATIONS_IN_PROCESS"] = "false"
            with Server(OURS, workers=1, env=env, log_path=folder / f"{tag}.log") as srv:
                srv.wait_ready()
                if mode == "paused":
                    answer = requests.post(srv.url + "/destinations/healthy/pause", headers=AUTH, timeout=10)
                    answer.raise_for_status()
                workers = None
                if mode == "apart":
                    workers = start_command(["destinations", "run"], env, folder / f"workers-{tag}.log")
                try:
                    deliveries = payloads.deliveries(count=40_000, tag=tag, duplicate_ratio=0.0)
                    load = [payloads.webhook_request(d) for d in deliveries]
                    before, receiver_before = cpu_by_group(srv, workers), time.process_time()
                    result = wrk.run(
                        url=srv.url, requests=load, connections=32, budget_s=budget_s, workdir=folder
                    )
                    after, receiver_after = cpu_by_group(srv, workers), time.process_time()
                    arrived = len(receiver.arrived) if receiver is not None else 0
                finally:
                    if workers is not None:  # before its database is dropped
                        workers.terminate()
                        workers.wait(15)
        cpu = {name: after[name] - before[name] for name in ("service", "relay", "postgres", "idle")}
        cpu["workers"] = cpu.pop("relay")
        cpu["receiver"] = receiver_after - receiver_before
        return result.rps, cpu, arrived
    finally:
        if receiver is not None:
            receiver.stop()


def post_all(url: str, count: int, *, tag: str, rate: float | None, acked: dict[str, float]) -> None:
    """POST `count` deliveries with 8 threads, paced to `rate` per second when given."""
    deliveries = payloads.deliveries(count=count, tag=tag, duplicate_ratio=0.0)
    threads = 8
    start = time.monotonic() + 0.2

    def send(offset: int) -> None:
        with requests.Session() as session:
            for index in range(offset, len(deliveries), threads):
                if rate is not None and (pause := start + index / rate - time.monotonic()) > 0:
                    time.sleep(pause)  # pacing to the target rate
                d = deliveries[index]
                headers = {
                    "Content-Type": "application/json",
                    "X-Razorpay-Signature": d.signature,
                    "X-Razorpay-Event-Id": d.event_id,
                }
                answer = session.post(url + payloads.WEBHOOK_PATH, data=d.body, headers=headers, timeout=10)
                if answer.status_code == 200:
                    acked[f"razorpay:{d.event_id}"] = time.monotonic()

    senders = [threading.Thread(target=send, args=(n,)) for n in range(threads)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()


def wait_for(predicate: Callable[[], bool], deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)  # polling for the receiver's count
    return False


def delivery_rate(kind: str, folder: Path, *, events: int) -> tuple[float, int]:
    """Events stored while the destination is paused; then events/s from resume to the last arrival."""
    receiver = Receiver().start()
    try:
        path = destinations_file(folder, healthy=receiver.url, down=False, max_in_flight=32)
        with (
            fresh(kind, folder, "rate") as database,
            Server(OURS, workers=1, env=env_for(database.url, path), log_path=folder / "rate.log") as srv,
        ):
            srv.wait_ready()
            requests.post(srv.url + "/destinations/healthy/pause", headers=AUTH, timeout=10)
            post_all(srv.url, events, tag="rate", rate=None, acked={})
            started = time.monotonic()
            requests.post(srv.url + "/destinations/healthy/resume", headers=AUTH, timeout=10)
            wait_for(lambda: len(receiver.arrived) >= events, deadline_s=120)
            last = max(receiver.arrived.values(), default=started)
            return len(receiver.arrived) / max(last - started, 1e-9), len(receiver.arrived)
    finally:
        receiver.stop()


def latency(kind: str, folder: Path, *, rate: int, seconds: int) -> list[float]:
    """Seconds from each 2xx to its webhook-id's arrival at the receiver."""
    receiver = Receiver().start()
    acked: dict[str, float] = {}
    try:
        path = destinations_file(folder, healthy=receiver.url, down=False, max_in_flight=32)
        with (
            fresh(kind, folder, "latency") as database,
            Server(OURS, workers=1, env=env_for(database.url, path), log_path=folder / "lat.log") as srv,
        ):
            srv.wait_ready()
            post_all(srv.url, rate * seconds, tag="lat", rate=rate, acked=acked)
            wait_for(lambda: all(key in receiver.arrived for key in acked), deadline_s=30)
    finally:
        receiver.stop()
    return [receiver.arrived[key] - at for key, at in acked.items() if key in receiver.arrived]


@contextmanager
def owing_database(kind: str, folder: Path, tag: str, *, destinations: int) -> Iterator[Engine]:
    """An engine on a fresh database migrated to head, whose trigger owes each event stored to the
    first `destinations` of two destinations (healthy, down) that nothing delivers."""
    declared = [
        Destination.model_validate({"name": name, "url": "http://127.0.0.1:9/x", "secret": SECRET})
        for name in ("healthy", "down")[:destinations]
    ]
    with fresh(kind, folder, tag) as database:
        migrate.upgrade_to_head(database.url)
        engine = create_engine(normalise_url(database.url))
        try:
            with engine.begin() as connection:
                filters.write(connection, declared)
            yield engine
        finally:
            engine.dispose()


def event_rows(tag: str, numbers: range, now: datetime) -> list[dict[str, Any]]:
    """Rows of the events table, a captured payment of its own each."""
    return [
        {
            "provider": "razorpay",
            "event_id": f"evt_{tag}_{n}",
            "event_type": "payment.captured",
            "payment_id": f"pay_{tag}_{n}",
            "status": "captured",
            "occurred_at": now,
            "received_at": now,
            "raw_body": b"{}",
            "headers": {},
        }
        for n in numbers
    ]


def due_reads(kind: str, folder: Path, *, backlog: int, reads: int) -> list[float]:
    """Seconds each of `reads` reads of what is due takes (attempts.due, as the worker calls it) for a
    destination owed `backlog` events, one payment each, with the first READ_AHEAD of them claimed, as
    they are while the worker sends the read before. The events are stored through the trigger that
    owes them, to it and to a second destination, and the planner's statistics refreshed as the
    dispatcher refreshes them; nothing is sent, so every read finds the same rows."""
    healthy = Destination.model_validate({"name": "healthy", "url": "http://127.0.0.1:9/x", "secret": SECRET})
    with owing_database(kind, folder, "due", destinations=2) as engine:
        with engine.begin() as connection:
            connection.execute(insert(Event), event_rows("due", range(backlog), datetime.now(UTC)))
        with engine.begin() as connection:
            attempts.refresh_statistics(connection)
        with engine.connect() as connection:
            first, _ = attempts.due(connection, healthy, now=datetime.now(UTC), limit=READ_AHEAD)
            claimed = [item.delivery_id for item in first]
            timings = []
            for _ in range(reads):
                started = time.perf_counter()
                due, _ = attempts.due(
                    connection, healthy, now=datetime.now(UTC), limit=READ_AHEAD, claimed=claimed
                )
                timings.append(time.perf_counter() - started)
                connection.rollback()
                assert len(due) == READ_AHEAD and not set(claimed) & {d.delivery_id for d in due}
        return timings


OWING_EVENTS = 30_000
OWING_STATEMENT = 20  # events a statement, about a batch of the writer's under load


def owing_cost(folder: Path, *, destinations: int) -> float:
    """Microseconds of PostgreSQL backend CPU per event for storing OWING_EVENTS events, OWING_STATEMENT
    a statement, on a database migrated to head whose trigger owes each to `destinations` destinations
    (0 or 2) as it is stored."""
    with owing_database("postgresql", folder, "owing", destinations=destinations) as engine:
        now = datetime.now(UTC)
        with engine.connect() as connection:
            backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            before = cpu_seconds(backend)
            for start in range(0, OWING_EVENTS, OWING_STATEMENT):
                connection.execute(
                    insert(Event), event_rows("owing", range(start, start + OWING_STATEMENT), now)
                )
                connection.commit()
            return (cpu_seconds(backend) - before) / OWING_EVENTS * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--quick", action="store_true", help="one short round of each part (a smoke run)")
    parser.add_argument("--parts", default="ingest,rate,latency")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    with TemporaryDirectory(prefix="bench-destinations-") as directory:
        folder = Path(directory)
        if "ingest" in parts:
            rounds = 1 if args.quick else 2
            budget = 3.0 if args.quick else 10.0
            rates: dict[str, list[float]] = {mode: [] for mode in MODES}
            for n in range(rounds):
                for mode in MODES:
                    rate, cpu, arrived = ingest_round(
                        args.database, folder, mode=mode, tag=f"{mode}{n}", budget_s=budget
                    )
                    rates[mode].append(rate)
                    spent = ", ".join(
                        f"{name} {seconds:.1f} s" for name, seconds in cpu.items() if seconds > 0.05
                    )
                    received = f"; {arrived} received by the healthy destination" if mode != "none" else ""
                    print(
                        f"ingest {args.database}, destinations {mode}: {rate:.0f}/s; CPU: {spent}{received}"
                    )
            none = statistics.median(rates["none"])
            service, apart = statistics.median(rates["service"]), statistics.median(rates["apart"])
            paused = statistics.median(rates["paused"])
            print(
                f"ingest {args.database}: none {none:.0f}/s; two destinations (one down) delivered by the "
                f"service {service:.0f}/s, {service / none:.2f}x; by `cli destinations run` {apart:.0f}/s, "
                f"{apart / none:.2f}x; owed only (the healthy one paused) {paused:.0f}/s, "
                f"{paused / none:.2f}x"
            )
        if "rate" in parts:
            per_second, delivered = delivery_rate(
                args.database, folder, events=2_000 if args.quick else 20_000
            )
            print(
                f"delivery {args.database}: {delivered} events "
                f"to a healthy local receiver at {per_second:.0f}/s"
            )
        if "latency" in parts:
            seconds = 3 if args.quick else 10
            waits = sorted(latency(args.database, folder, rate=500, seconds=seconds))
            if waits:
                p50, p99 = waits[len(waits) // 2], waits[min(len(waits) - 1, int(len(waits) * 0.99))]
                print(
                    f"latency {args.database} at 500/s: {len(waits)} events, 2xx -> receipt "
                    f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {waits[-1] * 1000:.1f} ms"
                )
        if "owing" in parts:
            costs: dict[int, list[float]] = {0: [], 2: []}
            for _ in range(2 if args.quick else 5):
                for count in costs:
                    costs[count].append(owing_cost(folder, destinations=count))
            none, two = statistics.median(costs[0]), statistics.median(costs[2])
            print(
                f"owing postgresql: storing an event {none:.1f} us of the backend's CPU with no destination, "
                f"{two:.1f} us owed to two ({two - none:.1f} us for owing; medians of {len(costs[0])})"
            )
        if "due" in parts:
            for backlog in (1_000, 30_000) if args.quick else (1_000, 30_000, 100_000):
                timings = sorted(
                    due_reads(args.database, folder, backlog=backlog, reads=5 if args.quick else 20)
                )
                print(
                    f"due read {args.database}, {backlog} events owed: median "
                    f"{statistics.median(timings) * 1000:.1f} ms, slowest {timings[-1] * 1000:.1f} ms "
                    f"({len(timings)} reads of {READ_AHEAD})"
                )


if __name__ == "__main__":
    main()
