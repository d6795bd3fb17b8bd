"""The operator's commands: forward-status shows the backlog and the cursor; republish sends stored
events again under their own message ids, which the stream takes once."""

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

import cli
from config import get_settings
from tests.forwarding.nats_support import NatsServer, msg_ids, read_stream
from tests.forwarding.test_forwarding import post, wait_for_messages


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
    wait_for_messages(nats_server.url, 2)

    assert cli.main(["forward-status"]) == 0
    status = capsys.readouterr().out
    assert "lag:                 0 events" in status
    assert "published:           2 events" in status

    assert cli.main(["republish", "--since", "2000-01-01"]) == 0
    assert "republished 0 events (2 already in the stream's duplicate window)" in capsys.readouterr().out
    assert msg_ids(read_stream(nats_server.url)) == {"razorpay:evt_1": 1, "razorpay:evt_2": 1}
