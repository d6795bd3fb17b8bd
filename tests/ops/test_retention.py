"""Retention: old events are deleted (or their bodies redacted) in batches, ingest keeps working while
it runs, and the payments projection stays as it was."""

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select

from database import make_engine
from models import Event, Payment
from ops import retention
from payments import projection
from payments.events import NormalizedEvent
from tests.conftest import ROOT, make_settings
from tests.support import razorpay_delivery, razorpay_event

NOW = datetime(2025, 7, 8, 12, 0, tzinfo=UTC)
NINETY_DAYS = timedelta(days=90)
FIELDS = tuple(field.name for field in fields(NormalizedEvent))


def event(
    name: str,
    *,
    days_ago: float,
    payment_id: str = "pay_ret",
    status: str = "authorized",
    now: datetime = NOW,
) -> NormalizedEvent:
    at = now - timedelta(days=days_ago)
    return NormalizedEvent(
        provider="razorpay",
        event_id=name,
        id_derived=False,
        event_type=f"payment.{status}",
        payment_id=payment_id,
        status=status,
        provider_status=status,
        amount=5000,
        currency="INR",
        occurred_at=at,
        received_at=at,
        raw_body=f'{{"id": "{name}"}}'.encode(),
        headers={},
    )


def store(engine: Engine, events: list[NormalizedEvent]) -> None:
    """Stored as the service stores them: the events, and the payments folded from them."""
    with engine.begin() as connection:
        connection.execute(insert(Event), [{name: getattr(e, name) for name in FIELDS} for e in events])
        projection.rebuild(connection)


def events_by_id(engine: Engine) -> dict[str, Event]:
    with engine.connect() as connection:
        return {row.event_id: row for row in connection.execute(select(Event))}  # type: ignore[misc]


def payments(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(select(Payment).order_by(Payment.payment_id))]


def state(engine: Engine) -> tuple[Any, ...]:
    with engine.connect() as connection:
        return tuple(connection.execute(select(Payment.status, Payment.event_count)).one())


