"""Forwarding to NATS, measured: `python -m bench.forwarding [--database postgresql|sqlite]`.

1. Ingest with NATS_URL unset, set (the relay in the service), and set with the relay apart (`python -m
   cli relay`), side by side (same wrk load, alternating, two rounds each), with the CPU each process
   group spent during the load.
2. The time from a delivery's 2xx to its message being in the stream, at a paced 1,000 deliveries/s
   (bench/forward_latency.py: the sender and the stream's reader in processes of their own).
3. Catch-up: events stored while NATS is down, then the rate at which the relay drains them.
4. Sustained: wrk at full rate for 60 s with forwarding on, the relay's lag (the backlog /metrics
   reports) sampled every SAMPLE_S; its maximum, and how long it takes to reach 0 once the load stops.
5. (`--publish-only`, not in the default run) The stream's share of forwarding an event: messages of
   the relay's shape published through the relay's Publisher in batches, with no database, and the
   CPU this process and nats-server spend per message.
Each run has its own database and its own nats-server (-js, a free port, a temporary store).
"""

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import nats
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from bench import forward_latency, payloads, procfs, wrk
from bench.databases import fresh
from bench.recovery_alongside import cpu_seconds
from bench.servers import OURS, ROOT, Server, free_port
from config import Settings
from database import normalise_url
from forwarding import outbox
from forwarding.messages import StoredEvent, event_message
from forwarding.stream import Publisher, connect, ensure_stream

NATS_SERVER = "/usr/sbin/nats-server"
SAMPLE_S = 0.25
SUSTAINED_RATE_GUESS = 5_000  # deliveries to prepare per second of load: more than one worker answers
DRAIN_DEADLINE_S = 60.0


