"""CPU per delivery, in-process: the app called directly as ASGI by concurrent clients, no sockets.

Where the cost of a delivery goes, without the HTTP layer and the load generator in the picture:

    .venv/bin/python bench/inprocess.py ceiling            # the ceiling app
    .venv/bin/python bench/inprocess.py ours               # ours on a fresh SQLite file
    .venv/bin/python bench/inprocess.py ours --database postgresql://root@127.0.0.1:5432/test
    .venv/bin/python bench/inprocess.py ours --duplicates 0.5   # half of them retries
    .venv/bin/python bench/inprocess.py ours --gocardless-events 50 --count 1500   # 50 events a delivery

Prints requests/s of wall time and CPU per delivery (`time.process_time()`, every thread of the
process: the writer and log threads included). Run the ceiling and ours alternately, several times:
this machine is noisy, and only the ratio means anything.
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _http_scope(delivery: Any) -> dict[str, Any]:
    signed = [(b"x-razorpay-signature", delivery.signature.encode())]
    return _scope("/webhooks/razorpay", delivery.body, signed)


def _scope(path: str, body: bytes, signed: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *signed,
        ],
        "state": {},
    }


def _body_then_silence(body: bytes) -> Any:
    """An ASGI receive: the whole body in one message, then nothing (the client never disconnects)."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


async def _drive(
    app: Any, deliveries: Iterator[tuple[dict[str, Any], bytes]], clients: int, count: int
) -> None:
    startup: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})

    async def lifespan_receive() -> dict[str, Any]:
        return await startup.get()

    async def lifespan_send(message: dict[str, Any]) -> None:
        await replies.put(message)

    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, lifespan_receive, lifespan_send)
    )
    started = await replies.get()
    assert started["type"] == "lifespan.startup.complete", started
    statuses: dict[int, int] = {}

    async def client() -> None:
        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        for scope, body in deliveries:
            await app(scope, _body_then_silence(body), send)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{count:,} deliveries, {clients} at a time: {count / wall:,.0f} req/s of wall time, "
        f"CPU per delivery {cpu / count * 1e6:.0f} us, statuses {statuses}"
    )
    await startup.put({"type": "lifespan.shutdown"})
    await replies.get()
    await lifespan


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("app", choices=["ceiling", "ours"])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--database", help="ours' DATABASE_URL (default: a fresh SQLite file)")
    parser.add_argument(
        "--duplicates", type=float, default=None, help="the share of deliveries that repeat one (default 0.1)"
    )
    parser.add_argument(
        "--gocardless-events",
        type=int,
        help="signed GoCardless deliveries of this many distinct events each, instead of Razorpay's",
    )
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    workdir = tempfile.mkdtemp()
    os.environ["RAZORPAY_WEBHOOK_SECRET"] = "bench_secret"
    from bench.batched import SECRET as GOCARDLESS_SECRET
    from bench.batched import signed_body

    os.environ["GOCARDLESS_WEBHOOK_SECRET"] = GOCARDLESS_SECRET
    os.environ["DATABASE_URL"] = args.database or f"sqlite:///{workdir}/inprocess.db"
    # One process counts its metrics in memory, as one worker does under make run and make bench:
    # multiprocess mode's file writes would be counted as the delivery's CPU.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

    import uvloop

    from bench.payloads import deliveries

    if args.app == "ceiling":
        from bench.ceiling_app import app
    else:
        from main import app
    from bench.payloads import DUPLICATE_RATIO

    requests: list[tuple[dict[str, Any], bytes]]
    if args.gocardless_events:
        first = int(time.time()) % 1000 * 10_000  # distinct event ids from run to run on one database
        requests = []
        for index in range(first, first + args.count):
            body, signature = signed_body(index, args.gocardless_events)
            scope = _scope("/webhooks/gocardless", body, [(b"webhook-signature", signature.encode())])
            requests.append((scope, body))
    else:
        ratio = DUPLICATE_RATIO if args.duplicates is None else args.duplicates
        batch = deliveries(count=args.count, tag=f"i{int(time.time())}", duplicate_ratio=ratio)
        requests = [(_http_scope(delivery), delivery.body) for delivery in batch]
    uvloop.run(_drive(app, iter(requests), args.clients, args.count))


if __name__ == "__main__":
    main()
