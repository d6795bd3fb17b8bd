"""The batch writers store every value as given and read back equal, on both databases; a row the
database refuses fails alone, and its neighbours in the same batch are stored."""

import asyncio
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from errors import StorageUnavailable
from ingest.sinks import Sink, make_sinks
from ingest.sqlite_writer import sqlite_time
from ingest.store import EventWriter
from models import Event, Payment, UTCDateTime
from payments.events import STATUS_RANK, NormalizedEvent
from tests.conftest import make_settings
from tests.support import an_event

_ids = itertools.count(1)
# What an adapter can hand over: text without NUL (PostgreSQL refuses it, and the adapters check) or
# lone surrogates (not UTF-8), any bytes for the body, times with any offset.
TEXT = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))])
TIMES = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=ZONES)


def sinks_for(engine: Engine) -> list[Sink]:
    url = engine.url.render_as_string(hide_password=False)
    return make_sinks(engine, make_settings(url, write_concurrency=1))


def write(engine: Engine, events: Sequence[NormalizedEvent]) -> list[bool]:
    async def run() -> list[bool]:
        [sink] = sinks_for(engine)
        try:
            return await sink.write(events)
        finally:
            await sink.close()

    return asyncio.run(run())


events_as_adapters_give_them = st.builds(
    an_event,
    id_derived=st.booleans(),
    event_type=st.none() | st.text(TEXT, max_size=255),
    status=st.none() | st.sampled_from(sorted(STATUS_RANK)),
    provider_status=st.none() | st.text(TEXT, max_size=255),
    amount=st.none() | st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1),
    currency=st.none() | st.from_regex(r"\A[A-Z]{3}\Z"),
    occurred_at=TIMES,
    received_at=TIMES,
    raw_body=st.binary(max_size=2_000),
    # Header values are latin-1 text as the server decoded them (h11 refuses control characters).
    headers=st.dictionaries(
        st.from_regex(r"\A[a-z-]{1,20}\Z"),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60),
    ),
)


def test_every_value_reads_back_as_it_was_written(migrated_engine: Engine) -> None:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(events_as_adapters_give_them, min_size=1, max_size=5))
    def check(events: list[NormalizedEvent]) -> None:
        assert write(migrated_engine, events) == [True] * len(events)
        with Session(migrated_engine) as session:
            for event in events:
                row = session.scalars(
                    select(Event).where(Event.provider == event.provider, Event.event_id == event.event_id)
                ).one()
                for name in ("id_derived", "event_type", "payment_id", "status", "provider_status"):
                    assert getattr(row, name) == getattr(event, name), name
                assert (row.amount, row.currency) == (event.amount, event.currency)
                assert (row.occurred_at, row.received_at) == (event.occurred_at, event.received_at)
                assert row.occurred_at.utcoffset() == timedelta(0)
                assert row.raw_body == event.raw_body
                assert row.headers == event.headers
                payment = session.get(Payment, (event.provider, event.payment_id))
                assert payment is not None
                assert (payment.first_seen_at, payment.last_event_at) == (
                    event.received_at,
                    event.occurred_at,
                )
                assert (payment.status_occurred_at, payment.status_event_id) == (event.occurred_at, row.id)
                assert (payment.amount, payment.event_count) == (event.amount, 1)

    check()


@given(TIMES)
@settings(max_examples=300)
def test_sqlite_time_is_what_the_column_type_stores(value: datetime) -> None:
    dialect = sqlite.dialect()
    processor = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert processor is not None
    assert sqlite_time(value) == processor(value)


def test_a_batch_says_which_events_were_new(migrated_engine: Engine) -> None:
    stored = an_event()
    assert write(migrated_engine, [stored]) == [True]
    fresh = an_event()
    # A retry of a stored event, a new one, and the new one again within the same batch.
    assert write(migrated_engine, [stored, fresh, fresh]) == [False, True, False]


# What a batch can hold that the database refuses, and what each database refuses: SQLite stores
# text of any length. NUL is refused on both: SQLite's JSON functions would cut the text off at it.
FLAWS: dict[str, tuple[dict[str, Any], set[str]]] = {
    "naive_time": ({"occurred_at": datetime(2025, 7, 7, 10, 59, 25)}, {"sqlite", "postgresql"}),
    "id_too_long": ({"event_id": "e" * 256}, {"postgresql"}),
    "nul_in_text": ({"event_type": "payment.\x00captured"}, {"sqlite", "postgresql"}),
    "amount_past_int64": ({"amount": 2**64}, {"sqlite", "postgresql"}),
}


@pytest.mark.parametrize("flaw", FLAWS)
def test_a_row_the_database_refuses_fails_alone(migrated_engine: Engine, flaw: str) -> None:
    changes, refused_by = FLAWS[flaw]
    if migrated_engine.dialect.name not in refused_by:
        pytest.skip(f"{migrated_engine.dialect.name} stores {flaw}")
    before, bad, after = an_event(), an_event(**changes), an_event()

    async def write_batch() -> None:
        [sink] = sinks_for(migrated_engine)
        try:
            with pytest.raises(sink.row_errors):
                await sink.write([before, bad, after])
        finally:
            await sink.close()

    asyncio.run(write_batch())

    async def deliver() -> list[bool | BaseException]:
        writer = EventWriter(sinks_for(migrated_engine), batch_max=16, queue_max=100, timeout=10)
        await writer.start()
        try:
            # Queued before the writer runs, so the three go in one batch.
            return await asyncio.gather(
                *(writer.store(e) for e in (before, bad, after)), return_exceptions=True
            )
        finally:
            await writer.stop()

    outcomes = asyncio.run(deliver())
    assert outcomes[0] is True and outcomes[2] is True
    assert isinstance(outcomes[1], StorageUnavailable)
    with Session(migrated_engine) as session:
        stored = set(session.scalars(select(Event.event_id)))
    assert stored == {before.event_id, after.event_id}


def test_postgres_finds_signed_key_holders_by_the_signed_key_index_in_any_plan(
    migrated_engine: Engine,
) -> None:
    """PostgreSQL keeps one generic plan for the writer's prepared batch statement, made whenever the
    table happened to be small. Forced to plan generically on an empty table (where every index costs
    the same), the lookups of signed-key holders must still go through the signed key's index, never
    through (provider, event_id) on the provider alone, which scans every row of that provider."""
    if migrated_engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's plans")
    import psycopg
    import psycopg.sql

    from ingest.batch import Batch
    from ingest.sinks import PostgresSql, batch_parameters

    sql = PostgresSql(migrated_engine.dialect)
    events = [an_event(event_id=f"evt_plan_{index}") for index in range(3)]
    url = migrated_engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SET plan_cache_mode = force_generic_plan")
        connection.execute(
            "PREPARE batch_plan(json, json) AS "
            + sql.write_batch.replace("%(rows)s", "$1").replace("%(repeated)s", "$2")
        )
        parameters = batch_parameters(Batch.plan(events))
        explain = psycopg.sql.SQL("EXPLAIN EXECUTE batch_plan({}, {})").format(
            psycopg.sql.Literal(parameters["rows"]), psycopg.sql.Literal(parameters["repeated"])
        )
        plan = "\n".join(row[0] for row in connection.execute(explain))
    held = [line for line in plan.splitlines() if " held" in line]
    assert held and all("uq_webhook_events_provider_signed_key" in line for line in held), plan