class Nats:
    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "Nats":
        self.process = subprocess.Popen(
            [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


def stream_messages(url: str) -> int:
    async def count() -> int:
        client = await nats.connect(url)
        try:
            return int((await client.jetstream().stream_info("PAYMENTS")).state.messages)
        except Exception:
            return 0
        finally:
            await client.close()

    return asyncio.run(count())


def env_for(database_url: str, nats_url: str | None) -> dict[str, str]:
    env = {"DATABASE_URL": database_url, "RAZORPAY_WEBHOOK_SECRET": payloads.SECRET, "LOG_LEVEL": "WARNING"}
    if nats_url:
        env["NATS_URL"] = nats_url
    return env


# How the relay runs in an ingest round: not at all (NATS_URL unset), in the service, or apart.
MODES = ("off", "service", "apart")


def cpu_by_group(server: Server, relay: subprocess.Popen[bytes] | None) -> dict[str, float]:
    """CPU seconds so far of: the service (uvicorn and what it started), the relay apart, PostgreSQL's
    processes, nats-server; and the machine's idle seconds (/proc/stat)."""
    groups = {"service": sum(cpu_seconds(pid) for pid in server.rss_kib())}
    groups["relay"] = cpu_seconds(relay.pid) if relay is not None else 0.0
    for name in ("postgres", "nats-server"):
        groups[name] = 0.0
    for pid, name in procfs.names().items():
        if name in ("postgres", "nats-server"):
            groups[name] += cpu_seconds(pid)
    idle = Path("/proc/stat").read_text().split("\n", 1)[0].split()[4:6]  # idle, iowait
    groups["idle"] = sum(map(int, idle)) / procfs.CLOCK_TICKS
    return groups


@dataclass(frozen=True, slots=True)
class IngestRound:
    result: wrk.WrkResult
    cpu: dict[str, float]  # seconds during the load, by cpu_by_group's groups

    def line(self) -> str:
        per_event = self.result.requests or 1
        spent = ", ".join(
            f"{name} {seconds:.1f} s"
            + (f" ({seconds / per_event * 1e6:.0f} us an event)" if name != "idle" else "")
            for name, seconds in self.cpu.items()
            if seconds > 0.05
        )
        return f"{self.result.rps:.0f}/s p99 {self.result.p99_ms:.1f} ms; CPU: {spent}"


def ingest_round(kind: str, folder: Path, *, mode: str, tag: str) -> IngestRound:
    """wrk (32 connections, 10 s) on a fresh database with forwarding `mode` (MODES)."""
    with fresh(kind, folder, tag) as database:
        broker = Nats(folder / f"nats-{tag}").start() if mode != "off" else None
        relay: subprocess.Popen[bytes] | None = None
        try:
            env = env_for(database.url, broker.url if broker else None)
            if mode == "apart":
                env["FORWARD_IN_PROCESS"] = "false"
            with Server(OURS, workers=1, env=env, log_path=folder / f"{tag}.log") as server:
                server.wait_ready()
                if mode == "apart":
                    relay = start_command(["relay"], env, folder / f"relay-{tag}.log")
                deliveries = payloads.deliveries(count=40_000, tag=tag, duplicate_ratio=0.0)
                requests = [payloads.webhook_request(d) for d in deliveries]
                before = cpu_by_group(server, relay)
                result = wrk.run(
                    url=server.url, requests=requests, connections=32, budget_s=10, workdir=folder
                )
                after = cpu_by_group(server, relay)
                return IngestRound(result, {name: after[name] - before[name] for name in after})
        finally:
            if relay is not None:
                relay.terminate()
                relay.wait(15)
            if broker:
                broker.stop()


def start_command(arguments: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`python -m cli {arguments}` with the service's environment, its output to `log_path`: the relay
    (`relay`), or destinations' workers (`destinations run`), apart from the service."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", *arguments],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def latency(
    kind: str, folder: Path, *, separate_relay: bool = False, rate: int = 1000, seconds: int = 10
) -> forward_latency.Latency:
    """Seconds from each 2xx to the message being in the stream (bench/forward_latency.py: the sender
    and the stream's reader each in their own process). With `separate_relay`, the service runs with
    FORWARD_IN_PROCESS=false and the relay as `python -m cli relay`, a process of its own."""
    with fresh(kind, folder, "latency") as database:
        broker = Nats(folder / "nats-latency").start()
        env = env_for(database.url, broker.url)
        relay: subprocess.Popen[bytes] | None = None
        try:
            if separate_relay:
                env["FORWARD_IN_PROCESS"] = "false"
            with Server(OURS, workers=1, env=env, log_path=folder / "lat.log") as srv:
                srv.wait_ready()
                if separate_relay:
                    relay = start_command(["relay"], env, folder / "relay.log")
                return forward_latency.measure(srv.url, broker.url, folder, rate=rate, seconds=seconds)
        finally:
            if relay is not None:
                relay.terminate()
                relay.wait(15)
            broker.stop()


def catch_up(kind: str, folder: Path, *, events: int = 20_000) -> tuple[float, int]:
    """Events stored while NATS is down; then events/s from the first message in the stream to all."""
    with fresh(kind, folder, "catchup") as database:
        broker = Nats(folder / "nats-catchup")
        with Server(
            OURS, workers=1, env=env_for(database.url, broker.url), log_path=folder / "cu.log"
        ) as srv:
            srv.wait_ready()
            deliveries = payloads.deliveries(count=events, tag="cu", duplicate_ratio=0.0)
            wrk.run(
                url=srv.url,
                requests=[payloads.webhook_request(d) for d in deliveries],
                connections=32,
                budget_s=60,
                workdir=folder,
            )
            stored = int(database.scalar("SELECT count(*) FROM webhook_events"))
            broker.start()
            try:
                while stream_messages(broker.url) == 0:
                    time.sleep(0.02)
                first = time.monotonic()
                target = stored + int(
                    database.scalar("SELECT count(*) FROM payments WHERE status IS NOT NULL")
                )
                while stream_messages(broker.url) < target:
                    time.sleep(0.05)
                return stored / (time.monotonic() - first), stored
            finally:
                broker.stop()


@dataclass(frozen=True, slots=True)
class Sustained:
    rate: float  # deliveries answered per second over the load
    p99_ms: float
    max_lag: int  # the largest backlog sampled, in events
    max_lag_at_s: float  # seconds into the load when it was sampled
    drained_s: float | None  # from the load's end to the first sample at 0; None: not within the deadline
    lag_at_end: int  # the backlog when the load stopped
    lag_each_10_s: list[int]  # the largest backlog sampled in each 10 s of the load

    def line(self) -> str:
        drained = (
            f"{self.drained_s:.2f} s" if self.drained_s is not None else f"not in {DRAIN_DEADLINE_S:.0f} s"
        )
        return (
            f"{self.rate:.0f}/s (p99 {self.p99_ms:.1f} ms), lag at most {self.max_lag} events "
            f"({self.max_lag_at_s:.1f} s in), {self.lag_at_end} when the load stopped, 0 after {drained}; "
            f"largest in each 10 s: {', '.join(map(str, self.lag_each_10_s))}"
        )


class LagSampler:
    """Samples the relay's backlog (forwarding.outbox.status, as /metrics reads it) every SAMPLE_S on a
    thread of its own, with its own connection."""

    def __init__(self, database_url: str) -> None:
        self._engine = create_engine(normalise_url(database_url), poolclass=NullPool)
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "LagSampler":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._engine.dispose()

    def _run(self) -> None:
        with self._engine.connect() as connection:
            while not self._stop.is_set():
                with connection.begin():
                    lag = outbox.status(connection, stream="PAYMENTS").lag_events
                self.samples.append((time.monotonic(), lag))
                self._stop.wait(SAMPLE_S)

    def drained_after(self, moment: float) -> float | None:
        """Seconds from `moment` to the first sample at 0 after it, waiting up to DRAIN_DEADLINE_S."""
        deadline = moment + DRAIN_DEADLINE_S
        seen = 0
        while time.monotonic() < deadline:
            for at, lag in self.samples[seen:]:
                if at >= moment and lag == 0:
                    return at - moment
            seen = max(0, len(self.samples) - 1)
            time.sleep(SAMPLE_S / 2)
        return None


def sustained(kind: str, folder: Path, *, seconds: int = 60) -> Sustained:
    """wrk at full rate for `seconds` with forwarding on (the relay in the service), the lag sampled."""
    deliveries = payloads.deliveries(count=SUSTAINED_RATE_GUESS * seconds, tag="sus", duplicate_ratio=0.0)
    requests = [payloads.webhook_request(d) for d in deliveries]
    with fresh(kind, folder, "sustained") as database:
        broker = Nats(folder / "nats-sustained").start()
        try:
            env = env_for(database.url, broker.url)
            with Server(OURS, workers=1, env=env, log_path=folder / "sus.log") as server:
                server.wait_ready()
                with LagSampler(database.url) as sampler:
                    began = time.monotonic()
                    result = wrk.run(
                        url=server.url, requests=requests, connections=32, budget_s=seconds, workdir=folder
                    )
                    ended = time.monotonic()
                    drained = sampler.drained_after(ended)
                    during = [(at, lag) for at, lag in sampler.samples if at <= ended]
                    at_end = during[-1][1] if during else 0
                    worst_at, worst = max(during, key=lambda sample: sample[1], default=(began, 0))
        finally:
            broker.stop()
    tens: dict[int, int] = {}
    for at, lag in during:
        tens[int((at - began) // 10)] = max(lag, tens.get(int((at - began) // 10), 0))
    return Sustained(
        result.rps, result.p99_ms, worst, worst_at - began, drained, at_end, [tens[k] for k in sorted(tens)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--latency-only", action="store_true")
    parser.add_argument("--sustained-only", action="store_true", help="only the 60 s run at full rate")
    parser.add_argument("--ingest-only", action="store_true", help="only the ingest rounds, on and off")
    parser.add_argument(
        "--publish-only", action="store_true", help="only the stream's share: publishing, with no database"
    )
    parser.add_argument(
        "--separate-relay",
        action="store_true",
        help="latency with the relay as `python -m cli relay` (FORWARD_IN_PROCESS=false on the service)",
    )
    args = parser.parse_args()
    kind = args.database
    folder = Path(tempfile.mkdtemp(prefix="bench-forwarding-"))
    if args.latency_only:
        report_latency(kind, folder, separate_relay=args.separate_relay)
        return
    if args.sustained_only:
        print(f"{kind}, sustained 60 s at full rate: {sustained(kind, folder).line()}")
        return
    if args.publish_only:
        for _ in range(3):
            print(f"publishing alone: {publish_cost(folder).line()}", flush=True)
        return
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    for round_ in range(2):
        for mode in MODES:
            measured = ingest_round(kind, folder, mode=mode, tag=f"r{round_}{mode}")
            rates[mode].append(measured.result.rps)
            print(f"ingest, forwarding {mode}: {measured.line()}", flush=True)
    off = statistics.median(rates["off"])
    print(
        f"ingest median: off {off:.0f}/s; "
        + "; ".join(
            f"relay {mode}: {(on := statistics.median(rates[mode])):.0f}/s, {on / off:.2f}x"
            for mode in MODES[1:]
        )
    )
    if not args.ingest_only:
        report_latency(kind, folder)
        rate, stored = catch_up(kind, folder)
        print(f"catch-up: {stored} events drained at {rate:.0f} events/s")
        print(f"sustained 60 s at full rate: {sustained(kind, folder).line()}")
    shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class PublishCost:
    messages: int
    seconds: float
    client_s: float  # this process's CPU
    server_s: float  # nats-server's CPU

    def line(self) -> str:
        per = 1e6 / self.messages
        return (
            f"{self.messages} event messages published and acknowledged in {self.seconds:.2f} s "
            f"({self.messages / self.seconds:.0f}/s); CPU per message: client {self.client_s * per:.0f} us, "
            f"nats-server {self.server_s * per:.0f} us"
        )


def publish_cost(folder: Path, *, messages: int = 40_000, batch: int = 1_000) -> PublishCost:
    """Publish `messages` event messages (the relay's subjects, headers and JSON documents, each event
    its own) through forwarding.stream.Publisher, `batch` at a time as a relay cycle does, into a new
    stream on a nats-server of its own: what the client and the server cost per message, with no
    database read or cursor write around them."""
    broker = Nats(Path(tempfile.mkdtemp(prefix="nats-publish-", dir=folder))).start()
    settings = Settings(nats_url=broker.url)
    now = datetime.now(UTC)
    events = [
        StoredEvent(
            n, "razorpay", f"evt_publish_{n}", "payment.captured", f"pay_publish_{n}", "captured",
            "captured", 5000, "INR", now, now, None,
        )
        for n in range(messages)
    ]  # fmt: skip

    async def run() -> PublishCost:
        client = await connect(settings)
        try:
            await ensure_stream(client.jetstream(), settings=settings)
            publisher = Publisher(client)
            assert broker.process is not None
            client_before, server_before = time.process_time(), cpu_seconds(broker.process.pid)
            started = time.perf_counter()
            for start in range(0, messages, batch):
                chunk = [event_message(event, prefix="payments") for event in events[start : start + batch]]
                outcomes = await publisher.publish(chunk, stream=settings.nats_stream)
                assert not outcomes.failures and outcomes.published["event"] == len(chunk)
            seconds = time.perf_counter() - started
            client_s = time.process_time() - client_before
            return PublishCost(messages, seconds, client_s, cpu_seconds(broker.process.pid) - server_before)
        finally:
            await client.close()

    try:
        return asyncio.run(run())
    finally:
        broker.stop()


def report_latency(kind: str, folder: Path, *, separate_relay: bool = False) -> None:
    relay = "relay in its own process" if separate_relay else "relay in the service"
    print(f"{kind}, {relay}: {latency(kind, folder, separate_relay=separate_relay).line()}")


if __name__ == "__main__":
    main()
