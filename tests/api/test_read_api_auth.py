"""API_TOKENS protects every read route (Bearer, constant-time compare, 401 with WWW-Authenticate in the
one error shape); webhook and health routes stay open; with no tokens, reads are open and start-up warns."""

import re
from collections.abc import Callable

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api import reads
from config import Settings
from tests.conftest import LiveServer
from tests.support import razorpay_delivery, razorpay_event

TOKENS = ["tok_current_6f1d2c", "tok_previous_9a8b7c"]
SAMPLE_PATH_VALUES = {"payment_id": "pay_014", "provider": "razorpay", "event_id": "evt_auth_014"}


def read_paths() -> list[str]:
    """Every route on the read router, with sample path values: a new read route is covered by itself."""
    routes = [route for route in reads.router.routes if isinstance(route, APIRoute)]
    return [
        re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PATH_VALUES[m.group(1)], route.path_format) for route in routes
    ]


READ_PATHS = read_paths()


@pytest.fixture
def protected(client_factory: Callable[..., TestClient]) -> TestClient:
    client = client_factory(api_tokens=TOKENS)
    body, headers = razorpay_delivery(razorpay_event(event_id="evt_auth_014", payment_id="pay_014"))
    assert client.post("/webhooks/razorpay", content=body, headers=headers).status_code == 200
    return client


def test_the_read_router_has_the_four_read_routes() -> None:
    assert sorted(READ_PATHS) == sorted(
        ["/payments/pay_014", "/payments/pay_014/events", "/events", "/events/razorpay/evt_auth_014"]
    )


@pytest.mark.parametrize(
    ("authorization", "challenge"),
    [
        (None, "Bearer"),
        ("", "Bearer"),
        ("Bearer", "Bearer"),
        ("Basic dG9rX2N1cnJlbnRfNmYxZDJjOg==", "Bearer"),
        ("tok_current_6f1d2c", "Bearer"),  # the token without the scheme
        ("Bearer tok_current_6f1d2", 'Bearer error="invalid_token"'),  # a prefix of a real token
        ("Bearer tok_current_6f1d2cX", 'Bearer error="invalid_token"'),
        ("Bearer TOK_CURRENT_6F1D2C", 'Bearer error="invalid_token"'),
        ("Bearer tok_current_6f1d2c,tok_previous_9a8b7c", 'Bearer error="invalid_token"'),
        ("Bearer ' OR '1'='1", 'Bearer error="invalid_token"'),
        ("Bearer t\u00f6k", 'Bearer error="invalid_token"'),
    ],
)
def test_reads_without_a_valid_token_are_401(
    protected: TestClient, authorization: str | None, challenge: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization.encode()}

    responses = {path: protected.get(path, headers=headers) for path in READ_PATHS}  # type: ignore[arg-type]

    for path, response in responses.items():
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == challenge
        assert response.json()["error"]["code"] == "unauthorized"
        assert set(response.json()["error"]) == {"code", "message"}


@pytest.mark.parametrize("token", TOKENS)
def test_any_configured_token_opens_every_read_route(protected: TestClient, token: str) -> None:
    for scheme in ("Bearer", "bearer"):
        for path in READ_PATHS:
            response = protected.get(path, headers={"Authorization": f"{scheme} {token}"})
            assert response.status_code == 200, (path, response.text)


def test_the_token_is_checked_before_the_parameters(protected: TestClient) -> None:
    # An unauthenticated caller learns nothing, not even which of its parameters are wrong.
    response = protected.get("/payments/%00/events?limit=0&after=garbage")

    assert response.status_code == 401


def test_health_routes_stay_open(protected: TestClient) -> None:
    assert [protected.get(path).status_code for path in ("/healthz", "/readyz")] == [200, 200]


def test_webhooks_never_take_tokens(protected: TestClient) -> None:
    body, headers = razorpay_delivery(razorpay_event(event_id="evt_open"))

    responses = [
        protected.post("/webhooks/razorpay", content=body, headers=headers),
        protected.post(
            "/webhook/payments", content=body, headers={**headers, "Authorization": "Bearer wrong"}
        ),
    ]

    assert [(r.status_code, r.json()["status"]) for r in responses] == [
        (200, "processed"),
        (200, "duplicate"),
    ]


def test_without_tokens_reads_are_open(client: TestClient) -> None:
    body, headers = razorpay_delivery(razorpay_event(event_id="evt_auth_014", payment_id="pay_014"))
    assert client.post("/webhooks/razorpay", content=body, headers=headers).status_code == 200

    assert {path: client.get(path).status_code for path in READ_PATHS} == dict.fromkeys(READ_PATHS, 200)


def test_production_refuses_to_start_without_tokens() -> None:
    with pytest.raises(ValidationError, match="API_TOKENS must be set"):
        Settings(app_env="production", razorpay_webhook_secret=["a-real-secret"], api_tokens=[])


@pytest.mark.parametrize(("tokens", "warned"), [("", True), (",".join(TOKENS), False)])
def test_development_without_tokens_warns_at_start_up(
    database_url: str, live_server_factory: Callable[..., LiveServer], tokens: str, warned: bool
) -> None:
    server = live_server_factory({"DATABASE_URL": database_url, "API_TOKENS": tokens})
    server.stop()
    log = server.read_log()

    assert ("API_TOKENS is not set: the read API is open" in log) is warned
