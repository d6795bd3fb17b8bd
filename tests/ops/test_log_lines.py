"""TextFormatter and JsonFormatter, the one formatter of each format, keep the part of the time that changes
once a second, and format a delivery's line from its queued fields (format_delivery): every line must be
what the uncached formatting makes of the same record (logging's formatTime for text, datetime's
isoformat for JSON). Through the queue, records and delivery lines come out in order, and stopping writes
everything queued."""

import io
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from ops import telemetry
from ops.telemetry import JsonFormatter, TextFormatter
from tests.conftest import make_settings

FIELDS = telemetry.DELIVERY_FIELDS
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

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
DURATIONS_MS = [0.0, 0.01, 1.23, 100.0, 1500.0, 12345.68, 3600000.0]


def delivery_record(created: float, values: tuple[Any, ...]) -> logging.LogRecord:
    """A delivery's record as record_delivery makes it, created at `created`."""
    record = logging.LogRecord("webhooks.delivery", logging.INFO, __file__, 0, "delivery", (), None)
    record.created = created
    record.msecs = int((created - int(created)) * 1000) + 0.0  # as LogRecord computes it
    record.__dict__.update(zip(FIELDS, values, strict=True))
    return record


def expected_lines(record: logging.LogRecord) -> tuple[str, str]:
    """The text and JSON lines for a delivery record, formatted without any cache."""
    values = [getattr(record, name) for name in FIELDS]
    text = " ".join(
        [
            logging.Formatter(TEXT_FORMAT).format(record),
            *(f"{name}={telemetry._text_value(value)}" for name, value in zip(FIELDS, values, strict=True)),
        ]
    )
    line = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": "INFO",
        "logger": "webhooks.delivery",
        "message": "delivery",
        **dict(zip(FIELDS, values, strict=True)),
    }
    return text, json.dumps(line)


def assert_formatted_as_expected(
    record: logging.LogRecord, text: TextFormatter, json_: JsonFormatter
) -> None:
    expected_text, expected_json = expected_lines(record)
    assert text.format(record) == expected_text
    assert json_.format(record) == expected_json  # the very same bytes


@pytest.fixture(params=["UTC", "Europe/Berlin", "America/St_Johns"])
def local_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The text line's time is local time: checked in a zone with daylight saving and a half-hour offset."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def test_lines_keep_their_time_for_every_time(local_zone: str) -> None:
    # One formatter of each kind for the whole run, as on the listener's thread: its per-second cache is
    # crossed forwards, backwards and within a second.
    text, json_ = TextFormatter(), JsonFormatter()
    for created in [*TIMES, *reversed(TIMES)]:
        record = delivery_record(created, ("r1", "razorpay", "evt_1", "processed", 200, 1.5))
        assert_formatted_as_expected(record, text, json_)
        assert_formatted_as_expected(record, TextFormatter(), JsonFormatter())


@pytest.mark.parametrize("event_id", EVENT_IDS)
def test_lines_carry_every_value(event_id: str | None) -> None:
    text, json_ = TextFormatter(), JsonFormatter()
    for request_id in REQUEST_IDS:
        for status_code in STATUS_CODES:
            for duration_ms in DURATIONS_MS:
                values = (request_id, "razorpay", event_id, "processed", status_code, duration_ms)
                assert_formatted_as_expected(delivery_record(BASE + 0.25, values), text, json_)
    for provider, outcome in [("unknown", "unknown_provider"), ("stripe", "signature_invalid")]:
        values = ("r2", provider, event_id, outcome, 403, 2.0)
        assert_formatted_as_expected(delivery_record(BASE + 0.75, values), text, json_)


def former_text_value(value: object) -> str:
    """_text_value as it was before it was made cheaper."""
    if value is None:
        return "-"
    text = str(value)
    if text and text.isprintable() and not any(char in text for char in ' "='):
        return text
    return json.dumps(text)


@pytest.mark.parametrize(
    "value", [*EVENT_IDS, *REQUEST_IDS, *STATUS_CODES, *DURATIONS_MS, "a b", 'a"', "=", "-"]
)
def test_text_values_are_quoted_as_before(value: object) -> None:
    assert telemetry._text_value(value) == former_text_value(value)


@given(st.none() | st.text() | st.integers() | st.floats())
def test_any_text_value_is_quoted_as_before(value: object) -> None:
    assert telemetry._text_value(value) == former_text_value(value)


SHARED_TEXT, SHARED_JSON = TextFormatter(), JsonFormatter()


