"""Delivery lines are formatted straight from the queued fields (TextLine, JsonLine) and written in batches
(LogWriter): every line must be exactly what TextFormatter and JsonFormatter make of the same record, and
batching must neither reorder nor drop lines."""

import io
import json
import logging
import queue
import time
from collections.abc import Iterator
from typing import Any, TextIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from ops import telemetry
from ops.telemetry import DeliveryItem, JsonFormatter, JsonLine, LogWriter, TextFormatter, TextLine
from tests.conftest import make_settings

FIELDS = telemetry.DELIVERY_FIELDS

# Around 2023-11-14 22:13:20 UTC, and a summer time (so a zone with daylight saving shows it); the
# fractions sit on and next to the millisecond boundaries, and .9999996 rounds up to the next second in
# datetime.fromtimestamp (JSON) while logging's msecs truncates it (text).
BASE = 1_700_000_000
TIMES = [
    BASE + 0.0,
    BASE + 0.0004,
    BASE + 0.0005,
    BASE + 0.001,
    BASE + 0.1234564,
    BASE + 0.5,
    BASE + 0.9994999,
    BASE + 0.9995,
    BASE + 0.999999,
    BASE + 0.9999996,
    BASE + 1.0000004,
    1_719_000_000.25,
    1_719_003_599.9999999,
]
EVENT_IDS = [
    "evt_29QQoUBi66xm2f",
    None,
    "",
    "evt with spaces",
    'evt "quoted" id',
    "a=b",
    "evt\nforged line",
    "evt\r\x00\x1b[31m\t",
    "évènement_ünïcode",
    "evt_\U0001f600",
    "\u2028",
    "\ud800",
    "x" * 300,
    "\\back\\slash",
]
REQUEST_IDS = ["0123456789abcdef0123456789abcdef", "req-from-provider-1", None]
STATUS_CODES = [200, 400, 403, 500, 503]
DURATIONS_S = [0.0, 1e-9, 0.000005, 0.0000051, 0.0012345, 0.1, 1.5, 12.3456789, 3600.0]


def reference_record(item: DeliveryItem) -> logging.LogRecord:
    """The record the writer thread used to build for a delivery (and format with the handler's formatter)."""
    created, *values, duration_s = item
    return logging.makeLogRecord(
        {
            "name": "webhooks.delivery",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": "delivery",
            "created": created,
            "msecs": (created - int(created)) * 1000,
            **dict(zip(FIELDS, (*values, round(duration_s * 1000, 2)), strict=True)),
        }
    )


def assert_same_lines(item: DeliveryItem, text_line: TextLine, json_line: JsonLine) -> None:
    record = reference_record(item)
    assert text_line(item) == TextFormatter().format(record)
    fast_json = json_line(item)
    assert json.loads(fast_json) == json.loads(JsonFormatter().format(record))
    assert fast_json == JsonFormatter().format(record)  # the very same bytes, too


@pytest.fixture(params=["UTC", "Europe/Berlin", "America/St_Johns"])
def local_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The text line's time is local time: checked in a zone with daylight saving and a half-hour offset."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def test_fast_lines_match_the_formatters_for_every_time(local_zone: str) -> None:
    # One formatter of each kind for the whole run, as on the writer thread: its per-second cache is
    # crossed forwards, backwards and within a second.
    text_line, json_line = TextLine(), JsonLine()
    for created in [*TIMES, *reversed(TIMES)]:
        item = (created, "r1", "razorpay", "evt_1", "processed", 200, 0.0015)
        assert_same_lines(item, text_line, json_line)
        assert_same_lines(item, TextLine(), JsonLine())


@pytest.mark.parametrize("event_id", EVENT_IDS)
def test_fast_lines_match_the_formatters_for_every_value(event_id: str | None) -> None:
    text_line, json_line = TextLine(), JsonLine()
    for request_id in REQUEST_IDS:
        for status_code in STATUS_CODES:
            for duration_s in DURATIONS_S:
                item = (BASE + 0.25, request_id, "razorpay", event_id, "processed", status_code, duration_s)
                assert_same_lines(item, text_line, json_line)
    for provider, outcome in [("unknown", "unknown_provider"), ("stripe", "signature_invalid")]:
        assert_same_lines((BASE + 0.75, "r2", provider, event_id, outcome, 403, 0.002), text_line, json_line)


def former_text_value(value: object) -> str:
    """_text_value as it was before it was made cheaper: TextFormatter and TextLine both use _text_value."""
    if value is None:
        return "-"
    text = str(value)
    if text and text.isprintable() and not any(char in text for char in ' "='):
        return text
    return json.dumps(text)


@pytest.mark.parametrize(
    "value", [*EVENT_IDS, *REQUEST_IDS, *STATUS_CODES, *DURATIONS_S, "a b", 'a"', "=", "-"]
)
def test_text_values_are_quoted_as_before(value: object) -> None:
    assert telemetry._text_value(value) == former_text_value(value)


@given(st.none() | st.text() | st.integers() | st.floats())
def test_any_text_value_is_quoted_as_before(value: object) -> None:
    assert telemetry._text_value(value) == former_text_value(value)


SHARED_TEXT_LINE, SHARED_JSON_LINE = TextLine(), JsonLine()


