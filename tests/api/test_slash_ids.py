"""Ids may hold "/" (they are the providers' own): whatever is stored can be read back, by the FastAPI
routes and the history's hot route alike, with the slash sent as %2F or as it is."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from main import create_app
from tests.conftest import make_settings, without_hot_routes
from tests.support import razorpay_delivery

EVENTS = [  # (event id, payment id, created_at)
    ("evt/slash", "pay/slash", 1751885965),
    ("evt/slash/2", "pay/slash", 1751885966),
    ("evt/trailing/", "pay/events", 1751885967),
    ("evt_plain", "pay", 1751885968),
]


def razorpay_body(event_id: str, payment_id: str, created_at: int) -> bytes:
    entity = {"id": payment_id, "status": "captured", "amount": 5000, "currency": "INR"}
    payload = {"event": "payment.captured", "payload": {"payment": {"entity": entity}}}
    return json.dumps(payload | {"created_at": created_at, "id": event_id}).encode()


@pytest.fixture
def pair(database_url: str) -> Iterator[tuple[TestClient, TestClient]]:
    """(the app as served, the same app without the hot routes), on one database."""
    fast = create_app(make_settings(database_url))
    routed = create_app(make_settings(database_url))
    without_hot_routes(routed)
    with TestClient(fast) as fast_client, TestClient(routed) as routed_client:
        for event in EVENTS:
            body, headers = razorpay_delivery(razorpay_body(*event))
            response = fast_client.post("/webhooks/razorpay", content=body, headers=headers)
            assert response.json() == {"status": "processed", "event_id": event[0]}
        yield fast_client, routed_client


def answer(client: TestClient, url: str) -> tuple[int, Any, str | None]:
    response = client.get(url, follow_redirects=False)
    return response.status_code, response.json(), response.headers.get("link")


def both(pair: tuple[TestClient, TestClient], url: str) -> tuple[int, Any, str | None]:
    fast, routed = pair
    served = answer(fast, url)
    assert served == answer(routed, url), url
    return served


@pytest.mark.parametrize(
    ("url", "event_id"),
    [
        ("/events/razorpay/evt%2Fslash", "evt/slash"),
        ("/events/razorpay/evt/slash", "evt/slash"),
        ("/events/razorpay/evt%2Fslash%2F2", "evt/slash/2"),
        ("/events/razorpay/evt%2Ftrailing%2F", "evt/trailing/"),
    ],
)
def test_an_event_whose_id_holds_a_slash_is_read_back(
    pair: tuple[TestClient, TestClient], url: str, event_id: str
) -> None:
    status, body, _ = both(pair, url)

    assert (status, body["event_id"]) == (200, event_id)


@pytest.mark.parametrize(
    ("url", "event_ids"),
    [
        ("/payments/pay%2Fslash/events", ["evt/slash", "evt/slash/2"]),
        ("/payments/pay/slash/events", ["evt/slash", "evt/slash/2"]),
        ("/payments/pay%2Fevents/events", ["evt/trailing/"]),
        ("/payments/pay/events", ["evt_plain"]),  # the history of "pay"
        ("/payments/%2F/events", []),
    ],
)
def test_a_history_whose_payment_id_holds_a_slash_is_read_back(
    pair: tuple[TestClient, TestClient], url: str, event_ids: list[str]
) -> None:
    status, body, _ = both(pair, url)

    assert (status, [event["event_id"] for event in body]) == (200, event_ids)


def test_paging_a_history_with_a_slash_follows_its_links_to_the_end(
    pair: tuple[TestClient, TestClient],
) -> None:
    url: str | None = "/payments/pay%2Fslash/events?limit=1"
    seen: list[str] = []
    while url is not None and len(seen) < 5:
        status, body, link = both(pair, url)
        assert status == 200
        seen += [event["event_id"] for event in body]
        url = link.split(">")[0].lstrip("<") if link else None

    assert seen == ["evt/slash", "evt/slash/2"]


@pytest.mark.parametrize(
    ("url", "payment_id", "events"),
    [
        ("/payments/pay%2Fslash", "pay/slash", 2),
        ("/payments/pay/slash", "pay/slash", 2),
        ("/payments/pay%2Fevents", "pay/events", 1),  # not the history of "pay": the slash was %2F
        ("/payments/pay", "pay", 1),
    ],
)
def test_a_payment_whose_id_holds_a_slash_is_read_back(
    pair: tuple[TestClient, TestClient], url: str, payment_id: str, events: int
) -> None:
    status, body, _ = both(pair, url)

    assert (status, body["payment_id"], body["event_count"]) == (200, payment_id, events)


@pytest.mark.parametrize(
    "url",
    [
        "/payments/pay%0D%0ASet-Cookie:%20x=1/events",
        "/payments/pay%0Aa%2Fb/events",
        "/payments/pay%0D%0ASet-Cookie:%20x=1",
        "/events/razorpay/evt%0A%2Fx",
    ],
)
def test_a_line_break_in_a_slashed_id_is_the_ids_422_on_both_paths(
    pair: tuple[TestClient, TestClient], url: str
) -> None:
    status, body, _ = both(pair, url)

    assert (status, body["error"]["code"]) == (422, "validation_error")
