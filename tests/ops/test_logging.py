"""One structured line per delivery (request id, provider, event id, outcome, status, duration), as JSON
or text; never the secret or the body; uvicorn's access line does not repeat it."""

import json
import re
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient

from tests.conftest import ROOT, LiveServer
from tests.support import razorpay_delivery, razorpay_event, razorpay_signature

FIELDS = ("request_id", "provider", "event_id", "outcome", "status_code", "duration_ms")
TEXT_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


class AccessLoggingServer(LiveServer):
    """The live server with uvicorn's access log on, as `uvicorn main:app` runs by default."""

    def start(self, deadline_s: float = 20.0) -> "AccessLoggingServer":
        # uvicorn writes access lines to stdout: merged into the one pipe the test reads.
        self.process = subprocess.Popen(
            self.command(access_log=True),
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready(deadline_s)
        return self


def delivery_fields(line: str, log_format: str) -> dict[str, Any] | None:
    """The fields of a delivery line, or None for any other line."""
    if log_format == "json":
        if not line.startswith("{"):
            return None
        record = json.loads(line)
        return {name: record[name] for name in FIELDS} if record["logger"] == "webhooks.delivery" else None
    if " webhooks.delivery " not in line:
        return None
    values = {
        name: json.loads(value) if value.startswith('"') else value
        for name, value in TEXT_FIELD.findall(line)
    }
    fields: dict[str, Any] = {name: values[name] for name in FIELDS}
    fields["event_id"] = None if fields["event_id"] == "-" else fields["event_id"]
    fields["status_code"] = int(fields["status_code"])
    fields["duration_ms"] = float(fields["duration_ms"])
    return fields


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_one_line_per_delivery_with_its_fields_and_nothing_secret(database_url: str, log_format: str) -> None:
    secret = f"whsec_{uuid.uuid4().hex}"
    marker = f"payload-marker-{uuid.uuid4().hex}"
    server = AccessLoggingServer(
        {
            "DATABASE_URL": database_url,
            "RAZORPAY_WEBHOOK_SECRET": secret,
            "LOG_FORMAT": log_format,
            "LOG_LEVEL": "INFO",
        }
    )
    event = razorpay_event(event_id="evt_log_1") | {"notes": {"customer": marker}}
    body, headers = razorpay_delivery(event, secret)
    not_json = f'{{"notes": "{marker}"'.encode()
    # (headers, body, expected outcome, expected status, expected event id)
    scenario: list[tuple[dict[str, str], bytes, str, int, str | None]] = [
        ({**headers, "X-Request-ID": "req-from-provider-1"}, body, "processed", 200, "evt_log_1"),
        (headers, body, "duplicate", 200, "evt_log_1"),
        (
            {"X-Razorpay-Signature": razorpay_signature(body, "not-the-secret")},
            body,
            "signature_invalid",
            403,
            None,
        ),
        ({"X-Razorpay-Signature": razorpay_signature(not_json, secret)}, not_json, "invalid_json", 400, None),
    ]
    try:
        server.start()
        responses = [
            requests.post(server.url + "/webhooks/razorpay", data=payload, headers=sent, timeout=10)
            for sent, payload, *_ in scenario
        ]
        assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
    finally:
        server.stop()
    assert server.process is not None and server.process.stdout is not None
    lines = server.process.stdout.read().decode().splitlines()

    request_ids = [response.headers["X-Request-ID"] for response in responses]
    assert request_ids[0] == "req-from-provider-1"
    assert all(re.fullmatch(r"[0-9a-f]{32}", generated) for generated in request_ids[1:])
    logged = [fields for line in lines if (fields := delivery_fields(line, log_format)) is not None]
    assert [
        {name: value for name, value in fields.items() if name != "duration_ms"} for fields in logged
    ] == [
        {
            "request_id": request_id,
            "provider": "razorpay",
            "event_id": event_id,
            "outcome": outcome,
            "status_code": status,
        }
        for request_id, (_, _, outcome, status, event_id) in zip(request_ids, scenario, strict=True)
    ]
    assert [response.status_code for response in responses] == [status for _, _, _, status, _ in scenario]
    assert all(fields["duration_ms"] >= 0 for fields in logged)
    # uvicorn's access log is on: it still logs other routes, but not the deliveries a second time.
    assert any("GET /healthz" in line for line in lines)
    assert not any("/webhooks/" in line for line in lines)
    assert not [line for line in lines if secret in line or marker in line]


@pytest.mark.parametrize(("level", "logged"), [("INFO", True), ("WARNING", False)])
def test_log_level_decides_whether_deliveries_are_logged(
    client_factory: Callable[..., TestClient], capfd: pytest.CaptureFixture[str], level: str, logged: bool
) -> None:
    client = client_factory(log_level=level, log_format="json")
    body, headers = razorpay_delivery(razorpay_event(event_id="evt_level"))

    assert client.post("/webhooks/razorpay", content=body, headers=headers).status_code == 200
    client.__exit__(None, None, None)  # stops the log listener, which flushes

    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    assert any(line.get("event_id") == "evt_level" for line in lines) is logged


@pytest.mark.parametrize(
    ("event_id", "rendered"),
    [
        ("evt_plain", "event_id=evt_plain"),
        ('evt "quoted" id', r'event_id="evt \"quoted\" id"'),
        ("evt\nforged line", r'event_id="evt\nforged line"'),
    ],
)
def test_text_lines_cannot_be_split_or_forged_by_an_event_id(event_id: str, rendered: str) -> None:
    import logging

    from ops.telemetry import TextFormatter

    record = logging.LogRecord("webhooks.delivery", logging.INFO, __file__, 1, "delivery", None, None)
    for name, value in zip(FIELDS, ("r1", "razorpay", event_id, "processed", 200, 1.5), strict=True):
        setattr(record, name, value)

    line = TextFormatter().format(record)

    assert "\n" not in line
    assert rendered in line
