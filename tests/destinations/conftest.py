"""Receivers the tests start (and stop), a destinations file written per test, signed deliveries in,
and what the database recorded."""

import base64
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from database import normalise_url
from models import DestinationAttempt, DestinationDelivery
from tests.destinations.receiver import Receiver, Script
from tests.live import wait_until
from tests.support import razorpay_delivery, razorpay_event

SECRET = "whsec_" + base64.b64encode(b"destinations-test-secret-32byte!").decode()
TOKEN = "destinations-token-0001"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(script: Script | None = None, *, secret: str = SECRET, port: int | None = None) -> Receiver:
        receiver = Receiver(secret, script, port=port).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


def destination(name: str, url: str, **options: Any) -> dict[str, Any]:
    """A file entry with fast retries (tests wait for them), unless told otherwise."""
    entry: dict[str, Any] = {
        "name": name,
        "url": url,
        "secret": SECRET,
        "backoff_base_seconds": 0.05,
        "backoff_max_seconds": 0.2,
        "timeout_seconds": 2,
    }
    entry.update(options)
    return entry


@pytest.fixture
def app_with(client_factory: Callable[..., TestClient], tmp_path: Path) -> Callable[..., TestClient]:
    """`app_with(entry, ...)`: the app with a destinations file holding these entries."""

    def start(*entries: dict[str, Any], **settings: Any) -> TestClient:
        path = tmp_path / "destinations.yaml"
        path.write_text(yaml.safe_dump({"destinations": list(entries)}))
        settings.setdefault("api_tokens", [TOKEN])
        return client_factory(destinations_file=str(path), destinations_poll_seconds=0.1, **settings)

    return start


def post(client: TestClient, **fields: Any) -> str:
    payload = razorpay_event(**fields)
    body, headers = razorpay_delivery(payload)
    response = client.post("/webhooks/razorpay", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(payload["id"])


def deliveries(database_url: str) -> list[Any]:
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as connection:
            table = DestinationDelivery.__table__
            return list(connection.execute(select(table).order_by(table.c.id)).all())
    finally:
        engine.dispose()


def states(database_url: str) -> dict[tuple[str, str], str]:
    """(destination, event id) -> pending / delivered / dead."""
    return {(row.destination, row.event_id): row.state for row in deliveries(database_url)}


def attempts(database_url: str) -> list[Any]:
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as connection:
            return list(
                connection.execute(select(DestinationAttempt.__table__).order_by(DestinationAttempt.id)).all()
            )
    finally:
        engine.dispose()


def wait_for(predicate: Callable[[], bool], deadline_s: float = 20.0) -> None:
    assert wait_until(predicate, deadline_s=deadline_s, interval_s=0.05), "not reached before the deadline"


class Lines(logging.Handler):
    """The destinations logger's records, as the test sees them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def warnings(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= logging.WARNING]


@pytest.fixture
def destination_log() -> Iterator[Lines]:
    lines = Lines()
    logger = logging.getLogger("webhooks.destinations")
    logger.addHandler(lines)
    yield lines
    logger.removeHandler(lines)
