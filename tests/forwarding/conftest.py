from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.forwarding.nats_support import NatsServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()
