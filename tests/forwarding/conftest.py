from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from config import Settings
from database import make_engine
from ops import migrate
from tests.forwarding.nats_support import NatsServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """The app's engine with the test module's `settings`, on its database migrated to head."""
    migrate.upgrade_to_head(settings.database_url)
    engine = make_engine(settings)
    yield engine
    engine.dispose()
