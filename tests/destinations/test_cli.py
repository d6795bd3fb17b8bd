"""`python -m cli destinations ...`: the API's reads and actions as commands."""

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

import cli
from config import get_settings
from tests.conftest import ROOT, free_port
from tests.destinations.conftest import destination, post, states, wait_for
from tests.destinations.receiver import Receiver


@pytest.fixture
def destinations_file(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "destinations.yaml"
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DESTINATIONS_FILE", str(path))
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def test_list_dead_replay_pause_resume_and_attempts(
    client_factory: Callable[..., TestClient],
    receivers: Callable[..., Receiver],
    destinations_file: Path,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    destinations_file.write_text(
        yaml.safe_dump(
            {"destinations": [destination("orders", f"http://127.0.0.1:{port}/h", max_attempts=2)]}
        )
    )
    client = client_factory(
        destinations_file=str(destinations_file), destinations_poll_seconds=0.1, api_tokens=["x" * 16]
    )
    event_id = post(client, payment_id="pay_c")
    wait_for(lambda: states(database_url) == {("orders", event_id): "dead"})

    assert cli.main(["destinations", "list"]) == 0
    listed = capsys.readouterr().out
    assert "orders" in listed and "failing" in listed and "dead=1" in listed
    assert cli.main(["destinations", "dead", "orders"]) == 0
    assert f"razorpay:{event_id}" in capsys.readouterr().out
    assert cli.main(["destinations", "attempts", "razorpay", event_id]) == 0
    assert capsys.readouterr().out.count("connect_error") == 2
    assert cli.main(["destinations", "attempts", "razorpay", "evt_none"]) == 1
    assert cli.main(["destinations", "pause", "nope"]) == 2

    assert cli.main(["destinations", "pause", "orders"]) == 0
    receiver = receivers(port=port)
    assert cli.main(["destinations", "replay", "orders", "--dead-only", "--since", "2000-01-01"]) == 0
    assert "queued 1 events" in capsys.readouterr().out
    assert (
        client.get("/destinations", headers={"Authorization": "Bearer " + "x" * 16}).json()[0]["state"]
        == "paused"
    )
    assert cli.main(["destinations", "resume", "orders"]) == 0
    wait_for(lambda: states(database_url) == {("orders", event_id): "delivered"})
    assert [r.webhook_id for r in receiver.delivered()] == [f"razorpay:{event_id}"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_deliveries_run_apart_when_the_service_does_not_send(
    client_factory: Callable[..., TestClient],
    receivers: Callable[..., Receiver],
    destinations_file: Path,
    database_url: str,
) -> None:
    receiver = receivers()
    destinations_file.write_text(yaml.safe_dump({"destinations": [destination("orders", receiver.url)]}))
    client = client_factory(destinations_file=str(destinations_file), destinations_in_process=False)
    event_id = post(client, payment_id="pay_apart")
    # The service owes the event (its filters are written at start-up) and sends nothing itself.
    wait_for(lambda: states(database_url) == {("orders", event_id): "pending"})
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DESTINATIONS_FILE": str(destinations_file),
        "DESTINATIONS_POLL_SECONDS": "0.1",
    }
    workers = subprocess.Popen([sys.executable, "-m", "cli", "destinations", "run"], cwd=ROOT, env=env)
    try:
        wait_for(lambda: states(database_url) == {("orders", event_id): "delivered"})
    finally:
        workers.send_signal(signal.SIGTERM)
        assert workers.wait(15) == 0
    assert [r.webhook_id for r in receiver.delivered()] == [f"razorpay:{event_id}"]
