"""Request ids and the one structured log line per delivery.

Logging goes through the stdlib's queue: the event loop only enqueues a record (for a delivery, a tuple of
its fields), and a QueueListener's thread formats and writes it to stderr, so a slow terminal or disk
never stalls deliveries. Lines never
contain secrets or bodies. uvicorn's access line for a webhook delivery is dropped (the delivery line
says more); with LOG_FORMAT=json uvicorn's own lines are JSON too, so a log pipeline parses every line
the same way.
"""

import json
import logging
import logging.handlers
import math
import queue
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import Any, Final, TextIO

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config import Settings
from ops import metrics

delivery_logger = logging.getLogger("webhooks.delivery")

# The fields a delivery line carries, in order.
DELIVERY_FIELDS = ("request_id", "provider", "event_id", "outcome", "status_code", "duration_ms")
# uvicorn's loggers: "uvicorn.error" propagates to "uvicorn"; "uvicorn.access" does not propagate.
UVICORN_LOGGERS: Final = ("uvicorn", "uvicorn.access")
WEBHOOK_PATHS: Final = ("/webhooks/", "/webhook/payments")
# A delivery as queued by record_delivery: (time.time(), then the DELIVERY_FIELDS values in order).
DeliveryItem = tuple[float, str | None, str, str | None, str, int, float]
# At most this many delivery lines in one write to the stream.
MAX_LINES_A_WRITE: Final = 256
# What every delivery line has between its time and its fields.
_TEXT_DELIVERY: Final = f"INFO {delivery_logger.name} delivery"
_JSON_DELIVERY: Final = (
    f'"level": "INFO", "logger": {json.dumps(delivery_logger.name)}, "message": "delivery"'
)


@dataclass(slots=True)
class Delivery:
    provider: str
    event_id: str | None = None
    outcome: str = "internal_error"
    status_code: int = 500


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, to the millisecond), level, logger, message, delivery fields."""

    def __init__(self) -> None:
        super().__init__()
        # (second, its ISO text without the offset): the part of the time that changes once a second.
        self._second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({name: getattr(record, name) for name in DELIVERY_FIELDS if hasattr(record, name)})
        return json.dumps(line)

    def format_delivery(self, item: "DeliveryItem") -> str:
        """What format() makes of a delivery's record, from its queued fields (see DeliveryListener)."""
        created, request_id, provider, event_id, outcome, status_code, duration_ms = item
        return (
            f'{{"time": "{self.iso_time(created)}", {_JSON_DELIVERY},'
            f' "request_id": {_json_value(request_id)}, "provider": {_json_value(provider)},'
            f' "event_id": {_json_value(event_id)}, "outcome": {_json_value(outcome)},'
            f' "status_code": {_json_value(status_code)}, "duration_ms": {_json_value(duration_ms)}}}'
        )

    def iso_time(self, created: float) -> str:
        """datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds"), the date kept a second.

        fromtimestamp rounds to the microsecond, half to even, which can carry into the next second: that
        rounding is done here first.
        """
        second = int(created)
        micros = round((created - second) * 1e6)
        if micros >= 1_000_000:
            second += 1
            micros -= 1_000_000
        cached_second, stamp = self._second
        if second != cached_second:
            stamp = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds").removesuffix("+00:00")
            self._second = (second, stamp)
        return f"{stamp}.{micros // 1000:03d}+00:00"


class TextFormatter(logging.Formatter):
    """`time level logger message key=value ...`; values that could break the line are JSON-quoted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        # (second, its strftime text): the part of the time that changes once a second.
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """logging.Formatter.formatTime, keeping the part to the second until the second changes."""
        if datefmt:
            return super().formatTime(record, datefmt)
        return f"{self._stamp(record.created)},{int(record.msecs):03d}"  # default_msec_format, "%s,%03d"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if not hasattr(record, "outcome"):
            return line
        fields = (f"{name}={_text_value(getattr(record, name, None))}" for name in DELIVERY_FIELDS)
        return " ".join((line, *fields))

    def format_delivery(self, item: "DeliveryItem") -> str:
        """What format() makes of a delivery's record, from its queued fields (see DeliveryListener)."""
        created, request_id, provider, event_id, outcome, status_code, duration_ms = item
        msecs = int((created - int(created)) * 1000)  # as LogRecord computes it
        return (
            f"{self._stamp(created)},{msecs:03d} {_TEXT_DELIVERY}"
            f" request_id={_text_value(request_id)} provider={_text_value(provider)}"
            f" event_id={_text_value(event_id)} outcome={_text_value(outcome)}"
            f" status_code={_text_value(status_code)} duration_ms={_text_value(duration_ms)}"
        )

    def _stamp(self, created: float) -> str:
        second = int(created)
        cached_second, stamp = self._second
        if second != cached_second:
            stamp = time.strftime(self.default_time_format, self.converter(created))
            self._second = (second, stamp)
        return stamp


