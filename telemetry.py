"""Request ids and the one structured log line per delivery.

Logging goes through a queue: the event loop only enqueues a record, and a listener thread formats and
writes it, so a slow terminal or disk never stalls deliveries. Lines never contain secrets or bodies.
"""

import json
import logging
import logging.handlers
import queue
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config import Settings

delivery_logger = logging.getLogger("webhooks.delivery")

# The fields a delivery line carries, in order.
DELIVERY_FIELDS = ("request_id", "provider", "event_id", "outcome", "status_code", "duration_ms")


@dataclass(slots=True)
class Delivery:
    provider: str
    event_id: str | None = None
    outcome: str = "internal_error"
    status_code: int = 500


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({name: getattr(record, name) for name in DELIVERY_FIELDS if hasattr(record, name)})
        return json.dumps(line)


def configure_logging(settings: Settings) -> Callable[[], None]:
    """Route the service's logs through a queue to stderr; returns the function that flushes and stops."""
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, handler)
    root = logging.getLogger("webhooks")
    root.handlers[:] = [logging.handlers.QueueHandler(records)]
    root.setLevel(settings.log_level.upper())
    root.propagate = False
    listener.start()
    return listener.stop


def record_delivery(request: Request, delivery: Delivery, duration_s: float) -> None:
    if not delivery_logger.isEnabledFor(logging.INFO):
        return
    fields = {
        "request_id": request.scope.get("request_id"),
        "provider": delivery.provider,
        "event_id": delivery.event_id,
        "outcome": delivery.outcome,
        "status_code": delivery.status_code,
        "duration_ms": round(duration_s * 1000, 2),
    }
    delivery_logger.info(" ".join(f"{name}={fields[name]}" for name in DELIVERY_FIELDS), extra=fields)


class RequestIdMiddleware:
    """Honours an incoming X-Request-ID (if sane), else makes one, and echoes it on the response.

    Plain ASGI rather than BaseHTTPMiddleware, which would add a task per request to the hot path.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_id)


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            # Bounded and printable, so a client cannot inject lines or bloat the logs.
            if 0 < len(value) <= 128 and value.isascii() and value.decode().isprintable():
                return value.decode()
            return None
    return None
