"""Request ids and the one structured log line per delivery.

Logging goes through a queue: the event loop only enqueues a record, and a listener thread formats and
writes it, so a slow terminal or disk never stalls deliveries. Lines never contain secrets or bodies.
uvicorn's access line for a webhook delivery is dropped (the delivery line says more); with
LOG_FORMAT=json uvicorn's own lines are JSON too, so a log pipeline parses every line the same way.
"""

import json
import logging
import logging.handlers
import queue
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import metrics
from config import Settings

delivery_logger = logging.getLogger("webhooks.delivery")

# The fields a delivery line carries, in order.
DELIVERY_FIELDS = ("request_id", "provider", "event_id", "outcome", "status_code", "duration_ms")
# uvicorn's loggers: "uvicorn.error" propagates to "uvicorn"; "uvicorn.access" does not propagate.
UVICORN_LOGGERS: Final = ("uvicorn", "uvicorn.access")
WEBHOOK_PATHS: Final = ("/webhooks/", "/webhook/payments")


@dataclass(slots=True)
class Delivery:
    provider: str
    event_id: str | None = None
    outcome: str = "internal_error"
    status_code: int = 500


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({name: getattr(record, name) for name in DELIVERY_FIELDS if hasattr(record, name)})
        return json.dumps(line)


class TextFormatter(logging.Formatter):
    """`time level logger message key=value ...`; values that could break the line are JSON-quoted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if not hasattr(record, "outcome"):
            return line
        fields = (f"{name}={_text_value(getattr(record, name, None))}" for name in DELIVERY_FIELDS)
        return " ".join((line, *fields))


def _text_value(value: object) -> str:
    if value is None:
        return "-"
    text = str(value)
    # An event id is the provider's string: quoted when it has spaces, quotes, = or control characters.
    if text and text.isprintable() and not any(char in text for char in ' "='):
        return text
    return json.dumps(text)


class SkipWebhookAccess(logging.Filter):
    """Drops uvicorn's access line for webhook deliveries: the delivery line already records them."""

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn logs '%s - "%s %s HTTP/%s" %d' with (client, method, path, http version, status).
        args = record.args
        return not (isinstance(args, tuple) and len(args) >= 3 and str(args[2]).startswith(WEBHOOK_PATHS))


class _Listener(logging.handlers.QueueListener):
    """Writes queued records on its own thread; turns queued delivery fields into records there too."""

    def prepare(self, record: Any) -> logging.LogRecord:
        if isinstance(record, logging.LogRecord):
            return record
        created, fields = record
        return logging.makeLogRecord(
            {
                "name": delivery_logger.name,
                "levelno": logging.INFO,
                "levelname": "INFO",
                "msg": "delivery",
                "created": created,
                "msecs": (created - int(created)) * 1000,
                **fields,
            }
        )


# Where delivery lines go: the listener's queue, once logging is configured.
_delivery_lines: "queue.SimpleQueue[Any] | None" = None


def configure_logging(settings: Settings) -> Callable[[], None]:
    """Route the service's logs through a queue to stderr; returns the function that flushes and stops."""
    global _delivery_lines
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    records: queue.SimpleQueue[Any] = queue.SimpleQueue()
    listener = _Listener(records, handler)
    queue_handler = logging.handlers.QueueHandler(records)
    root = logging.getLogger("webhooks")
    root.handlers[:] = [queue_handler]
    root.setLevel(settings.log_level.upper())
    root.propagate = False
    access_filter = SkipWebhookAccess()
    logging.getLogger("uvicorn.access").addFilter(access_filter)
    replaced: list[str] = []
    if settings.log_format == "json":
        for name in UVICORN_LOGGERS:
            uvicorn_logger = logging.getLogger(name)
            if uvicorn_logger.handlers:  # none when uvicorn runs with --no-access-log: keep it off
                replaced.append(name)
                uvicorn_logger.handlers[:] = [queue_handler]
    listener.start()
    _delivery_lines = records

    def stop() -> None:
        global _delivery_lines
        _delivery_lines = None
        listener.stop()
        logging.getLogger("uvicorn.access").removeFilter(access_filter)
        # uvicorn's last lines ("Application shutdown complete") come after this: still JSON, written
        # directly now that the listener is gone.
        for name in replaced:
            logging.getLogger(name).handlers[:] = [handler]

    return stop


def record_delivery(request: Request, delivery: Delivery, duration_s: float) -> None:
    metrics.observe_delivery(provider=delivery.provider, outcome=delivery.outcome, duration_s=duration_s)
    lines = _delivery_lines
    if lines is None or not delivery_logger.isEnabledFor(logging.INFO):
        return
    fields = {
        "request_id": request.scope.get("request_id"),
        "provider": delivery.provider,
        "event_id": delivery.event_id,
        "outcome": delivery.outcome,
        "status_code": delivery.status_code,
        "duration_ms": round(duration_s * 1000, 2),
    }
    # Only the fields are queued: building the LogRecord (stack walk, thread names, a copy) measured
    # as a third of a delivery's CPU, so the listener thread builds it, and formats and writes it.
    lines.put_nowait((time.time(), fields))


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
        # Random, not unique by construction: an id to find a request's lines by, never a secret, and
        # getrandbits costs a fraction of uuid4's system call.
        request_id = _incoming_request_id(scope) or f"{random.getrandbits(128):032x}"
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
            decoded: str = value.decode("latin-1")
            if 0 < len(value) <= 128 and value.isascii() and decoded.isprintable():
                return decoded
            return None
    return None
