"""Forwarding to NATS, measured: `python -m bench.forwarding [--database postgresql|sqlite]`.

1. Ingest with NATS_URL unset and set, side by side (same wrk load, alternating, two rounds each).
2. The time from a delivery's 2xx to its message being in the stream, at a paced 1,000 deliveries/s
   (bench/forward_latency.py: the sender and the stream's reader in processes of their own).
3. Catch-up: events stored while NATS is down, then the rate at which the relay drains them.
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
import time
from pathlib import Path

import nats

from bench import forward_latency, payloads, wrk
from bench.databases import fresh
from bench.servers import OURS, ROOT, Server, free_port

NATS_SERVER = "/usr/sbin/nats-server"


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


def ingest_round(kind: str, folder: Path, *, forwarding: bool, tag: str) -> wrk.WrkResult:
    with fresh(kind, folder, tag) as database:
        broker = Nats(folder / f"nats-{tag}").start() if forwarding else None
        try:
            env = env_for(database.url, broker.url if broker else None)
            with Server(OURS, workers=1, env=env, log_path=folder / f"{tag}.log") as server:
                server.wait_ready()
                deliveries = payloads.deliveries(count=40_000, tag=tag, duplicate_ratio=0.0)
                return wrk.run(
                    url=server.url,
                    requests=[payloads.webhook_request(d) for d in deliveries],
                    connections=32,
                    budget_s=10,
                    workdir=folder,
                )
        finally:
            if broker:
                broker.stop()


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
                    with open(folder / "relay.log", "wb") as log:
                        relay = subprocess.Popen(
                            [sys.executable, "-m", "cli", "relay"],
                            cwd=ROOT,
                            env={**os.environ, **env},
                            stdout=log,
                            stderr=subprocess.STDOUT,
                        )
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--latency-only", action="store_true")
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
    rates: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(2):
        for forwarding in (False, True):
            result = ingest_round(kind, folder, forwarding=forwarding, tag=f"r{round_}{int(forwarding)}")
            rates[forwarding].append(result.rps)
            print(
                f"ingest forwarding={'on' if forwarding else 'off'}: "
                f"{result.rps:.0f}/s p99 {result.p99_ms:.1f} ms"
            )
    off, on = (
        statistics.median(rates[False]),
        statistics.median(rates[True]),
    )
    print(f"ingest median: off {off:.0f}/s, on {on:.0f}/s, ratio {on / off:.2f}")
    report_latency(kind, folder)
    rate, stored = catch_up(kind, folder)
    print(f"catch-up: {stored} events drained at {rate:.0f} events/s")
    shutil.rmtree(folder, ignore_errors=True)


def report_latency(kind: str, folder: Path, *, separate_relay: bool = False) -> None:
    relay = "relay in its own process" if separate_relay else "relay in the service"
    print(f"{kind}, {relay}: {latency(kind, folder, separate_relay=separate_relay).line()}")


if __name__ == "__main__":
    main()
