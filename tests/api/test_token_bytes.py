"""A bearer token matches only when the header carries exactly its UTF-8 bytes, on every read route and
/metrics, through FastAPI's dependency and the history's hot route alike."""

from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from main import create_app
from security import constant_time_in
from tests.conftest import make_settings, without_hot_routes
from tests.support import razorpay_delivery, razorpay_event

CYRILLIC = "ключ-секрет-2025"
LATIN = "tök-secret-token-2025"
PATHS = [
    "/payments/pay_014",
    "/payments/pay_014/events",
    "/events",
    "/events/razorpay/evt_auth_014",
    "/metrics",
]


@pytest.fixture(params=["hot_route", "router"])
def client(request: pytest.FixtureRequest, database_url: str) -> Iterator[TestClient]:
    app = create_app(make_settings(database_url, api_tokens=[CYRILLIC, LATIN]))
    if request.param == "router":
        without_hot_routes(app)
    with TestClient(app, raise_server_exceptions=False) as client:
        body, headers = razorpay_delivery(razorpay_event(event_id="evt_auth_014", payment_id="pay_014"))
        assert client.post("/webhooks/razorpay", content=body, headers=headers).status_code == 200
        yield client


def statuses(client: TestClient, authorization: bytes) -> dict[str, int]:
    """Each path's status for a header of exactly these bytes. Sent through httpx's ASGI transport on the
    app's own event loop: TestClient re-encodes header values as UTF-8 on the way in."""

    async def get_all() -> dict[str, int]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return {
                path: (await http.get(path, headers={"Authorization": authorization})).status_code
                for path in PATHS
            }

    assert client.portal is not None
    return client.portal.call(get_all)


@pytest.mark.parametrize("token", [CYRILLIC, LATIN])
def test_the_token_sent_as_utf8_is_let_in(client: TestClient, token: str) -> None:
    assert statuses(client, b"Bearer " + token.encode()) == dict.fromkeys(PATHS, 200)


@pytest.mark.parametrize(
    "authorization",
    [
        b"Bearer ????-??????-2025",  # what errors="replace" made of the Cyrillic token
        b"Bearer t?k-secret-token-2025",
        b"Bearer " + LATIN.encode("latin-1"),  # the right characters, in another encoding
        b"Bearer " + CYRILLIC.encode("utf-16-le"),
    ],
)
def test_anything_but_the_tokens_utf8_bytes_is_401(client: TestClient, authorization: bytes) -> None:
    assert statuses(client, authorization) == dict.fromkeys(PATHS, 401)


def test_constant_time_in_compares_exact_bytes() -> None:
    assert constant_time_in(CYRILLIC.encode().decode("latin-1"), [CYRILLIC])  # as the server decodes it
    assert not constant_time_in("????-??????-2025", [CYRILLIC])
    assert not constant_time_in(LATIN, [LATIN.replace("ö", "?")])