def seed(engine: Engine, *, old: int, new: int) -> tuple[set[str], set[str]]:
    """`old` events received 100 days ago and `new` ones from yesterday, over a few payments."""
    olds = [event(f"evt_old_{i}", days_ago=100 + i / 1000, payment_id=f"pay_{i % 4}") for i in range(old)]
    news = [
        event(f"evt_new_{i}", days_ago=1, payment_id=f"pay_{i % 4}", status="captured") for i in range(new)
    ]
    store(engine, olds + news)
    return {e.event_id for e in olds}, {e.event_id for e in news}


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_purge_deletes_only_older_events_in_batches_and_keeps_payments(
    migrated_engine: Engine, batch_size: int
) -> None:
    old, new = seed(migrated_engine, old=25, new=5)
    payments_before = payments(migrated_engine)
    committed: list[int] = []

    result = retention.purge(
        migrated_engine, older_than=NINETY_DAYS, batch_size=batch_size, now=NOW, on_batch=committed.append
    )

    assert set(events_by_id(migrated_engine)) == new
    assert result.events == len(old)
    assert result.batches == -(-len(old) // batch_size)
    assert committed == [min(len(old), batch_size * n) for n in range(1, result.batches + 1)]
    assert payments(migrated_engine) == payments_before


def test_purging_every_event_keeps_the_newest_row_so_that_no_id_is_given_out_again(
    migrated_engine: Engine,
) -> None:
    """SQLite numbers a new row after the highest id in the table: had the purge deleted the newest
    rows, the next event would take an id an earlier one had, which forwarding's cursor has passed and
    a destination's delivery may still name."""
    old, _ = seed(migrated_engine, old=6, new=0)
    ids_before = {row.event_id: row.id for row in events_by_id(migrated_engine).values()}

    result = retention.purge(migrated_engine, older_than=NINETY_DAYS, batch_size=4, now=NOW)

    rows = events_by_id(migrated_engine)
    newest = max(ids_before, key=ids_before.__getitem__)
    assert result.events == len(old)
    assert set(rows) == {newest}
    assert rows[newest].raw_body == b"" and rows[newest].redacted_at == NOW
    store(migrated_engine, [event("evt_after_purge", days_ago=0)])
    assert events_by_id(migrated_engine)["evt_after_purge"].id > max(ids_before.values())


def test_redact_keeps_rows_and_their_deduplication(
    migrated_engine: Engine, client_factory: Callable[..., TestClient]
) -> None:
    old, new = seed(migrated_engine, old=12, new=3)

    result = retention.purge(migrated_engine, older_than=NINETY_DAYS, redact=True, batch_size=5, now=NOW)

    rows = events_by_id(migrated_engine)
    assert result.events == len(old)
    assert set(rows) == old | new
    assert all(rows[name].raw_body == b"" and rows[name].redacted_at == NOW for name in old)
    assert all(rows[name].raw_body.startswith(b'{"id"') and rows[name].redacted_at is None for name in new)
    assert retention.purge(migrated_engine, older_than=NINETY_DAYS, redact=True, now=NOW).events == 0
    # A provider re-sending a redacted event still gets "duplicate".
    body, headers = razorpay_delivery(razorpay_event(event_id="evt_old_0"))
    response = client_factory().post("/webhooks/razorpay", content=body, headers=headers)
    assert response.json() == {"status": "duplicate", "event_id": "evt_old_0"}


def test_rebuild_after_purge_reflects_only_what_remains(migrated_engine: Engine) -> None:
    store(
        migrated_engine,
        [
            event("evt_auth", days_ago=120, payment_id="pay_mixed"),
            event("evt_capture", days_ago=2, payment_id="pay_mixed", status="captured"),
        ],
    )

    retention.purge(migrated_engine, older_than=NINETY_DAYS, now=NOW)
    after_purge = state(migrated_engine)
    with migrated_engine.begin() as connection:
        projection.rebuild(connection)

    assert after_purge == ("captured", 2)  # the fold of both events, as before the purge
    assert state(migrated_engine) == ("captured", 1)  # the fold of the one event that remains


def test_deliveries_keep_arriving_and_succeed_while_a_purge_runs(
    client_factory: Callable[..., TestClient], database_url: str
) -> None:
    client = client_factory()  # migrates the database and starts the writer
    engine = make_engine(make_settings(database_url))
    now = datetime.now(UTC)
    old = [event(f"evt_old_{i}", days_ago=100, payment_id=f"pay_{i % 7}", now=now) for i in range(400)]
    store(engine, old)
    stored: list[str] = []
    statuses: list[int] = []
    progress = threading.Condition()
    purge_done = threading.Event()

    def ingest() -> None:
        index = 0
        while not purge_done.is_set():
            body, headers = razorpay_delivery(
                razorpay_event(event_id=f"evt_live_{index}", payment_id="pay_live")
            )
            response = client.post("/webhooks/razorpay", content=body, headers=headers)
            with progress:
                statuses.append(response.status_code)
                stored.append(f"evt_live_{index}")
                progress.notify_all()
            index += 1

    def between_batches(events_so_far: int) -> None:
        # Part-way through the purge, deliveries must be completing: wait (bounded) to see some.
        if events_so_far in (20, 200):
            with progress:
                seen = len(statuses)
                assert progress.wait_for(lambda: len(statuses) >= seen + 5, timeout=30)

    ingester = threading.Thread(target=ingest)
    ingester.start()
    try:
        result = retention.purge(engine, older_than=NINETY_DAYS, batch_size=20, on_batch=between_batches)
    finally:
        purge_done.set()
        ingester.join(timeout=60)
    remaining = events_by_id(engine)
    engine.dispose()

    assert result.events == len(old)
    assert len(statuses) >= 10
    assert set(statuses) == {200}
    assert set(remaining) == set(stored)


@pytest.mark.parametrize(("flags", "verb"), [([], "deleted"), (["--redact"], "redacted")])
def test_purge_command(migrated_engine: Engine, database_url: str, flags: list[str], verb: str) -> None:
    now = datetime.now(UTC)
    store(
        migrated_engine,
        [event(f"evt_cli_{i}", days_ago=100, now=now) for i in range(3)]
        + [event("evt_cli_new", days_ago=1, now=now)],
    )
    env = {**os.environ, "DATABASE_URL": database_url, "APP_ENV": "development"}

    result = subprocess.run(
        [sys.executable, "-m", "cli", "purge", "--days", "90", "--batch-size", "2", *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{verb} 3 events received before ")
    assert "(2 batches)" in result.stdout
    rows = events_by_id(migrated_engine)
    assert ("evt_cli_0" in rows) is (verb == "redacted")
    assert rows["evt_cli_new"].raw_body != b""


@pytest.mark.parametrize("days", ["0", "-3", "ninety"])
def test_purge_command_refuses_a_window_that_is_not_whole_days(days: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "purge", "--days", days],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "--days" in result.stderr