@settings(max_examples=300)
@given(
    created=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    request_id=st.none() | st.text(),
    provider=st.text(min_size=1),
    event_id=st.none() | st.text(),
    outcome=st.text(min_size=1),
    status_code=st.integers(min_value=100, max_value=599),
    duration_s=st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
def test_fast_lines_match_the_formatters_for_any_values(
    created: float,
    request_id: str | None,
    provider: str,
    event_id: str | None,
    outcome: str,
    status_code: int,
    duration_s: float,
) -> None:
    item = (created, request_id, provider, event_id, outcome, status_code, duration_s)
    assert_same_lines(item, TextLine(), JsonLine())
    assert_same_lines(item, SHARED_TEXT_LINE, SHARED_JSON_LINE)


class RecordingStream(io.StringIO):
    """A stream that keeps each write separately."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def writer_on(stream: TextIO, records: "queue.SimpleQueue[Any]") -> LogWriter:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    return LogWriter(records, handler, TextLine())


def delivery(index: int) -> DeliveryItem:
    return (BASE + index / 1000, f"r{index}", "razorpay", f"evt_{index}", "processed", 200, 0.001)


def test_log_records_and_delivery_lines_come_out_in_queue_order_with_one_write_per_run() -> None:
    stream = RecordingStream()
    records: queue.SimpleQueue[Any] = queue.SimpleQueue()
    warning = logging.makeLogRecord(
        {
            "name": "webhooks",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": "between",
            "created": BASE,
        }
    )
    for item in [delivery(1), delivery(2), delivery(3), warning, delivery(4), delivery(5)]:
        records.put(item)
    writer = writer_on(stream, records)

    writer.start()  # everything is queued already: one batch
    writer.stop()

    assert not writer.is_alive()
    text_line = TextLine()
    run_1 = "".join(text_line(delivery(index)) + "\n" for index in (1, 2, 3))
    run_2 = "".join(text_line(delivery(index)) + "\n" for index in (4, 5))
    assert stream.writes == [run_1, TextFormatter().format(warning) + "\n", run_2]


def test_stop_writes_everything_queued_before_it_returns() -> None:
    stream = io.StringIO()
    records: queue.SimpleQueue[Any] = queue.SimpleQueue()
    writer = writer_on(stream, records)
    writer.start()
    count = 5 * telemetry._BATCH_MAX + 7  # several batches
    for index in range(count):
        records.put(delivery(index))

    writer.stop()

    lines = stream.getvalue().splitlines()
    assert len(lines) == count
    assert [line.split(" request_id=")[1].split(" ")[0] for line in lines] == [f"r{i}" for i in range(count)]


def test_what_is_queued_after_the_stop_is_written_too() -> None:
    stream = io.StringIO()
    records: queue.SimpleQueue[Any] = queue.SimpleQueue()
    # The stop marker ends the first batch; the last line is left for after it.
    before = [delivery(index) for index in range(telemetry._BATCH_MAX - 1)]
    for item in [*before, telemetry._STOP, delivery(-1)]:
        records.put(item)
    writer = writer_on(stream, records)

    writer.start()
    writer.join(timeout=10)

    assert not writer.is_alive()
    text_line = TextLine()
    assert stream.getvalue() == "".join(text_line(item) + "\n" for item in [*before, delivery(-1)])


def test_a_line_that_cannot_be_formatted_or_written_is_reported_and_the_rest_still_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class FailingOnce(io.StringIO):
        failed = False

        def write(self, text: str) -> int:
            if not self.failed:
                self.failed = True
                raise OSError("disk full")
            return super().write(text)

    stream = FailingOnce()
    records: queue.SimpleQueue[Any] = queue.SimpleQueue()
    writer = writer_on(stream, records)
    broken: Any = (BASE, "r0", "razorpay", "evt_0", "processed", 200, "not a duration")
    records.put(delivery(1))
    writer.start()
    writer.stop()  # the first write fails
    assert stream.getvalue() == ""

    records = queue.SimpleQueue()
    writer = writer_on(stream, records)
    for item in [broken, delivery(2), delivery(3)]:
        records.put(item)
    writer.start()
    writer.stop()

    assert [line.split(" request_id=")[1].split(" ")[0] for line in stream.getvalue().splitlines()] == [
        "r2",
        "r3",
    ]
    reported = capsys.readouterr().err
    assert "OSError: disk full" in reported
    assert "TypeError" in reported  # round() of the broken duration


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_configure_logging_writes_records_and_deliveries_in_order_and_stop_drains(
    capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    stop = telemetry.configure_logging(make_settings("sqlite://", log_format=log_format, log_level="INFO"))
    logger = logging.getLogger("webhooks.test")
    expected: list[str] = []
    try:
        for index in range(3000):
            if index % 700 == 0:
                logger.warning("marker %d", index)
                expected.append(f"marker {index}")
            request = Request({"type": "http", "request_id": f"req-{index}", "headers": []})
            outcome = telemetry.Delivery(provider="razorpay", event_id=f"evt_{index}", outcome="processed")
            telemetry.record_delivery(request, outcome, 0.001)
            expected.append(f"req-{index}")
    finally:
        stop()

    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    if log_format == "json":
        objects = [json.loads(line) for line in lines]
        seen = [fields.get("request_id") or fields["message"] for fields in objects]
    else:
        seen = [
            line.split(" request_id=")[1].split(" ")[0] if " request_id=" in line else line.split(" ", 4)[4]
            for line in lines
        ]
    assert seen == expected
    assert telemetry._delivery_lines is None  # stopped: later deliveries are not queued
