"""A nats-server of the test's own (never the machine's shared one): JetStream on a free port with a
temporary store, stopped at the end; and the stream's contents, read back for comparison."""

import asyncio
import socket
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import orjson

from tests.conftest import free_port

NATS_SERVER = "/usr/sbin/nats-server"


class NatsServer:
    def __init__(self, folder: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "NatsServer":
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.folder / "store")],
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "server.log").open("ab"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)  # polling while the server starts, not a wait for a race
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@dataclass(frozen=True, slots=True)
class StreamMessage:
    subject: str
    headers: dict[str, str]
    body: dict[str, Any]


def read_stream(url: str, *, stream: str = "PAYMENTS", subject: str = ">") -> list[StreamMessage]:
    """Every message in `stream` (on `subject`), in stream order."""
    return asyncio.run(_read(url, stream, subject))


async def _read(url: str, stream: str, subject: str) -> list[StreamMessage]:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        info = await js.stream_info(stream)
        expected = info.state.messages
        messages: list[StreamMessage] = []
        if expected == 0:
            return messages
        pull = await js.pull_subscribe(subject, stream=stream, config=None)
        while len(messages) < expected:
            try:
                batch = await pull.fetch(1000, timeout=2)
            except TimeoutError:  # nats-py raises asyncio's or its own subclass of it
                break
            for message in batch:
                messages.append(
                    StreamMessage(message.subject, dict(message.headers or {}), orjson.loads(message.data))
                )
                await message.ack()
        await pull.unsubscribe()
        return messages
    finally:
        await client.close()


def stream_count(url: str, stream: str = "PAYMENTS") -> int:
    async def count() -> int:
        client = await nats.connect(url)
        try:
            return int((await client.jetstream().stream_info(stream)).state.messages)
        finally:
            await client.close()

    return asyncio.run(count())


def msg_ids(messages: list[StreamMessage]) -> Counter[str]:
    return Counter(message.headers["Nats-Msg-Id"] for message in messages)
