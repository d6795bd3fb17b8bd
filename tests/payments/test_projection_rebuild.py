"""The payments projection is rebuildable: `python -m cli rebuild-payments` recomputes exactly what the
live updates produced, tolerates rows it cannot rank, and on PostgreSQL folds each event exactly once
even while a writer commits during the rebuild. Both databases."""

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, Row, create_engine, event, select, text, update

from database import normalise_url
from models import Base, Event, Payment
from payments import projection
from payments.events import NormalizedEvent
from tests.conftest import ROOT
from tests.support import an_event, razorpay_delivery, razorpay_event, store_directly

KINDS = ("payment.authorized", "payment.failed", "payment.captured", "payment.authorized", "payment.captured")


def engine_for(database_url: str) -> Engine:
    return create_engine(normalise_url(database_url))


def projection_rows(engine: Engine) -> list[Row[Any]]:
    with engine.connect() as connection:
        return list(
            connection.execute(select(Payment.__table__).order_by(Payment.provider, Payment.payment_id))
        )


def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "APP_ENV": "development"}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def deliver_shuffled_stream(client: TestClient) -> int:
    """Five payments, events delivered newest first with a redelivery; returns the events stored."""
    stored = 0
    for number in range(5):
        for step, kind in enumerate(KINDS[: number + 1]):
            body, headers = razorpay_delivery(
                razorpay_event(
                    event=kind,
                    payment_id=f"pay_{number}",
                    created_at=1751885965 + 60 * (number + 1 - step),
                    amount=1000 * (step + 1),
                    event_id=f"evt_{number}_{step}",
                )
            )
            for _ in range(2 if step == 0 else 1):
                assert client.post("/webhooks/razorpay", content=body, headers=headers).status_code == 200
            stored += 1
    # Events that name no payment are stored but not folded.
    body, headers = razorpay_delivery(
        {"event": "account.updated", "id": "evt_account", "created_at": 1751885965}
    )
    assert client.post("/webhooks/razorpay", content=body, headers=headers).status_code == 200
    return stored


def test_cli_rebuild_equals_the_live_projection(client: TestClient, database_url: str) -> None:
    stored = deliver_shuffled_stream(client)
    engine = engine_for(database_url)
    live = projection_rows(engine)
    with engine.begin() as connection:  # wreck the projection, so that the rebuild has work to do
        connection.execute(update(Payment).values(status="created", event_count=0))

    result = run_cli(database_url, "rebuild-payments")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"rebuilt {len(live)} payments from {stored} events"
    assert projection_rows(engine) == live
    assert {row[2] for row in live} >= {"captured", "authorized"}
    engine.dispose()


@pytest.mark.parametrize(
    ("args", "code", "stderr"),
    [
        ([], 2, "the following arguments are required: command"),
        (["purge-everything"], 2, "invalid choice"),
    ],
)
def test_cli_refuses_unknown_commands(database_url: str, args: list[str], code: int, stderr: str) -> None:
    result = run_cli(database_url, *args)

    assert (result.returncode, stderr in result.stderr) == (code, True)


def test_cli_reports_an_unreachable_database_without_a_traceback() -> None:
    result = run_cli("postgresql://root@127.0.0.1:1/nothing", "rebuild-payments")

    assert result.returncode == 1
    assert "database error (OperationalError)" in result.stderr
    assert "Traceback" not in result.stderr


# When the events built here were received: a fixed time, so their rows compare across databases.
AT = datetime(2025, 7, 7, 10, 0, tzinfo=UTC)


def test_rebuild_survives_a_stored_status_outside_the_vocabulary(database_url: str) -> None:
    engine = engine_for(database_url)
    Base.metadata.create_all(engine)
    later = datetime(2025, 7, 7, 11, 0, tzinfo=UTC)
    with engine.begin() as connection:
        store_directly(connection, [an_event(payment_id="pay_x", received_at=AT, event_id="evt_cap")])
        store_directly(
            connection,
            [
                an_event(
                    payment_id="pay_x",
                    received_at=AT,
                    event_id="evt_old",
                    status="authorized",
                    occurred_at=later,
                )
            ],
        )
        # As if the vocabulary had since dropped a word: the row stays, it just cannot rank.
        connection.execute(update(Event).where(Event.event_id == "evt_old").values(status="pending_review"))
    with engine.begin() as connection:
        folded = projection.rebuild(connection)

    [row] = projection_rows(engine)
    assert (folded, row.status, row.event_count, row.last_event_at) == (2, "captured", 2, later)
    engine.dispose()


def test_rebuild_on_postgresql_folds_a_concurrent_write_exactly_once(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: a concurrent write cannot interleave")
    engine = engine_for(database_url)
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        store_directly(
            connection, [an_event(payment_id="pay_x", received_at=AT, event_id="evt_1", status="authorized")]
        )
    writer = threading.Thread(
        target=write_one, args=(engine, an_event(received_at=AT, event_id="evt_2", payment_id="pay_new"))
    )

    def start_writer_before_the_scan(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # The worst moment for a writer: after the rebuild emptied `payments`, before it read the
        # events. It must wait (its event then folds after the rebuild), not commit and be folded twice.
        if not writer.is_alive() and writer.ident is None and statement.lstrip().startswith("SELECT"):
            writer.start()
            wait_until(lambda: not writer.is_alive() or lock_waiters(engine) > 0)

    with engine.connect() as connection:
        event.listen(connection, "before_cursor_execute", start_writer_before_the_scan)
        with connection.begin():
            folded = projection.rebuild(connection)
    writer.join(10)

    assert writer.ident is not None and not writer.is_alive()
    assert folded == 1
    assert {row.payment_id: row.event_count for row in projection_rows(engine)} == {"pay_x": 1, "pay_new": 1}
    engine.dispose()


def write_one(engine: Engine, one: NormalizedEvent) -> None:
    with engine.begin() as connection:
        assert store_directly(connection, [one]) == [True]


def lock_waiters(engine: Engine) -> int:
    with engine.connect() as connection:
        waiting: int = connection.execute(
            text("SELECT count(*) FROM pg_locks WHERE NOT granted")
        ).scalar_one()
        return waiting


def wait_until(condition: Callable[[], bool], deadline_s: float = 10.0) -> None:
    give_up = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)  # polling interval with a deadline, not a wait for a race
