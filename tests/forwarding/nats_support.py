"""A nats-server of the test's own (never the machine's shared one): JetStream on a free port with a
temporary store, stopped at the end; and the stream's contents, read back for comparison."""

import asyncio
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import orjson

from tests.conftest import free_port

NATS_SERVER = "/usr/sbin/nats-server"


class NatsServer:
    def __init__(
        self,
        folder: Path,
        *,
        port: int | None = None,
        route_port: int | None = None,
        routes: Sequence[str] = (),
    ) -> None:
        """With `route_port`, a member of a cluster named by `routes` (every member's route URL), under
        the folder's name as its server name."""
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.folder = folder
        self.route_port = route_port
        self.routes = list(routes)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "NatsServer":
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            NATS_SERVER,
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-sd",
            str(self.folder / "store"),
        ]
        if self.route_port is not None:
            command += [
                "--server_name", self.folder.name,
                "--cluster_name", "payments-test",
                "--cluster", f"nats://127.0.0.1:{self.route_port}",
                "--routes", ",".join(self.routes),
            ]  # fmt: skip
        log = (self.folder / "server.log").open("ab")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)  # polling while the server starts, not a wait for a race
        raise RuntimeError("nats-server did not start")

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to tell its peers or clients."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class NatsCluster:
    """`size` nats-servers with JetStream, routed to each other on loopback ports: a stream with
    several replicas keeps taking messages while a member is down."""

    def __init__(self, folder: Path, *, size: int = 3) -> None:
        route_ports = [free_port() for _ in range(size)]
        routes = [f"nats://127.0.0.1:{port}" for port in route_ports]
        self.members = [
            NatsServer(folder / f"node{index}", route_port=port, routes=routes)
            for index, port in enumerate(route_ports)
        ]
        self.urls = [member.url for member in self.members]
        self.url = ",".join(self.urls)  # as NATS_URL lists them

    def start(self, deadline_s: float = 30) -> "NatsCluster":
        """Every member, then until JetStream answers (the members have elected its leader)."""
        for member in self.members:
            member.start()
        asyncio.run(self._until_ready(deadline_s))
        return self

    async def _until_ready(self, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        client = await nats.connect(servers=self.urls)
        try:
            while True:
                try:
                    await client.jetstream().account_info()
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)  # polling the election, with a deadline
        finally:
            await client.close()

    def member(self, name: str) -> NatsServer:
        return next(member for member in self.members if member.folder.name == name)

    def stop(self) -> None:
        for member in self.members:
            member.stop()


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
