"""The hot routes (a delivery, a payment's history) are served ahead of FastAPI's router. Each must
answer exactly as its documented route does, for good and bad input alike: the same status, body and
headers, whatever the token, path, query and body. Both are run here side by side."""

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from main import create_app
from schemas import EventOut
from tests.conftest import make_settings, without_hot_routes
from tests.support import razorpay_delivery, razorpay_event

TOKEN = "history-token"


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def pair(database_url: str) -> Iterator[tuple[TestClient, TestClient]]:
    """(the app as served, the same app without the hot route), on one database."""
    fast = create_app(make_settings(database_url, api_tokens=[TOKEN]))
    routed = without_hot_routes(create_app(make_settings(database_url, api_tokens=[TOKEN])))
    with (
        TestClient(fast, raise_server_exceptions=False) as fast_client,
        TestClient(routed, raise_server_exceptions=False) as routed_client,
    ):
        statuses = ("authorized", "captured", "refunded")
        for number in range(7):
            event = razorpay_event(
                event_id=f"evt_{number}",
                status=statuses[number % 3],
                event=f"payment.{statuses[number % 3]}",
                created_at=1751885965 + number // 2,  # ties on occurred_at: order by receipt
            )
            body, headers = razorpay_delivery(event)
            assert fast_client.post("/webhooks/razorpay", content=body, headers=headers).status_code == 200
        yield fast_client, routed_client


def answer(client: TestClient, url: str, headers: dict[str, str]) -> tuple[int, Any, str | None, str | None]:
    response = client.get(url, headers=headers)
    return (
        response.status_code,
        response.json(),
        response.headers.get("link"),
        response.headers.get("www-authenticate"),
    )


def assert_same(pair: tuple[TestClient, TestClient], url: str, headers: dict[str, str] = AUTH) -> Any:
    fast, routed = pair
    served = answer(fast, url, headers)
    assert served == answer(routed, url, headers), url
    return served


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?limit=2",
        "?limit=1&limit=3",  # a repeated parameter: the last counts
        "?limit=0",
        "?limit=1001",
        "?limit=abc",
        "?limit=",
        "?provider=razorpay&limit=3",
        "?provider=Razorpay",
        "?provider=",
        "?event_type=payment.captured",
        "?event_type=%00",
        "?since=2025-07-07T10:59:26Z",
        "?since=2025-07-07",
        "?since=1751885966",
        "?since=yesterday",
        "?until=2025-07-07T10:59:27%2B05:30",
        "?until=9999-12-31T23:59:59-23:59",
        "?after=nonsense",
        "?after=" + "A" * 201,
        "?limit=0&provider=X&since=never",  # several problems at once
        "?unknown=1&limit=2",
    ],
)
def test_the_hot_route_answers_every_query_as_the_route_does(
    pair: tuple[TestClient, TestClient], query: str
) -> None:
    assert_same(pair, f"/payments/pay_014/events{query}")


@pytest.mark.parametrize(
    "payment_id",
    ["pay_014", "unknown", "x" * 255, "x" * 256, "%00", "pay%20014", "pay%E2%82%AC", "pay;drop", "%2F"],
)
def test_the_hot_route_answers_every_payment_id_as_the_route_does(
    pair: tuple[TestClient, TestClient], payment_id: str
) -> None:
    assert_same(pair, f"/payments/{payment_id}/events")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": f"Bearer {TOKEN}"},
        {"Authorization": f"bearer {TOKEN}"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
        {"Authorization": ""},
    ],
)
def test_the_hot_route_checks_the_token_as_the_route_does(
    pair: tuple[TestClient, TestClient], headers: dict[str, str]
) -> None:
    status, *_ = assert_same(pair, "/payments/pay_014/events?limit=0", headers)
    assert status == (422 if headers.get("Authorization", "").lower() == f"bearer {TOKEN}" else 401)


def test_paging_through_the_hot_route_matches_the_route_page_by_page(
    pair: tuple[TestClient, TestClient],
) -> None:
    url: str | None = "/payments/pay_014/events?limit=2"
    seen: list[str] = []
    while url is not None:
        status, body, link, _ = assert_same(pair, url)
        assert status == 200
        seen += [event["event_id"] for event in body]
        url = link.split(">")[0].lstrip("<") if link else None
    assert sorted(seen) == [f"evt_{number}" for number in range(7)]


