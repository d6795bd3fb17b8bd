"""Fixtures: a database per backend (SQLite always, PostgreSQL when TEST_POSTGRES_URL is set), an app
on it (TestClient, so the lifespan runs), and a live uvicorn process for tests that need real sockets."""

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text

from api.hot_routes import HotRoutes
from config import Settings
from database import make_engine, normalise_url
from main import create_app
from models import Base
from ops import migrate

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures"
BACKENDS = ["sqlite", "postgresql"]


@contextmanager
def scratch_postgres_database(server_url: str) -> Iterator[str]:
    """A database of its own on the server at `server_url`, dropped afterwards."""
    name = f"webhooks_scratch_{uuid.uuid4().hex[:12]}"
    admin = normalise_url(server_url).set(drivername="postgresql")
    conninfo = admin.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A throwaway database on the server named by TEST_POSTGRES_URL, dropped at the end of the run."""
    base = os.environ.get("TEST_POSTGRES_URL")
    if not base:
        pytest.skip("PostgreSQL tests need TEST_POSTGRES_URL (e.g. postgresql://root@127.0.0.1:5432/test)")
    with scratch_postgres_database(base) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'webhooks.db'}"
    url: str = request.getfixturevalue("postgres_server_url")
    engine = create_engine(normalise_url(url))
    Base.metadata.drop_all(engine)
    with engine.begin() as connection:  # Alembic's bookkeeping too: empty means "never migrated"
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    return url


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": database_url, "razorpay_webhook_secret": ["test_secret"]}
    values.update(overrides)
    return Settings(**values)


def without_hot_routes(app: FastAPI) -> FastAPI:
    """The same app with every request going through FastAPI's router."""
    kept = [m for m in app.user_middleware if m.cls is not HotRoutes]
    assert len(kept) == len(app.user_middleware) - 1
    app.user_middleware = kept
    return app


@pytest.fixture
def migrated_engine(database_url: str) -> Iterator[Engine]:
    """The app's engine (database.make_engine) on this test's database, migrated to head."""
    migrate.upgrade_to_head(database_url)
    engine = make_engine(make_settings(database_url))
    yield engine
    engine.dispose()


@pytest.fixture
def client_factory(database_url: str) -> Iterator[Callable[..., TestClient]]:
    """`client_factory(**settings)`: a started app on this test's database."""
    clients: list[TestClient] = []

    def start(**overrides: Any) -> TestClient:
        client = TestClient(
            create_app(make_settings(database_url, **overrides)), raise_server_exceptions=False
        )
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(client_factory: Callable[..., TestClient]) -> TestClient:
    return client_factory()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """A real uvicorn process serving main:app on loopback."""

    def __init__(self, env: dict[str, str], *, workers: int = 1, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "APP_ENV": "development", **env}
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the fixture)

    def command(self, *, access_log: bool = False) -> list[str]:
        """uvicorn serving main:app on loopback at this server's port."""
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        return [*command, "--workers", str(self.workers), *([] if access_log else ["--no-access-log"])]

    def start(self, deadline_s: float = 20.0) -> "LiveServer":
        self.process = subprocess.Popen(
            # The log goes to a file, not a pipe: nobody reads a pipe while the test runs, and a full
            # pipe would block the server's log thread.
            self.command(),
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
        )
        self.wait_ready(deadline_s)
        return self

    def wait_ready(self, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                self._log_file.seek(0)
                raise RuntimeError(f"server exited: {self._log_file.read().decode(errors='replace')}")
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)  # polling interval while the server boots, not a wait for a race
        raise RuntimeError("server did not become ready in time")

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None

    def close_log(self) -> None:
        self._log_file.close()

    def read_log(self) -> str:
        """Everything the server has written to stderr so far."""
        self._log_file.flush()
        self._log_file.seek(0)
        return self._log_file.read().decode(errors="replace")


@pytest.fixture
def live_server_factory() -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def start(env: dict[str, str], **kwargs: Any) -> LiveServer:
        server = LiveServer(env, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        server.close_log()


@pytest.fixture
def live_server(database_url: str, live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    return live_server_factory({"DATABASE_URL": database_url, "RAZORPAY_WEBHOOK_SECRET": "test_secret"})


def fixture_path(*parts: str) -> Path:
    """A file under ../shared/fixtures, or skip when that folder is not on this machine."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"published fixtures not found at {FIXTURES}")
    return path
