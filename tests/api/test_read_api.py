"""The read API: a payment's state, its paged history, one stored event in full, and the recent-events
feed, all keyset-paged with a Link header. Both databases, real Razorpay signatures."""

import asyncio
import base64
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from api.reader import Reader
from database import make_engine, normalise_url
from tests.conftest import make_settings
from tests.support import an_event, next_url, razorpay_delivery, razorpay_event, store_directly, walk

BASE_TIME = 1751885965


def deliver(client: TestClient, **event: Any) -> str:
    event.setdefault("event_id", f"evt_{uuid.uuid4().hex[:12]}")
    body, headers = razorpay_delivery(razorpay_event(**event))
    response = client.post("/webhooks/razorpay", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(event["event_id"])


def store(database_url: str, *events: Any) -> None:
    engine = create_engine(normalise_url(database_url))
    with engine.begin() as connection:
        store_directly(connection, list(events))
    engine.dispose()


def test_state_of_an_unknown_payment_is_payment_not_found(client: TestClient) -> None:
    response = client.get("/payments/pay_missing")

    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "payment_not_found", "message": "no events stored for payment 'pay_missing'"}
    }


def test_state_has_the_documented_fields(client: TestClient) -> None:
    deliver(client, event="payment.authorized", payment_id="pay_state", created_at=BASE_TIME)
    deliver(client, event="payment.captured", payment_id="pay_state", created_at=BASE_TIME + 60, amount=4900)

    body = client.get("/payments/pay_state").json()

    received_at = datetime.fromisoformat(body.pop("first_seen_at"))
    assert abs(datetime.now(UTC) - received_at) < timedelta(minutes=5)
    assert body == {
        "payment_id": "pay_state",
        "provider": "razorpay",
        "status": "captured",
        "provider_status": "captured",
        "amount": 4900,
        "currency": "INR",
        "last_event_at": "2025-07-07T11:00:25Z",
        "event_count": 2,
    }


@pytest.mark.parametrize(
    ("query", "status", "provider"),
    [
        ("", 409, None),
        ("?provider=razorpay", 200, "razorpay"),
        ("?provider=stripe", 200, "stripe"),
        ("?provider=paypal", 404, None),
    ],
)
def test_an_id_at_two_providers_needs_the_provider(
    client: TestClient, database_url: str, query: str, status: int, provider: str | None
) -> None:
    deliver(client, event="payment.captured", payment_id="pay_twice")
    store(
        database_url, an_event(provider="stripe", event_id="evt_s", payment_id="pay_twice", status="failed")
    )

    response = client.get(f"/payments/pay_twice{query}")

    assert response.status_code == status
    if provider is not None:
        assert response.json()["provider"] == provider
    elif status == 409:
        assert response.json()["error"] == {
            "code": "payment_ambiguous",
            "message": "payment 'pay_twice' exists at several providers (razorpay, stripe); pass ?provider=",
        }
    else:
        assert response.json()["error"]["code"] == "payment_not_found"


# --- GET /payments/{payment_id}/events -----------------------------------------------------------------