def test_the_list_is_what_pydantic_would_serialise(pair: tuple[TestClient, TestClient]) -> None:
    response = pair[0].get("/payments/pay_014/events", headers=AUTH)
    adapter = TypeAdapter(list[EventOut])

    # occurred_at has whole seconds and received_at microseconds: both formats are covered.
    assert response.content == adapter.dump_json(adapter.validate_json(response.content))


def test_paths_the_hot_route_does_not_own_reach_the_router(pair: tuple[TestClient, TestClient]) -> None:
    fast, _ = pair
    # With a trailing slash the path names the payment "pay_014/events/": the router's state route answers.
    trailing = fast.get("/payments/pay_014/events/", headers=AUTH, follow_redirects=False)
    assert (trailing.status_code, trailing.json()["error"]["code"]) == (404, "payment_not_found")
    assert fast.post("/payments/pay_014/events", headers=AUTH).status_code == 405
    assert fast.get("/payments/pay_014", headers=AUTH).json()["payment_id"] == "pay_014"


QUERY_NAMES = st.sampled_from(["limit", "provider", "event_type", "since", "until", "after", "other"])
QUERY_VALUES = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
    st.integers(min_value=-5, max_value=2000).map(str),
    st.sampled_from(["razorpay", "payment.captured", "2025-07-07T10:59:26Z", "2025-07-07", "1e3", "-0"]),
)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payment_id=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=20),
    params=st.lists(st.tuples(QUERY_NAMES, QUERY_VALUES), max_size=4),
)
def test_any_request_gets_the_same_answer_from_both(
    pair: tuple[TestClient, TestClient], payment_id: str, params: list[tuple[str, str]]
) -> None:
    query = "&".join(f"{name}={quote(value, safe='')}" for name, value in params)
    assert_same(pair, f"/payments/{quote(payment_id, safe='')}/events?{query}")


def test_the_history_reads_with_libpq_parameters_in_the_database_url(database_url: str) -> None:
    """DATABASE_URL may carry libpq's own parameters, which psycopg applies; the history's asyncpg
    connections leave out those it would send the server as unknown settings."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's URL parameters")
    url = f"{database_url}?connect_timeout=5&application_name=webhooks"
    with TestClient(create_app(make_settings(url, api_tokens=[TOKEN]))) as client:
        body, headers = razorpay_delivery(razorpay_event(event_id="evt_url", payment_id="pay_url"))
        assert client.post("/webhooks/razorpay", content=body, headers=headers).status_code == 200
        history = client.get("/payments/pay_url/events", headers=AUTH)
    assert history.status_code == 200, history.text
    assert [event["event_id"] for event in history.json()] == ["evt_url"]


DELIVERY_CASES = {
    "authentic": lambda body, headers: (body, headers),
    "tampered": lambda body, headers: (body + b" ", headers),
    "no signature": lambda body, headers: (body, {"Content-Type": "application/json"}),
    "not json": lambda body, headers: razorpay_delivery(b"{not json"),
    "not an object": lambda body, headers: razorpay_delivery(b"[1, 2]"),
    "no event type": lambda body, headers: razorpay_delivery(b'{"id": "evt_x"}'),
}


@pytest.mark.parametrize(
    "path", ["/webhooks/razorpay", "/webhook/payments", "/webhooks/acme", "/webhooks/stripe"]
)
@pytest.mark.parametrize("case", list(DELIVERY_CASES))
def test_a_delivery_gets_the_same_answer_from_both(
    database_url: str, tmp_path: Any, path: str, case: str
) -> None:
    """Each app on a database of its own, so that the authentic delivery is new to both."""
    fast = create_app(make_settings(database_url))
    routed = without_hot_routes(create_app(make_settings(f"sqlite:///{tmp_path / 'routed.db'}")))
    body, headers = DELIVERY_CASES[case](*razorpay_delivery(razorpay_event(event_id="evt_same")))
    with TestClient(fast) as fast_client, TestClient(routed) as routed_client:
        answers = [
            client.post(path, content=body, headers=headers) for client in (fast_client, routed_client)
        ]
    assert answers[0].status_code == answers[1].status_code
    assert answers[0].json() == answers[1].json()
    assert answers[0].headers.get("content-type") == answers[1].headers.get("content-type")
