"""A recovery run killed part-way (SIGKILL, no clean-up) is run again from the high-water mark: every
event ends up stored exactly once."""

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

from sqlalchemy import Engine, func, select, update

from models import Event, RecoveryState
from recovery import state
from tests.conftest import ROOT
from tests.recovery.fake_api import STRIPE_KEY, FakeProviders, stripe_event

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
EVENTS = 2_000
COMMAND = [sys.executable, "-m", "cli", "recover", "--provider", "stripe", "--since", "2026-11-01T00:00:00Z"]


def stored(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(Event)).scalar_one())


def test_a_killed_run_resumes_from_the_mark_without_loss(
    database_url: str, migrated_engine: Engine, fake: FakeProviders
) -> None:
    fake.stripe_events.extend(stripe_event(i, created=int(SINCE.timestamp()) + i) for i in range(EVENTS))
    fake.latency = 0.1  # 20 pages: time to kill it in the middle
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "STRIPE_API_KEY": STRIPE_KEY,
        "STRIPE_API_BASE": fake.url,
    }
    run = subprocess.Popen(COMMAND, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(fake.requests_to("/v1/events")) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)  # polling for the run's progress, not waiting out a race
    run.send_signal(signal.SIGKILL)
    run.wait()

    assert 0 < stored(migrated_engine) < EVENTS
    assert state.high_water_mark(migrated_engine, provider="stripe") is None
    # The dead run's lease lapses on its own; here, as if that time had passed.
    with migrated_engine.begin() as connection:
        connection.execute(update(RecoveryState).values(lease_until=datetime(2000, 1, 1, tzinfo=UTC)))
    fake.latency = 0.0

    again = subprocess.run(COMMAND, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert again.returncode == 0, again.stderr
    assert f"{EVENTS} read in 20 pages" in again.stdout
    assert stored(migrated_engine) == EVENTS
    assert state.high_water_mark(migrated_engine, provider="stripe") is not None
