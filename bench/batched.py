"""GoCardless deliveries of many events against one worker on PostgreSQL: events stored per second.

    python -m bench.batched [--events-per-delivery 50] [--budget 8] [--connections 16]

Each delivery is a signed GoCardless body of N distinct events; the rate is the rows the database
holds at the end divided by wrk's measured duration. Also prints the CPU each process group used
meanwhile (ours, PostgreSQL, wrk, other), in cores. Results go to stdout (BENCHMARKS.md keeps them).
"""

import argparse
import hashlib
import hmac
import json
import tempfile
import time
from pathlib import Path

from bench import wrk
from bench.databases import ensure_postgres, fresh_postgres
from bench.diagnose import Sampler
from bench.servers import OURS, Server

SECRET = "bench_gocardless_secret"


def signed_body(index: int, size: int) -> tuple[bytes, str]:
    """The body of delivery `index`, `size` distinct events, and its `Webhook-Signature`."""
    events = [
        {
            "id": f"EV{index:07d}{n:04d}",
            "created_at": "2025-07-07T12:00:00.000Z",
            "action": "confirmed",
            "resource_type": "payments",
            "links": {"payment": f"PM{index:07d}{n:04d}"},
            "details": {
                "origin": "gocardless",
                "cause": "payment_confirmed",
                "description": "Payment confirmed",
            },
            "metadata": {},
        }
        for n in range(size)
    ]
    body = json.dumps({"events": events, "meta": {"webhook_id": f"WB{index:07d}"}}).encode()
    return body, hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def delivery(index: int, size: int) -> bytes:
    body, signature = signed_body(index, size)
    head = (
        "POST /webhooks/gocardless HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Webhook-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events-per-delivery", type=int, default=50)
    parser.add_argument("--budget", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--deliveries", type=int, default=4000)
    args = parser.parse_args()
    ensure_postgres()
    requests = [delivery(index, args.events_per_delivery) for index in range(args.deliveries)]
    with tempfile.TemporaryDirectory() as folder, fresh_postgres() as database:
        workdir = Path(folder)
        env = {"DATABASE_URL": database.url, "GOCARDLESS_WEBHOOK_SECRET": SECRET, "LOG_LEVEL": "WARNING"}
        with Server(OURS, workers=1, env=env, log_path=workdir / "server.log") as server:
            server.wait_ready()
            sampler = Sampler(server.process.pid, None)
            sampler.start()
            began = time.monotonic()
            result = wrk.run(
                url=server.url,
                requests=requests,
                connections=args.connections,
                budget_s=args.budget,
                workdir=workdir,
            )
            sampler.stopped.set()
            sampler.join()
            cores = sampler.cores(time.monotonic() - began)
        stored = database.count_rows("webhook_events") or 0
    answered = result.requests - result.non2xx
    print(
        f"{args.events_per_delivery} events/delivery, {args.connections} connections, one worker: "
        f"{answered} deliveries answered 2xx in {result.duration_s:.2f} s ({result.statuses}), "
        f"{stored} events stored: {stored / result.duration_s:,.0f} events/s; "
        f"latency p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms"
    )
    # The window also holds wrk's start and drain, so cores are a little under the load's own.
    print("CPU, cores: " + ", ".join(f"{group} {used:.2f}" for group, used in sorted(cores.items())))


if __name__ == "__main__":
    main()