@pytest.fixture
def long_history(client: TestClient) -> Iterator[list[str]]:
    """23 events of one payment, delivered out of order, several sharing a provider timestamp."""
    offsets = [(n * 7) % 23 // 2 for n in range(23)]  # duplicates: ties broken by receipt order
    ids = [
        deliver(client, event="payment.authorized", payment_id="pay_long", created_at=BASE_TIME + offset)
        for offset in offsets
    ]
    deliver(client, event="payment.authorized", payment_id="pay_other")
    yield ids


@pytest.mark.parametrize("limit", [1, 2, 5, 22, 23, 24, 1000])
def test_paging_walks_the_whole_history_without_gap_or_repeat(
    client: TestClient, long_history: list[str], limit: int
) -> None:
    everything = client.get("/payments/pay_long/events").json()

    pages = walk(client, f"/payments/pay_long/events?limit={limit}")

    assert [row["event_id"] for row in pages] == [row["event_id"] for row in everything]
    assert sorted(row["event_id"] for row in pages) == sorted(long_history)
    order = [(row["occurred_at"], long_history.index(row["event_id"])) for row in pages]
    assert order == sorted(order)  # chronological, ties in order of receipt


def test_a_full_last_page_has_no_link_and_the_body_stays_a_plain_array(
    client: TestClient, long_history: list[str]
) -> None:
    first = client.get("/payments/pay_long/events?limit=20")
    second = client.get(next_url(first) or "")

    assert isinstance(first.json(), list) and len(first.json()) == 20
    assert len(second.json()) == 3 and next_url(second) is None
    assert next_url(client.get("/payments/pay_long/events?limit=23")) is None


def test_the_next_link_keeps_the_other_query_parameters(client: TestClient, long_history: list[str]) -> None:
    response = client.get(
        "/payments/pay_long/events?limit=2&event_type=payment.authorized&since=2025-07-07T00:00:00Z&provider=razorpay"
    )

    url = urlsplit(next_url(response) or "")
    assert url.path == "/payments/pay_long/events"
    query = parse_qs(url.query)
    assert {name: values for name, values in query.items() if name != "after"} == {
        "limit": ["2"],
        "event_type": ["payment.authorized"],
        "since": ["2025-07-07T00:00:00Z"],
        "provider": ["razorpay"],
    }
    assert len(query["after"]) == 1


@pytest.mark.parametrize(
    ("query", "expected_offsets"),
    [
        ("event_type=payment.captured", [60]),
        ("since=2025-07-07T10:59:55Z", [30, 60]),  # since is inclusive
        ("until=2025-07-07T10:59:55Z", [0]),  # until is exclusive
        ("since=2025-07-07T10:59:25&until=2025-07-07T10:59:26", [0]),  # no offset: UTC
        ("since=2025-07-07T16:29:55%2B05:30", [30, 60]),  # an offset is honoured
        ("since=2025-07-08", []),
        ("provider=stripe", []),
    ],
)
def test_history_filters(client: TestClient, query: str, expected_offsets: list[int]) -> None:
    for offset, kind in ((0, "payment.authorized"), (30, "payment.failed"), (60, "payment.captured")):
        deliver(client, event=kind, payment_id="pay_filtered", created_at=BASE_TIME + offset)

    rows = client.get(f"/payments/pay_filtered/events?{query}").json()

    expected = [datetime.fromtimestamp(BASE_TIME + offset, UTC) for offset in expected_offsets]
    assert [datetime.fromisoformat(row["occurred_at"]) for row in rows] == expected


def test_history_of_an_unknown_payment_is_an_empty_array(client: TestClient) -> None:
    response = client.get("/payments/pay_nobody/events")

    assert (response.status_code, response.json(), response.headers.get("link")) == (200, [], None)


# --- GET /events -------------------------------------------------------------------------------------------


def test_the_feed_walks_newest_first_and_new_arrivals_do_not_shift_it(client: TestClient) -> None:
    delivered = [deliver(client, payment_id=f"pay_feed_{n % 3}") for n in range(11)]

    first = client.get("/events?limit=4")
    later = [deliver(client, payment_id="pay_feed_late") for _ in range(3)]  # arrive mid-walk
    rest = walk(client, next_url(first) or "")

    walked = [row["event_id"] for row in first.json() + rest]
    assert walked == list(reversed(delivered))
    assert [row["event_id"] for row in client.get("/events?limit=3").json()] == list(reversed(later))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("provider=razorpay", {"evt_a", "evt_c", "evt_f"}),
        ("provider=stripe", {"evt_s"}),
        ("event_type=payment.failed", {"evt_f"}),
        ("status=captured", {"evt_c", "evt_s"}),
        ("status=captured&provider=stripe", {"evt_s"}),
        ("status=refunded", set()),
    ],
)
def test_feed_filters(client: TestClient, database_url: str, query: str, expected: set[str]) -> None:
    deliver(client, event="payment.authorized", event_id="evt_a")
    deliver(client, event="payment.captured", event_id="evt_c")
    deliver(client, event="payment.failed", event_id="evt_f", payment_id="pay_f")
    store(database_url, an_event(provider="stripe", event_id="evt_s", payment_id="pi_1", status="captured"))

    rows = walk(client, f"/events?limit=1&{query}")

    assert {row["event_id"] for row in rows} == expected


