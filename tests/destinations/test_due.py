"""What a destination's worker picks next (`destinations.attempts.due`), read straight from the database:
each payment's earliest owed event and nothing behind it, events without a payment never held back,
nothing for the worker while the destination is paused, a read that stops at its limit, and on
PostgreSQL the deliveries table's statistics kept fresh once a backlog has grown."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text, update

from database import normalise_url
from destinations import attempts
from destinations.file import Destination
from destinations.worker import READ_AHEAD
from models import DestinationDelivery
from tests.destinations.conftest import AUTH, SECRET, destination, post, states, wait_for
from tests.destinations.test_delivery import AppWith, Receivers


def test_due_is_each_payments_earliest_owed_event_and_payment_less_events_wait_for_nothing(
    app_with: AppWith, receivers: Receivers, database_url: str
) -> None:
    client = app_with(destination("orders", receivers().url))
    client.post("/destinations/orders/pause", headers=AUTH)
    a1 = post(client, payment_id="pay_a", event_id="evt_a1", created_at=100)
    a2 = post(client, payment_id="pay_a", event_id="evt_a2", created_at=200)
    b1 = post(client, payment_id="pay_b", event_id="evt_b1", created_at=300)
    loose = post(client, payment_id="pay_c", event_id="evt_loose", created_at=400)
    late = post(client, payment_id="pay_c", event_id="evt_late", created_at=500)
    wait_for(lambda: len(states(database_url)) == 5)

    engine = create_engine(normalise_url(database_url))
    try:
        with engine.begin() as connection:
            # Two owed rows without a payment id: neither waits for the other, nor for anything else.
            connection.execute(
                update(DestinationDelivery)
                .where(DestinationDelivery.event_id.in_([loose, late]))
                .values(payment_id=None)
            )
        orders = Destination(name="orders", url="http://127.0.0.1:9/hooks", secret=SECRET)
        with engine.connect() as connection:
            due, purged = attempts.due(connection, orders, now=datetime.now(UTC), limit=100)
            assert purged == 0
            assert [d.event.event_id for d in due] == [a1, b1, loose, late]
            # Once pay_a's first event is claimed by the worker it is still owed: its second still waits.
            claimed = [d.delivery_id for d in due if d.event.event_id == a1]
            again, _ = attempts.due(connection, orders, now=datetime.now(UTC), limit=100, claimed=claimed)
            assert [d.event.event_id for d in again] == [b1, loose, late]
            # Delivered but not yet recorded (finished): its second need not wait for the record.
            freed, _ = attempts.due(
                connection, orders, now=datetime.now(UTC), limit=100, claimed=claimed, finished=claimed
            )
            assert [d.event.event_id for d in freed] == [a2, b1, loose, late]
            # The worker's read asks for nothing while the destination is paused, as it is here.
            held, _ = attempts.due(connection, orders, now=datetime.now(UTC), limit=100, unless_paused=True)
            assert held == []
            # Unordered, every owed event is due.
            unordered = orders.model_copy(update={"ordered": False})
            everything, _ = attempts.due(connection, unordered, now=datetime.now(UTC), limit=100)
            assert [d.event.event_id for d in everything] == [a1, a2, b1, loose, late]
    finally:
        engine.dispose()


def test_the_dispatcher_refreshes_the_deliveries_tables_statistics_once_it_has_grown(
    app_with: AppWith, receivers: Receivers, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the statistics are refreshed on PostgreSQL only")
    client = app_with(destination("orders", receivers().url))
    client.post("/destinations/orders/pause", headers=AUTH)
    engine = create_engine(normalise_url(database_url))

    def analyzed() -> int:
        with engine.connect() as connection:
            count = connection.execute(
                text("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'destination_deliveries'")
            ).scalar_one()
            return int(count)

    try:
        assert analyzed() == 0
        # A backlog of 1,000 rows, the least that counts as grown, added at once as a replay would.
        with engine.begin() as connection:
            connection.execute(
                text(
                    """
                    INSERT INTO destination_deliveries (destination, event_row_id, provider, event_id,
                        state, attempts, round_attempts, queued_at, next_attempt_at, updated_at)
                    SELECT 'orders', n, 'razorpay', 'evt_backlog_' || n, 'pending', 0, 0, now(), now(), now()
                    FROM generate_series(1000001, 1001000) AS n
                    """
                )
            )
        engine.dispose()  # the server counts a backend's changes by the time it ends
        wait_for(lambda: analyzed() >= 1)
        with engine.connect() as connection:
            assert attempts.statistics_stale(connection) is False
    finally:
        engine.dispose()


def test_on_postgresql_the_due_read_stops_at_its_limit_however_large_the_backlog(
    database_url: str, migrated_engine: Engine
) -> None:
    """The read walks the due index in order and stops once it has `limit` rows, rather than reading
    every due row of the destination and sorting them: the plan PostgreSQL chose when it guessed that
    few rows pass the per-payment test, which made each read cost as much as the whole backlog."""
    if not database_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL plan")
    statements: list[tuple[str, Any]] = []

    def capture(_conn: object, _cursor: object, statement: str, parameters: Any, *_: object) -> None:
        statements.append((statement, parameters))

    with migrated_engine.begin() as connection:
        # Two destinations each 20,000 events behind, of as many payments, all due, oldest first.
        connection.execute(
            text(
                """
                INSERT INTO destination_deliveries (destination, event_row_id, provider, event_id,
                    payment_id, state, attempts, round_attempts, queued_at, next_attempt_at, updated_at)
                SELECT d.name, n, 'razorpay', 'evt_' || n, 'pay_' || n, 'pending', 0, 0,
                    now(), now() - make_interval(secs => 20000 - n), now()
                FROM generate_series(1, 20000) AS n CROSS JOIN (VALUES ('orders'), ('ledger')) AS d(name)
                """
            )
        )
        attempts.refresh_statistics(connection)
    orders = Destination(name="orders", url="http://127.0.0.1:9/hooks", secret=SECRET)
    limit = READ_AHEAD
    with migrated_engine.connect() as connection:
        event.listen(connection, "before_cursor_execute", capture)
        # As the worker reads: its read-ahead claimed, some of them finished, and the pause tested.
        claimed = range(1, READ_AHEAD + 1)
        attempts.due(
            connection,
            orders,
            now=datetime.now(UTC),
            limit=limit,
            claimed=claimed,
            finished=claimed[:10],
            unless_paused=True,
        )
        event.remove(connection, "before_cursor_execute", capture)
        connection.rollback()  # no event is stored for these deliveries: the read gave them up
        statement, parameters = next(each for each in statements if "destination_deliveries" in each[0])
        plan = connection.exec_driver_sql(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters
        ).scalar_one()
    scans = [
        node for node in _nodes(plan[0]["Plan"]) if node.get("Relation Name") == "destination_deliveries"
    ]
    assert scans
    # The claimed are passed over on the way; the per-payment probes (subplans) are not counted.
    assert all(node["Actual Rows"] <= limit for node in scans)


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A plan's nodes, without the subplans under them."""
    yield node
    for child in node.get("Plans", []):
        if child.get("Parent Relationship") != "SubPlan":
            yield from _nodes(child)
