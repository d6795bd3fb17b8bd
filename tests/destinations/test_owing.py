"""Owing each new event to the destinations it matches, in the transaction that stores it (the trigger of
models.DESTINATION_TRIGGER_DDL over destinations/filters.py's rows): the database's matching agrees
with the file's (`Destination.matches`) on the characters each database's patterns treat specially, a
duplicate owes nothing more, the filters follow the file at each start, and the deliveries the intake
of an earlier version had not reached are owed at start-up."""

from typing import Any

from sqlalchemy import create_engine, text

from database import normalise_url
from destinations.file import Destination
from tests.destinations.conftest import AUTH, SECRET, deliveries, destination, post, wait_for
from tests.destinations.test_delivery import AppWith, Receivers
from tests.support import razorpay_delivery, razorpay_event

# Patterns against event types each holding one of LIKE's (`%`, `_`, `\`) or GLOB's (`?`, `[`, `]`)
# special characters, in another case, or none.
PATTERNS: dict[str, dict[str, Any]] = {
    "dotted": {"event_types": ["payment.*"]},
    "underscore": {"event_types": ["payment_captured"]},
    "percent": {"event_types": ["pay%ment.*"]},
    "backslash": {"event_types": ["a\\*"]},
    "question": {"event_types": ["?ayment.captured"]},
    "bracket": {"event_types": ["payment.[c]*"]},
    "upper": {"event_types": ["PAYMENT.*"]},
    "suffix": {"event_types": ["*.captured", "order.paid"]},
    "statuses": {"statuses": ["captured"]},
    "providers": {"providers": ["stripe"]},
    "everything": {},
}
EVENT_TYPES = [
    "payment.captured",
    "paymentXcaptured",
    "payment_captured",
    "pay%ment.failed",
    "payXment.failed",
    "a\\b",
    "ab",
    "?ayment.captured",
    "payment.[c]aptured",
    "PAYMENT.captured",
    "order.paid",
]


def test_the_database_owes_each_event_to_exactly_the_destinations_whose_filters_match_it(
    app_with: AppWith, receivers: Receivers, database_url: str
) -> None:
    url = receivers().url
    entries = [destination(name, url, **filters) for name, filters in PATTERNS.items()]
    client = app_with(*entries)
    for name in PATTERNS:
        client.post(f"/destinations/{name}/pause", headers=AUTH)
    stored: dict[str, str] = {}
    for event_type in EVENT_TYPES:
        stored[post(client, event=event_type, status="captured")] = event_type

    # Matched as the file does, on each event as it was stored (its normalised status included).
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT event_id, event_type, status FROM webhook_events")).all()
    finally:
        engine.dispose()
    assert {row.event_id: row.event_type for row in rows} == stored
    expected = {
        (name, row.event_id)
        for row in rows
        for name, filters in PATTERNS.items()
        if Destination(name=name, url=url, secret=SECRET, **filters).matches(
            provider="razorpay", event_type=row.event_type, status=row.status
        )
    }
    assert ("underscore", _id_of(stored, "paymentXcaptured")) not in expected  # the test can tell them apart
    owed = {(row.destination, row.event_id) for row in deliveries(database_url)}
    assert owed == expected

    # A duplicate delivery owes nothing more.
    again = razorpay_event(
        event="payment.captured", status="captured", event_id=_id_of(stored, "payment.captured")
    )
    body, headers = razorpay_delivery(again)
    assert client.post("/webhooks/razorpay", content=body, headers=headers).json()["status"] == "duplicate"
    assert len(deliveries(database_url)) == len(expected)


def test_events_the_earlier_intake_had_not_reached_are_owed_at_start_up(
    app_with: AppWith, receivers: Receivers, database_url: str
) -> None:
    url = receivers().url
    client = app_with(destination("orders", url))
    client.post("/destinations/orders/pause", headers=AUTH)
    before = post(client, event_id="evt_before_intake")
    wait_for(lambda: len(deliveries(database_url)) == 1)
    client.__exit__(None, None, None)

    # As an earlier version left things: two events stored that its intake had not owed yet, its cursor
    # before them, and (PostgreSQL) the batch the forwarding trigger recorded for them.
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM destination_deliveries"))
            connection.execute(
                text(
                    "INSERT INTO forward_cursor (stream, txid, seq, event_row_id, events_published,"
                    " updated_at) VALUES ('http/destinations', 0, 0, 0, 0, CURRENT_TIMESTAMP)"
                )
            )
            if database_url.startswith("postgresql"):
                connection.execute(
                    text(
                        "INSERT INTO forward_batches (txid, event_ids, recorded_at)"
                        " SELECT 1, array_agg(id), now() FROM webhook_events"
                    )
                )
    finally:
        engine.dispose()

    client = app_with(destination("orders", url))
    client.post("/destinations/orders/pause", headers=AUTH)
    assert [row.event_id for row in deliveries(database_url)] == [before]
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM forward_cursor")).scalar_one() == 0
            if database_url.startswith("postgresql"):
                assert connection.execute(text("SELECT count(*) FROM forward_batches")).scalar_one() == 0
    finally:
        engine.dispose()


def _id_of(stored: dict[str, str], event_type: str) -> str:
    return next(event_id for event_id, each in stored.items() if each == event_type)


def test_the_filters_follow_the_file_at_each_start(
    app_with: AppWith, receivers: Receivers, database_url: str
) -> None:
    url = receivers().url
    client = app_with(destination("orders", url), destination("ledger", url, statuses=["captured"]))
    for name in ("orders", "ledger"):
        client.post(f"/destinations/{name}/pause", headers=AUTH)
    first = post(client, event="payment.captured")
    client.__exit__(None, None, None)

    # Started again with ledger removed and orders narrowed to refunds: the next events are owed as the
    # file now says, and what was owed before stays owed.
    client = app_with(destination("orders", url, event_types=["refund.*"]))
    client.post("/destinations/orders/pause", headers=AUTH)
    captured = post(client, event="payment.captured")
    refunded = post(client, event="refund.processed")
    owed = {(row.destination, row.event_id) for row in deliveries(database_url)}
    assert owed == {("orders", first), ("ledger", first), ("orders", refunded)}
    assert ("orders", captured) not in owed