def test_feed_time_bounds_are_on_receipt(client: TestClient, database_url: str) -> None:
    at = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    store(
        database_url,
        *(an_event(event_id=f"evt_{hour}", received_at=at + timedelta(hours=hour)) for hour in range(4)),
    )

    rows = client.get("/events?since=2030-01-01T13:00:00Z&until=2030-01-01T15:00:00%2B00:00").json()

    assert [row["event_id"] for row in rows] == ["evt_2", "evt_1"]


# --- GET /events/{provider}/{event_id} ---------------------------------------------------------------------


def test_one_event_in_full_has_the_body_byte_for_byte_and_its_headers(client: TestClient) -> None:
    # Odd spacing, key order, escapes and non-ASCII text: anything re-serialised would differ.
    body = (
        b'{ "id":"evt_exact",\n  "event" : "payment.captured", "created_at": 1751885965,'
        b' "note": "caf\xc3\xa9 \\u00e9",'
        b' "payload": {"payment": {"entity": {"id": "pay_exact", "amount": 5000, "currency": "INR",'
        b' "status": "captured"}}}}'
    )
    _, headers = razorpay_delivery(body)
    assert client.post("/webhooks/razorpay", content=body, headers=headers).status_code == 200

    response = client.get("/events/razorpay/evt_exact")

    assert response.status_code == 200
    event = response.json()
    assert event["raw_body"].encode("utf-8") == body
    assert event["raw_body_encoding"] == "utf-8"
    assert event["headers"]["x-razorpay-signature"] == "[redacted]"  # kept in the database, not shown
    assert "authorization" not in event["headers"]
    assert {k: event[k] for k in ("event_id", "provider", "payment_id", "status", "id_derived")} == {
        "event_id": "evt_exact",
        "provider": "razorpay",
        "payment_id": "pay_exact",
        "status": "captured",
        "id_derived": False,
    }


def test_a_body_that_is_not_utf8_comes_back_as_base64(client: TestClient, database_url: str) -> None:
    raw = b"\xff\xfeamount=5000&currency=\xe9"
    store(database_url, an_event(event_id="evt_bytes", raw_body=raw))

    event = client.get("/events/razorpay/evt_bytes").json()

    assert event["raw_body_encoding"] == "base64"
    assert base64.b64decode(event["raw_body"]) == raw


@pytest.mark.parametrize("path", ["/events/razorpay/evt_nope", "/events/stripe/evt_known"])
def test_an_unknown_event_is_event_not_found(client: TestClient, path: str) -> None:
    deliver(client, event_id="evt_known")

    response = client.get(path)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "event_not_found"


# --- storage down ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/payments/pay_1", "/payments/pay_1/events", "/events", "/events/razorpay/evt_1"]
)
def test_reads_answer_503_when_the_database_is_unreachable(client: TestClient, path: str) -> None:
    # Nothing listens on port 1: every connection attempt is refused at once.
    unreachable = make_engine(
        make_settings("postgresql://root@127.0.0.1:1/nothing", db_connect_timeout_seconds=1)
    )
    app: Any = client.app
    working = app.state.reader
    app.state.reader = Reader(unreachable, threads=1)
    try:
        response = client.get(path)
    finally:
        asyncio.run(app.state.reader.close())  # it never connected: nothing bound to the app's loop
        app.state.reader = working
        unreachable.dispose()

    assert response.status_code == 503
    assert response.json() == {
        "error": {"code": "storage_unavailable", "message": "storage is unavailable; retry later"}
    }