def _text_value(value: object) -> str:
    if value is None:
        return "-"
    text = str(value)
    # An event id is the provider's string: quoted when it has spaces, quotes, = or control characters.
    # (Three `in` tests rather than any() over a generator: this runs six times per delivery line.)
    if text.isprintable() and " " not in text and '"' not in text and "=" not in text and text:
        return text
    return json.dumps(text)


def _json_value(value: object) -> str:
    """json.dumps(value), with the common types done without json.dumps's own overhead."""
    if type(value) is str:
        return encode_basestring_ascii(value)
    if value is None:
        return "null"
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return repr(value)
    return json.dumps(value)


class SkipWebhookAccess(logging.Filter):
    """Drops uvicorn's access line for webhook deliveries: the delivery line already records them."""

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn logs '%s - "%s %s HTTP/%s" %d' with (client, method, path, http version, status).
        args = record.args
        return not (isinstance(args, tuple) and len(args) >= 3 and str(args[2]).startswith(WEBHOOK_PATHS))


class UnformattedQueueHandler(logging.handlers.QueueHandler):
    """Enqueues the record itself, for the listener's thread to format.

    The stdlib's QueueHandler.prepare formats the record and copies it before enqueueing it, so that a
    record can cross a process boundary and its arguments cannot change before they are formatted. Here
    the queue stays in the process, records carry only values that are not changed after logging, and
    prepare() runs on the thread that logs, the event loop: formatting is left to the listener's thread.
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class DeliveryListener(logging.handlers.QueueListener):
    """The stdlib's listener, which also writes the delivery items that record_delivery queues.

    A delivery's line is queued as a tuple of its fields and formatted here by the formatter's
    format_delivery, without a LogRecord: a record per delivery (made, handled by the logger and the
    queue handler, then by the stream handler) cost more of a delivery's CPU than the throughput target
    allows (BENCHMARKS.md, "Logging through the stdlib's queue listener").
    """

    def __init__(
        self,
        records: "queue.SimpleQueue[logging.LogRecord | DeliveryItem]",
        handler: "logging.StreamHandler[TextIO]",
        formatter: "TextFormatter | JsonFormatter",
    ) -> None:
        super().__init__(records, handler)
        self._records = records
        self._handler = handler
        self._formatter = formatter

    def handle(self, record: "logging.LogRecord | DeliveryItem") -> None:
        if not isinstance(record, tuple):
            super().handle(record)
            return
        # The delivery lines queued behind this one go out with it, in one write: under load the queue
        # holds many, and a write each is a system call each, on a thread that takes the event loop's
        # GIL to make it. A record of another kind ends the run and is handled after it, in order.
        items = [record]
        after: logging.LogRecord | None = None
        while len(items) < MAX_LINES_A_WRITE:
            try:
                queued = self._records.get_nowait()
            except queue.Empty:
                break
            if isinstance(queued, tuple):
                items.append(queued)
            elif queued is None:  # QueueListener's end mark, from stop(): it stays the last thing read
                self._records.put_nowait(queued)
                break
            else:
                after = queued
                break
        self._write_deliveries(items)
        if after is not None:
            super().handle(after)

    def _write_deliveries(self, items: "list[DeliveryItem]") -> None:
        handler = self._handler
        lines: list[str] = []
        for item in items:
            try:
                lines.append(self._formatter.format_delivery(item) + handler.terminator)
            except Exception:  # as the handler reports a record it cannot format; the others still go out
                self._report("a delivery line")
        try:
            handler.acquire()
            try:
                handler.stream.write("".join(lines))
                handler.flush()
            finally:
                handler.release()
        except Exception:  # as the handler reports a record it cannot write; the thread goes on
            self._report(f"{len(lines)} delivery lines")

    def _report(self, what: str) -> None:
        self._handler.handleError(logging.makeLogRecord({"name": delivery_logger.name, "msg": what}))


# Where record_delivery queues delivery lines, while logging is configured.
_delivery_lines: "queue.SimpleQueue[logging.LogRecord | DeliveryItem] | None" = None


def configure_logging(settings: Settings) -> Callable[[], None]:
    """Route the service's logs through a queue to stderr; returns the function that flushes and stops."""
    global _delivery_lines
    formatter = JsonFormatter() if settings.log_format == "json" else TextFormatter()
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    records: queue.SimpleQueue[logging.LogRecord | DeliveryItem] = queue.SimpleQueue()
    queue_handler = UnformattedQueueHandler(records)
    listener = DeliveryListener(records, handler, formatter)
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
        listener.stop()  # writes everything queued so far, then ends its thread
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
    item: DeliveryItem = (
        time.time(),
        request.scope.get("request_id"),
        delivery.provider,
        delivery.event_id,
        delivery.outcome,
        delivery.status_code,
        round(duration_s * 1000, 2),
    )
    lines.put_nowait(item)


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
