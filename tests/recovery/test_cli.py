"""`python -m cli recover`: what an operator types, and what it prints."""

import asyncio
import io
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

import cli
from config import get_settings
from models import Event
from recovery import state
from recovery.command import recover_providers
from tests.conftest import make_settings
from tests.recovery.conftest import recovery_settings
from tests.recovery.fake_api import STRIPE_KEY, FakeProviders, razorpay_payment, stripe_event

SINCE = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch, database_url: str, migrated_engine: Engine, fake: FakeProviders
) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("STRIPE_API_KEY", STRIPE_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", fake.url)
    monkeypatch.delenv("RAZORPAY_KEY_ID", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def stored(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(Event)).scalar_one())


def test_recover_prints_what_it_found(
    environment: None, fake: FakeProviders, migrated_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.stripe_events.extend(stripe_event(i, created=int(SINCE.timestamp()) + i) for i in range(3))

    code = cli.main(["recover", "--provider", "stripe", "--since", "2026-11-01T00:00:00Z"])

    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0] == (
        "stripe: 3 read in 1 pages: 3 new, 0 already stored, 0 unchanged, 0 unreadable; "
        "3 payments changed state"
    )
    assert "  pi_3Rec00000000: - -> captured" in out
    assert stored(migrated_engine) == 3
    # From --since, before any mark, to now: nothing left behind, so the mark moves to the run's end.
    mark = state.high_water_mark(migrated_engine, provider="stripe")
    assert mark is not None and datetime.now(UTC) - mark < timedelta(minutes=1)


def test_a_dry_run_prints_and_stores_nothing(
    environment: None, fake: FakeProviders, migrated_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.stripe_events.extend(stripe_event(i, created=int(SINCE.timestamp()) + i) for i in range(3))

    code = cli.main(["recover", "--provider", "stripe", "--since", "2026-11-01", "--dry-run"])

    assert code == 0
    assert "3 to store, 0 already stored" in capsys.readouterr().out
    assert stored(migrated_engine) == 0
    assert state.high_water_mark(migrated_engine, provider="stripe") is None


def test_every_provider_without_credentials_gets_one_line(
    environment: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["recover", "--since", "2026-11-01T00:00:00Z"])

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert "razorpay: skipped, RAZORPAY_KEY_ID and RAZORPAY_KEY_SECRET not set" in lines
    assert any(line.startswith("stripe: 0 read in 1 pages") for line in lines)


def test_a_refused_key_exits_1_naming_the_setting(
    environment: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_wrong")
    get_settings.cache_clear()

    code = cli.main(["recover", "--provider", "stripe", "--since", "2026-11-01T00:00:00Z"])

    out = capsys.readouterr().out
    assert code == 1
    assert "check STRIPE_API_KEY" in out
    assert "sk_live_wrong" not in out


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_progress_page_by_page(
    database_url: str, migrated_engine: Engine, fake: FakeProviders
) -> None:
    for i in range(250):
        fake.razorpay_payments[f"pay_{i:04d}"] = razorpay_payment(
            f"pay_{i:04d}", status="captured", created_at=int(SINCE.timestamp()) + i
        )
    terminal = Terminal()
    settings = make_settings(database_url, **recovery_settings(fake))

    asyncio.run(
        recover_providers(
            settings,
            providers=["razorpay"],
            since=SINCE,
            until=SINCE + timedelta(days=1),
            dry_run=False,
            out=terminal,
        )
    )

    assert terminal.getvalue().split("\r")[1:] == [
        "razorpay: page 1, 100 read, 100 new ",
        "razorpay: page 2, 200 read, 200 new ",
        "razorpay: page 3, 250 read, 250 new \n",
    ]


def test_starting_the_command_imports_nothing_only_other_commands_use() -> None:
    """`recover` runs beside live deliveries and every start pays for its imports: forwarding's NATS
    client, the destinations' HTTP client, file parser and SQL are imported by their own handlers."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, cli; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(cli.__file__).parent,
    ).stdout.split()
    handlers_only = (
        "nats",
        "aiohttp",
        "yaml",
        "forwarding.relay",
        "destinations.operations",
        "destinations.file",
    )

    assert [module for module in handlers_only if module in loaded] == []
    assert "recovery.command" in loaded  # and the check sees what was imported
