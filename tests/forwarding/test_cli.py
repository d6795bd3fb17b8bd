"""The operator's commands: forward-status shows the backlog and the cursor; republish sends stored
events again under their own message ids, which the stream takes once."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from nats.js.errors import NotFoundError

import cli
from config import get_settings
from forwarding import outbox
from tests.conftest import ROOT
from tests.forwarding.nats_support import NatsServer, msg_ids, read_stream
from tests.forwarding.test_forwarding import post


def wait_for_events(url: str, count: int, deadline_s: float = 15.0) -> None:
    def events() -> int:
        try:
            messages = read_stream(url)
        except NotFoundError:  # the relay has not created the stream yet
            return 0
        return sum(1 for message_id in msg_ids(messages) if not message_id.startswith("state:"))

    deadline = time.monotonic() + deadline_s
    while events() < count and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the stream until the relay has published, not a wait for a race
    assert events() == count


@pytest.fixture
def environment(
    database_url: str, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("NATS_URL", nats_server.url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_forward_status_and_republish(
    client_factory: Callable[..., TestClient],
    nats_server: NatsServer,
    environment: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = client_factory(nats_url=nats_server.url)
    post(client, event="refund.created", payment_id="pay_1", event_id="evt_1")
    post(client, event="refund.created", payment_id="pay_2", event_id="evt_2")
    wait_for_events(nats_server.url, 2)
    engine = client.app.state.engine  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the cursor moves just after the stream's acknowledgements
        with engine.connect() as connection:
            if outbox.status(connection, stream="PAYMENTS").lag_events == 0:
                break
        time.sleep(0.05)

    assert cli.main(["forward-status"]) == 0
    status = capsys.readouterr().out
    assert "lag:                 0 events" in status
    assert "published:           2 events" in status

    assert cli.main(["republish", "--since", "2000-01-01"]) == 0
    assert "republished 0 events (2 already in the stream's duplicate window)" in capsys.readouterr().out
    republished = msg_ids(read_stream(nats_server.url))
    assert {"razorpay:evt_1", "razorpay:evt_2"} <= set(republished)
    assert set(republished.values()) == {1}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_relay_runs_alone_as_a_command(
    client_factory: Callable[..., TestClient], nats_server: NatsServer, database_url: str
) -> None:
    client = client_factory(nats_url=nats_server.url, forward_in_process=False)
    post(client, event="refund.created", payment_id="pay_1", event_id="evt_1")
    env = {**os.environ, "DATABASE_URL": database_url, "NATS_URL": nats_server.url}
    relay = subprocess.Popen([sys.executable, "-m", "cli", "relay"], cwd=ROOT, env=env)
    try:
        wait_for_events(nats_server.url, 1)
    finally:
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(15) == 0
    assert msg_ids(read_stream(nats_server.url))["razorpay:evt_1"] == 1
