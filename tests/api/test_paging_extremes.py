"""Every paged list walks whatever is stored to its end, on both databases: times at the very ends of the
calendar (asyncpg reads year 1's first instant and year 9999's last as -infinity and infinity) and ties.
Times outside the range both databases hold exactly are read as absent when an event arrives."""

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, delete

from database import normalise_url
from main import create_app
from models import Event, Payment
from providers import fields
from tests.conftest import make_settings
from tests.support import STANDARD_SECRET, an_event, standard_headers, store_directly

YEAR_ONE = datetime(1, 1, 1, tzinfo=UTC)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # the range documented in docs/providers.md
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
LAST_INSTANT = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def walk(client: TestClient, url: str, *, most: int) -> list[dict[str, Any]]:
    """Every page of a paged list; fails as soon as more pages come back than `most` rows could fill."""
    rows: list[dict[str, Any]] = []
    for _ in range(most + 1):
        response = client.get(url)
        assert response.status_code == 200, response.text
        rows += response.json()
        link = response.headers.get("link")
        if link is None:
            return rows
        url = link.split(";")[0].strip("<>")
    raise AssertionError(f"paging did not end: {len(rows)} rows from {most} stored")


# --- at arrival: out-of-range times are read as absent ----------------------------------------------------


def test_a_go_zero_time_event_is_stored_with_its_receipt_time_and_the_history_pages_to_its_end(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(standard_webhook_secret=[STANDARD_SECRET])
    ids = []
    for when in ("0001-01-01T00:00:00Z", "2025-07-07T12:00:00Z"):
        body = json.dumps(
            {"type": "payment.succeeded", "timestamp": when, "data": {"id": "pay_zero", "status": "captured"}}
        ).encode()
        response = client.post("/webhooks/standard", content=body, headers=standard_headers(body))
        assert response.status_code == 200, response.text
        ids.append(response.json()["event_id"])

    history = walk(client, "/payments/pay_zero/events?limit=1", most=2)

    assert sorted(event["event_id"] for event in history) == sorted(ids)
    # The zero time is "unset": the event falls back to the signed webhook-timestamp (about now).
    zero_time = datetime.fromisoformat(next(e for e in history if e["event_id"] == ids[0])["occurred_at"])
    assert abs(zero_time - datetime.now(UTC)) < timedelta(minutes=5)


@pytest.mark.parametrize(
    ("reader", "value"),
    [
        (fields.iso_time, "0001-01-01T00:00:00Z"),
        (fields.iso_time, "0001-01-01T00:00:00+01:00"),
        (fields.iso_time, "1969-12-31T23:59:59.999999Z"),
        (fields.iso_time, "9999-12-31T23:59:59.000001Z"),
        (fields.iso_time, "9999-12-31T23:59:59.999999Z"),
        (fields.iso_time, "9999-12-31T23:59:59-01:00"),
        (fields.unix_time, -1),
        (fields.unix_time, -62135596800),  # 0001-01-01T00:00:00Z
        (fields.unix_time, 253402300799.5),
        (fields.unix_time, 10**20),
        (fields.unix_time, -(10**20)),
    ],
)
def test_times_outside_the_stored_range_are_read_as_absent(reader: Any, value: object) -> None:
    assert reader(value, "field.x") is None


@pytest.mark.parametrize(
    ("reader", "value", "expected"),
    [
        (fields.iso_time, "1970-01-01T00:00:00Z", EARLIEST),
        (fields.iso_time, "9999-12-31T23:59:59Z", LATEST),
        (fields.iso_time, "9999-12-31T23:59:59+00:00", LATEST),
        (fields.unix_time, 0, EARLIEST),
        (fields.unix_time, 253402300799, LATEST),
    ],
)
def test_the_ends_of_the_range_are_kept(reader: Any, value: object, expected: datetime) -> None:
    assert reader(value, "field.x") == expected
    assert (fields.EARLIEST_TIME, fields.LATEST_TIME) == (EARLIEST, LATEST)


# --- on reads: any stored time, however it got there ------------------------------------------------------


EXTREMES = [
    YEAR_ONE,
    YEAR_ONE + timedelta(microseconds=1),
    EARLIEST,
    datetime(2025, 7, 7, 10, 59, 25, tzinfo=UTC),
    LATEST,
    LAST_INSTANT - timedelta(microseconds=1),
    LAST_INSTANT,
]
TIMES = st.one_of(
    st.sampled_from(EXTREMES),  # repeated draws are ties
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)).map(
        lambda naive: naive.replace(tzinfo=UTC)
    ),
)


@pytest.fixture
def reader(database_url: str) -> Iterator[tuple[TestClient, Engine]]:
    """The app, and an engine to store rows directly: rows stored before times were bounded at arrival."""
    engine = create_engine(normalise_url(database_url))
    with TestClient(create_app(make_settings(database_url))) as client:
        yield client, engine
    engine.dispose()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(times=st.lists(TIMES, min_size=1, max_size=8), limit=st.integers(min_value=1, max_value=3))
def test_every_paged_list_walks_any_stored_times_to_the_end(
    reader: tuple[TestClient, Engine], times: list[datetime], limit: int
) -> None:
    client, engine = reader
    payment_id = f"pay_{uuid.uuid4().hex[:12]}"
    events = [
        an_event(event_id=f"evt_{number}", payment_id=payment_id, occurred_at=at, received_at=at)
        for number, at in enumerate(times)
    ]
    with engine.begin() as connection:
        connection.execute(delete(Event))
        connection.execute(delete(Payment))
        store_directly(connection, events)

    history = walk(client, f"/payments/{payment_id}/events?limit={limit}", most=len(events))
    feed = walk(client, f"/events?limit={limit}", most=len(events))
    since = walk(
        client,
        f"/payments/{payment_id}/events?limit={limit}&since=0001-01-01T00:00:00Z"
        "&until=9999-12-31T23:59:59.999999Z",
        most=len(events),
    )

    expected = sorted(events, key=lambda event: event.occurred_at)  # stable: ties in order of receipt
    assert [event["event_id"] for event in history] == [event.event_id for event in expected]
    assert [datetime.fromisoformat(event["occurred_at"]) for event in history] == [
        event.occurred_at for event in expected
    ]
    assert [event["event_id"] for event in feed] == [event.event_id for event in reversed(events)]
    assert [event["event_id"] for event in since] == [
        event.event_id for event in expected if event.occurred_at != LAST_INSTANT
    ]
