"""A receiving service for the tests: a real HTTP server on 127.0.0.1 whose answer to each request is
decided by a script (answer with a status, hold the request past the sender's timeout, reset the
connection). It records what it received and verifies every request with the `standardwebhooks`
package, as the operator's service would."""

import http.server
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import standardwebhooks.webhooks

from tests.conftest import free_port


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    hold: bool = False  # keep the request open until the server stops (a timeout for the sender)
    reset: bool = False  # close the connection with a TCP reset, answering nothing


OK = Answer()


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    answered: Answer
    verified: bool

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> dict[str, Any]:
        document: dict[str, Any] = orjson.loads(self.body)
        return document


Script = Callable[[dict[str, Any], int], Answer]  # (the event, how many requests came before) -> answer


class Receiver:
    def __init__(self, secret: str, script: Script | None = None, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.secret = secret
        self.script: Script = script or (lambda event, index: OK)
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/payments"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.handle(self, headers, body)

            def log_message(self, *args: Any) -> None:
                pass

        self._release.clear()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def handle(
        self, request: http.server.BaseHTTPRequestHandler, headers: dict[str, str], body: bytes
    ) -> None:
        verified = True
        try:
            standardwebhooks.webhooks.Webhook(self.secret).verify(body, headers)
        except standardwebhooks.webhooks.WebhookVerificationError:
            verified = False
        event = orjson.loads(body) if verified else {}
        with self._lock:
            answer = self.script(event, len(self.received))
            self.received.append(Received(headers, body, time.monotonic(), answer, verified))
        if answer.reset:
            request.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            request.connection.close()
            request.close_connection = True
            return
        if answer.hold:
            self._release.wait(30)
            request.close_connection = True
            return
        request.send_response(answer.status)
        for name, value in answer.headers.items():
            request.send_header(name, value)
        request.send_header("content-length", str(len(answer.body)))
        request.end_headers()
        request.wfile.write(answer.body)

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def delivered(self) -> list[Received]:
        """The requests it answered with a 2xx."""
        return [
            r
            for r in self.snapshot()
            if 200 <= r.answered.status < 300 and not (r.answered.hold or r.answered.reset)
        ]

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