@settings(max_examples=300)
@given(
    created=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    request_id=st.none() | st.text(),
    provider=st.text(min_size=1),
    event_id=st.none() | st.text(),
    outcome=st.text(min_size=1),
    status_code=st.integers(min_value=100, max_value=599),
    duration_ms=st.floats(min_value=0, max_value=1e9, allow_nan=False),
)
def test_lines_keep_their_time_and_values_for_any_record(
    created: float,
    request_id: str | None,
    provider: str,
    event_id: str | None,
    outcome: str,
    status_code: int,
    duration_ms: float,
) -> None:
    record = delivery_record(created, (request_id, provider, event_id, outcome, status_code, duration_ms))
    assert_formatted_as_expected(record, TextFormatter(), JsonFormatter())
    assert_formatted_as_expected(record, SHARED_TEXT, SHARED_JSON)


def test_other_records_are_formatted_as_logging_formats_them() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "webhooks", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info()
        )
    assert TextFormatter().format(record) == logging.Formatter(TEXT_FORMAT).format(record)
    assert json.loads(JsonFormatter().format(record)) == {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": "ERROR",
        "logger": "webhooks",
        "message": "failed x",
    }


def deliver(index: int) -> None:
    request = Request({"type": "http", "request_id": f"req-{index}", "headers": []})
    outcome = telemetry.Delivery(provider="razorpay", event_id=f"evt_{index}", outcome="processed")
    telemetry.record_delivery(request, outcome, 0.001)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_records_and_deliveries_come_out_in_order_and_stop_writes_everything_queued(
    capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    threads_before = set(threading.enumerate())
    stop = telemetry.configure_logging(make_settings("sqlite://", log_format=log_format, log_level="INFO"))
    logger = logging.getLogger("webhooks.test")
    expected: list[str] = []
    try:
        for index in range(3000):
            if index % 700 == 0:
                logger.warning("marker %d", index)
                expected.append(f"marker {index}")
            deliver(index)
            expected.append(f"req-{index}")
    finally:
        stop()

    assert set(threading.enumerate()) <= threads_before  # the listener's thread has ended
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


def test_a_line_that_cannot_be_formatted_or_written_is_reported_and_the_rest_still_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class FailingOnce(io.StringIO):
        failed = False

        def write(self, text: str) -> int:
            if not self.failed:
                self.failed = True
                raise OSError("disk full")
            return super().write(text)

    class Unprintable:
        def __str__(self) -> str:
            raise TypeError("no text")

    stream = FailingOnce()
    monkeypatch.setattr(sys, "stderr", stream)  # where the handler writes, and where logging reports
    text = make_settings("sqlite://", log_format="text", log_level="INFO")
    stop = telemetry.configure_logging(text)
    deliver(1)
    stop()  # its write fails
    assert stream.getvalue().count(" request_id=") == 0

    stop = telemetry.configure_logging(text)
    broken: Any = Unprintable()
    telemetry.record_delivery(
        Request({"type": "http", "request_id": "req-broken", "headers": []}),
        telemetry.Delivery(provider="razorpay", event_id=broken),
        0.001,
    )
    deliver(2)
    deliver(3)
    stop()

    written = stream.getvalue()
    delivered = [
        line.split(" request_id=")[1].split(" ")[0] for line in written.splitlines() if " request_id=" in line
    ]
    assert delivered == ["req-2", "req-3"]
    assert "OSError: disk full" in written
    assert "TypeError: no text" in written


def test_delivery_lines_queued_together_go_out_in_one_write_in_order() -> None:
    """The listener writes the delivery lines it finds queued behind one in a single write; a record of
    another kind ends the run and follows it, and the end mark stays queued for the listener's loop."""

    class CountingStream(io.StringIO):
        writes = 0

        def write(self, text: str) -> int:
            self.writes += 1
            return super().write(text)

    stream = CountingStream()
    handler = logging.StreamHandler(stream)
    formatter = TextFormatter()
    handler.setFormatter(formatter)
    records: Any = __import__("queue").SimpleQueue()
    listener = telemetry.DeliveryListener(records, handler, formatter)
    items = [
        (BASE + index, f"req-{index}", "razorpay", f"evt_{index}", "processed", 200, 1.0)
        for index in range(9)
    ]
    marker = logging.makeLogRecord({"name": "webhooks.test", "msg": "marker", "levelno": logging.WARNING})
    for item in items[1:5]:
        records.put(item)
    records.put(marker)
    records.put(items[5])
    records.put(None)  # QueueListener's end mark, as stop() enqueues it

    listener.handle(items[0])

    lines = stream.getvalue().splitlines()
    assert [line.split(" request_id=")[1].split(" ")[0] for line in lines[:5]] == [
        f"req-{i}" for i in range(5)
    ]
    assert lines[5].endswith("marker")
    assert stream.writes == 2  # the five delivery lines, then the marker
    # The run stopped at the marker; the next one stops at the end mark and leaves it queued.
    listener.handle(records.get_nowait())
    assert stream.getvalue().splitlines()[6].split(" request_id=")[1].split(" ")[0] == "req-5"
    assert records.get_nowait() is None
    assert records.empty()
