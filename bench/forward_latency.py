"""From a delivery's 2xx to its message in the stream, with the load and the measurement apart.

Two processes besides the service, so neither waits on the other's interpreter:
- the sender (asyncio + aiohttp) paces deliveries open-loop on a fixed schedule (delivery i is due at
  start + i / rate, whatever the answers before it) and records time.time() of each 2xx by event id;
- the listener (nats-py) reads the stream through an ordered JetStream consumer, so a message counts
  once the stream stored it, and records time.time() of each arrival by its Nats-Msg-Id.
Both write JSON files; `measure` joins them afterwards. One machine, so one clock.
"""

import asyncio
import json
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path

import aiohttp
import nats
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from bench import payloads

# Open connections to the service: enough that a slow answer does not delay the schedule.
SENDER_CONNECTIONS = 64
REQUEST_TIMEOUT_S = 10.0
# After the last 2xx, how long the listener may take to see the rest before the run gives up.
DRAIN_DEADLINE_S = 30.0
START_DEADLINE_S = 15.0
STREAM = "PAYMENTS"
EVENTS_SUBJECT = "payments.events.>"


@dataclass(frozen=True, slots=True)
class Latency:
    sent: int
    answered: int  # 2xx
    arrived: int  # of those answered, seen in the stream
    delays_s: list[float]  # sorted: arrival - 2xx, per event
    answer_s: list[float]  # sorted: request sent -> 2xx, per event
    late_starts: int  # deliveries sent more than 10 ms after their due time (the sender fell behind)

    def percentile(self, values: list[float], fraction: float) -> float:
        return values[min(len(values) - 1, int(fraction * len(values)))] * 1000 if values else float("nan")

    def line(self) -> str:
        d, a = self.delays_s, self.answer_s
        return (
            f"2xx -> in stream: sent {self.sent}, 2xx {self.answered}, in stream {self.arrived}; "
            f"p50 {self.percentile(d, 0.5):.1f} ms p99 {self.percentile(d, 0.99):.1f} ms "
            f"max {self.percentile(d, 1):.1f} ms | request -> 2xx p50 {self.percentile(a, 0.5):.1f} ms "
            f"p99 {self.percentile(a, 0.99):.1f} ms | sent late (>10 ms) {self.late_starts}"
        )


def listen(nats_url: str, out: str, ready: ProcessEvent, stop: ProcessEvent) -> None:
    """The listener process: arrival time of each event message, until `stop` is set."""
    arrived: dict[str, float] = {}

    async def run() -> None:
        client = await nats.connect(nats_url)

        async def on_message(message: Msg) -> None:
            now = time.time()
            msg_id = (message.headers or {}).get("Nats-Msg-Id", "")
            arrived.setdefault(msg_id.split(":", 1)[-1], now)

        js = client.jetstream()
        give_up = time.monotonic() + START_DEADLINE_S
        while True:  # the relay creates the stream as it starts
            try:
                await js.subscribe(EVENTS_SUBJECT, stream=STREAM, ordered_consumer=True, cb=on_message)
                break
            except NotFoundError:
                if time.monotonic() > give_up:
                    raise
                await asyncio.sleep(0.1)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await client.close()

    asyncio.run(run())
    Path(out).write_text(json.dumps(arrived))


def send(url: str, out: str, rate: int, seconds: float, tag: str) -> None:
    """The sender process: `rate` deliveries a second for `seconds`, each at its due time."""
    deliveries = payloads.deliveries(count=int(rate * seconds), tag=tag, duplicate_ratio=0.0)
    answered: dict[str, tuple[float, float]] = {}  # event id -> (sent, 2xx), time.time()
    late = 0

    async def run() -> None:
        nonlocal late
        connector = aiohttp.TCPConnector(limit=SENDER_CONNECTIONS)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def post(delivery: payloads.Delivery) -> None:
                headers = {
                    "Content-Type": "application/json",
                    "X-Razorpay-Signature": delivery.signature,
                    "X-Razorpay-Event-Id": delivery.event_id,
                }
                began = time.time()
                try:
                    async with session.post(
                        url + payloads.WEBHOOK_PATH, data=delivery.body, headers=headers
                    ) as response:
                        await response.read()
                        if 200 <= response.status < 300:
                            answered[delivery.event_id] = (began, time.time())
                except (aiohttp.ClientError, TimeoutError):
                    pass  # counted as not answered

            loop = asyncio.get_running_loop()
            start = loop.time() + 0.2
            tasks: list[asyncio.Task[None]] = []
            for index, delivery in enumerate(deliveries):
                due = start + index / rate
                if (pause := due - loop.time()) > 0:
                    await asyncio.sleep(pause)
                elif pause < -0.01:
                    late += 1
                tasks.append(asyncio.create_task(post(delivery)))
            await asyncio.gather(*tasks)

    asyncio.run(run())
    Path(out).write_text(json.dumps({"sent": len(deliveries), "late": late, "answered": answered}))


def measure(
    service_url: str, nats_url: str, folder: Path, *, rate: int = 1000, seconds: float = 10.0
) -> Latency:
    """Run the listener and the sender as processes against a running service; join their records."""
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    arrivals, answers = folder / "arrivals.json", folder / "answers.json"
    listener = context.Process(target=listen, args=(nats_url, str(arrivals), ready, stop), daemon=True)
    listener.start()
    try:
        if not ready.wait(START_DEADLINE_S):
            raise RuntimeError("the listener did not subscribe in time")
        sender = context.Process(target=send, args=(service_url, str(answers), rate, seconds, "lat"))
        sender.start()
        sender.join(seconds + REQUEST_TIMEOUT_S + START_DEADLINE_S)
        if sender.is_alive():
            sender.kill()
            raise RuntimeError("the sender did not finish in time")
        sent = json.loads(answers.read_text())
        answered: dict[str, list[float]] = sent["answered"]
        waiting_until = time.monotonic() + DRAIN_DEADLINE_S
        drained: Callable[[], bool] = lambda: stream_count(nats_url) >= len(answered)  # noqa: E731
        while not drained() and time.monotonic() < waiting_until:
            time.sleep(0.2)
        time.sleep(0.5)  # the listener's last arrivals
    finally:
        stop.set()
        listener.join(10)
        if listener.is_alive():
            listener.kill()
    arrived: dict[str, float] = json.loads(arrivals.read_text())
    delays = sorted(arrived[e] - t for e, (_, t) in answered.items() if e in arrived)
    answer_s = sorted(t - began for began, t in answered.values())
    return Latency(sent["sent"], len(answered), len(delays), delays, answer_s, sent["late"])


def stream_count(nats_url: str) -> int:
    """Event messages stored in the stream (state messages excluded)."""

    async def count() -> int:
        client = await nats.connect(nats_url)
        try:
            info = await client.jetstream().stream_info(STREAM, subjects_filter=EVENTS_SUBJECT)
            return sum((info.state.subjects or {}).values())
        finally:
            await client.close()

    return asyncio.run(count())
