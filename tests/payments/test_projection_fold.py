"""The projection's fold exists twice: `fold` in Python (SQLite's writer, rebuilds) and `fold_select` in
SQL (PostgreSQL's writer). For any set of new events, both give the same rows in the same order."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import BigInteger, DateTime, Engine, String, column, create_engine, text, values

from database import normalise_url
from payments import projection
from payments.events import STATUS_RANK


@dataclass(frozen=True)
class Facts:
    provider: str
    payment_id: str | None
    status: str | None
    provider_status: str | None
    amount: int | None
    currency: str | None
    occurred_at: datetime
    received_at: datetime


@pytest.fixture
def postgres(postgres_server_url: str) -> Iterator[Engine]:
    engine = create_engine(normalise_url(postgres_server_url))
    yield engine
    engine.dispose()


BASE = datetime(2025, 7, 7, 10, 0, tzinfo=UTC)
# Few payments, providers and instants, so that events share payments and tie on time; ids whose
# order differs between code points and a linguistic collation ("pay_B" < "pay_a" < "pay_ä").
facts = st.builds(
    Facts,
    provider=st.sampled_from(["razorpay", "stripe"]),
    payment_id=st.none() | st.sampled_from(["pay_a", "pay_B", "pay_ä", "pay_b", "pay_A1"]),
    # A status outside the vocabulary ranks as no status, as `fold` does for old rows.
    status=st.none() | st.sampled_from([*STATUS_RANK, "renamed_status"]),
    provider_status=st.none() | st.sampled_from(["captured", "Captured", "x"]),
    amount=st.none() | st.integers(-(2**63) + 1, 2**63 - 1),
    currency=st.none() | st.sampled_from(["INR", "USD"]),
    occurred_at=st.integers(0, 3).map(lambda minutes: BASE + timedelta(minutes=minutes)),
    received_at=st.integers(0, 3).map(lambda minutes: BASE + timedelta(minutes=minutes, seconds=1)),
)


def linguistic(engine: Engine) -> String:
    """Text in ICU's root collation where the server has it (where "pay_a" < "pay_B"), as a database
    created with a locale's collation would hold it: the fold must still sort by code point."""
    with engine.connect() as connection:
        icu = connection.execute(text("SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu'")).first()
    return String(collation="und-x-icu") if icu else String()


def sql_fold(engine: Engine, stored: list[tuple[int, Facts]]) -> list[dict[str, Any]]:
    key = linguistic(engine)
    new = values(
        column("id", BigInteger),
        column("provider", key),
        column("payment_id", key),
        *(column(name, String) for name in ("status", "provider_status")),
        column("amount", BigInteger),
        column("currency", String),
        column("occurred_at", DateTime(timezone=True)),
        column("received_at", DateTime(timezone=True)),
        name="new",
    ).data([(row_id, *(getattr(event, name) for name in projection.FACTS)) for row_id, event in stored])
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(projection.fold_select(new))]


def test_the_sql_fold_gives_the_python_fold(postgres: Engine) -> None:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(facts, min_size=1, max_size=12), st.randoms(use_true_random=False))
    def check(events: list[Facts], rng: Any) -> None:
        row_ids = rng.sample(range(1, 1_000), len(events))  # receipt order is not list order
        stored = list(zip(row_ids, events, strict=True))
        assert sql_fold(postgres, stored) == projection.fold(stored)

    check()
