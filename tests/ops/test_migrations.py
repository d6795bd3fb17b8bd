"""Alembic owns the schema: the migrations build exactly models.py, undo cleanly, and run once when
several processes start together, on SQLite and PostgreSQL."""

import hashlib
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, Table, create_engine, inspect, select, text
from sqlalchemy.orm import Session

from config import Settings
from database import normalise_url
from models import Base, Event
from ops import migrate

HEADS = {"0010"}
# Not imported from conftest: the spawned processes below import this module, and should start quickly.
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(normalise_url(database_url))
    yield engine
    engine.dispose()


def schema_differences(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def revisions(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def structure(engine: Engine, schema: str | None = None) -> dict[str, Any]:
    """What a reader of the database sees: columns, keys, indexes and unique constraints per table."""
    inspector = inspect(engine)
    tables = {}
    for table in sorted(Base.metadata.tables):
        tables[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default") is not None)
                for c in inspector.get_columns(table, schema=schema)
            ],
            "primary_key": inspector.get_pk_constraint(table, schema=schema)["constrained_columns"],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), i["unique"])
                for i in inspector.get_indexes(table, schema=schema)
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table, schema=schema)
            ),
        }
    return tables


def test_migrations_build_exactly_the_models_schema(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    migrate.upgrade_to_head(database_url)

    assert revisions(engine) == HEADS == set(migrate.head_revisions())
    assert schema_differences(engine) == []
    # Beyond Alembic's comparison: the same columns, in the same order, as create_all would make.
    if engine.dialect.name == "sqlite":
        reference = create_engine(f"sqlite:///{tmp_path / 'create_all.db'}")
        Base.metadata.create_all(reference)
        expected = structure(reference)
        reference.dispose()
    else:
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS create_all_reference CASCADE"))
            connection.execute(text("CREATE SCHEMA create_all_reference"))
        translated = engine.execution_options(schema_translate_map={None: "create_all_reference"})
        Base.metadata.create_all(translated)
        expected = structure(engine, schema="create_all_reference")
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA create_all_reference CASCADE"))
    assert structure(engine) == expected


def test_downgrade_to_base_and_upgrade_again(database_url: str, engine: Engine) -> None:
    config = migrate.alembic_config(database_url)
    command.upgrade(config, "head")

    command.downgrade(config, "base")
    assert revisions(engine) == set()
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}

    for revision in ("0001", "head"):
        command.upgrade(config, revision)
    assert revisions(engine) == HEADS
    assert schema_differences(engine) == []


def test_0003_gives_the_events_already_stored_their_signed_keys(database_url: str, engine: Engine) -> None:
    config = migrate.alembic_config(database_url)
    command.upgrade(config, "0002")
    body = b'{"event":"payment.captured","payload":{}}'
    stored_before = [
        # (provider, event_id, raw_body, headers, redacted)
        ("razorpay", "evt_a", body, {}, False),
        ("razorpay", "replay-0", body, {}, False),  # a replay stored under a new header id
        ("razorpay", "evt_old", b"", {}, True),  # redacted: no body left to hash
        ("paypal", "WH-1", b"{}", {"paypal-transmission-id": "tx-1"}, False),
        ("paypal", "WH-FORGED", b"{ }", {"paypal-transmission-id": "tx-1"}, False),
        ("stripe", "evt_s", b"{}", {}, False),
    ]
    events = Table("webhook_events", MetaData(), autoload_with=engine)
    at = datetime(2025, 7, 7, 12, 0)
    with engine.begin() as connection:
        for provider, event_id, raw_body, headers, redacted in stored_before:
            connection.execute(
                events.insert().values(
                    provider=provider,
                    event_id=event_id,
                    id_derived=False,
                    occurred_at=at,
                    received_at=at,
                    raw_body=raw_body,
                    headers=headers,
                    redacted_at=at if redacted else None,
                )
            )

    command.upgrade(config, "head")

    with engine.connect() as connection:
        keys = connection.execute(text("SELECT event_id, signed_key FROM webhook_events ORDER BY id")).all()
    assert [tuple(row) for row in keys] == [
        ("evt_a", "sha256:" + hashlib.sha256(body).hexdigest()),
        ("replay-0", None),  # the first row of a key keeps it
        ("evt_old", None),
        ("WH-1", "tx-1"),
        ("WH-FORGED", None),
        ("evt_s", None),
    ]


def test_0007_counts_one_delivery_of_each_delivered_event_and_none_of_a_recovered_one(
    database_url: str, engine: Engine
) -> None:
    config = migrate.alembic_config(database_url)
    command.upgrade(config, "0006")
    events = Table("webhook_events", MetaData(), autoload_with=engine)
    at = datetime(2025, 7, 7, 12, 0, tzinfo=UTC)
    with engine.begin() as connection:
        for number, origin in enumerate(("webhook", "recovery", "webhook")):
            connection.execute(
                events.insert().values(
                    provider="stripe",
                    event_id=f"evt_{number}",
                    id_derived=False,
                    occurred_at=at,
                    received_at=at + timedelta(minutes=number),
                    raw_body=b"{}",
                    headers={},
                    origin=origin,
                )
            )

    command.upgrade(config, "head")

    with Session(engine) as session:
        rows = session.execute(
            select(Event.event_id, Event.delivery_count, Event.last_delivered_at).order_by(Event.id)
        )
        assert [tuple(row) for row in rows] == [
            ("evt_0", 1, at),
            ("evt_1", 0, None),
            ("evt_2", 1, at + timedelta(minutes=2)),
        ]


def test_make_migrate_applies_the_migrations_to_database_url(database_url: str, engine: Engine) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "APP_ENV": "development"}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert revisions(engine) == HEADS
    assert schema_differences(engine) == []


def migrate_after(barrier: Any, database_url: str) -> None:
    """A starting process: waits for the others, then migrates (in a fresh interpreter)."""
    barrier.wait(timeout=60)
    migrate.upgrade_to_head(database_url)


def test_processes_starting_together_migrate_once(database_url: str, engine: Engine) -> None:
    spawn = multiprocessing.get_context("spawn")
    together = spawn.Barrier(4)
    processes = [spawn.Process(target=migrate_after, args=(together, database_url)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)

    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    assert revisions(engine) == HEADS
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    assert schema_differences(engine) == []


def test_a_database_made_before_migrations_is_refused_with_the_way_out(
    database_url: str, engine: Engine
) -> None:
    Base.metadata.create_all(engine)

    with pytest.raises(migrate.SchemaError, match="alembic stamp 0001"):
        migrate.upgrade_to_head(database_url)


def test_a_database_from_a_newer_version_is_refused(database_url: str, engine: Engine) -> None:
    migrate.upgrade_to_head(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))

    with pytest.raises(migrate.SchemaError, match="9999, which this version does not know"):
        migrate.upgrade_to_head(database_url)


def test_without_migrate_on_start_the_service_needs_a_migrated_database(database_url: str) -> None:
    settings = Settings(database_url=database_url, migrate_on_start=False)

    with pytest.raises(migrate.SchemaError, match="make migrate"):
        migrate.prepare_schema(settings)
    migrate.upgrade_to_head(database_url)
    migrate.prepare_schema(settings)  # at head: starts
