"""Event ids read from headers (Standard Webhooks' webhook-id / svix-id, Razorpay's X-Razorpay-Event-Id)
are stored as the sender wrote them: their bytes as UTF-8. An id that cannot be stored is refused before
the signature is checked, never after it proved authentic. Headers are sent as exact bytes."""

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.support import STANDARD_SECRET, razorpay_headers, standard_headers, stored_events

BODY = json.dumps({"type": "payment.succeeded", "data": {"id": "pay_hdr", "status": "captured"}}).encode()
RAZORPAY_BODY = json.dumps(
    {"event": "payment.captured", "payload": {"payment": {"entity": {"id": "pay_hdr", "status": "captured"}}}}
).encode()


def send(client: TestClient, method: str, path: str, headers: dict[str, bytes], body: bytes = b"") -> Any:
    """A request with exactly these header bytes, on the app's own event loop (TestClient re-encodes
    header values as UTF-8 on the way in, which would hide the bytes under test)."""

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await http.request(method, path, headers=headers, content=body)

    assert client.portal is not None
    return client.portal.call(call)


def as_bytes(headers: dict[str, str]) -> dict[str, bytes]:
    return {name: value.encode() for name, value in headers.items()}


@pytest.fixture
def client(client_factory: Callable[..., TestClient]) -> TestClient:
    return client_factory(standard_webhook_secret=[STANDARD_SECRET])


@pytest.mark.parametrize("event_id", ["mé14", "m€15", "注文-16", "emoji-😀"])
@pytest.mark.parametrize("prefix", ["webhook", "svix"])
def test_a_non_ascii_standard_id_is_stored_as_sent_and_read_back(
    client: TestClient, database_url: str, event_id: str, prefix: str
) -> None:
    headers = as_bytes(standard_headers(BODY, msg_id=event_id, prefix=prefix))

    response = send(client, "POST", "/webhooks/standard", headers, BODY)

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "processed", "event_id": event_id}
    [stored] = stored_events(database_url, "standard")
    assert (stored.event_id, stored.headers[f"{prefix}-id"]) == (event_id, event_id)
    read = send(client, "GET", f"/events/standard/{quote(event_id, safe='')}", {})
    assert read.status_code == 200, read.text
    assert read.json()["event_id"] == event_id


def test_a_non_ascii_razorpay_event_id_header_is_stored_as_sent(
    client: TestClient, database_url: str
) -> None:
    headers = as_bytes(razorpay_headers(RAZORPAY_BODY, event_id="évt-€-17"))

    response = send(client, "POST", "/webhooks/razorpay", headers, RAZORPAY_BODY)

    assert response.status_code == 200, response.text
    assert [event.event_id for event in stored_events(database_url, "razorpay")] == ["évt-€-17"]


INVALID_IDS = {
    "not_utf8": b"m\xe914",
    "c1_control": "m\u0085x".encode(),
    "too_long": b"x" * 256,
}


@pytest.mark.parametrize("value", INVALID_IDS.values(), ids=INVALID_IDS.keys())
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "forged"])
def test_an_id_header_that_cannot_be_stored_is_refused_before_the_signature(
    client: TestClient, database_url: str, value: bytes, signed: bool
) -> None:
    """The same answer with a valid signature and a forged one: the id is judged first."""
    standard = as_bytes(standard_headers(BODY, msg_id=value.decode("latin-1")))
    standard["webhook-id"] = value
    razorpay = as_bytes(razorpay_headers(RAZORPAY_BODY)) | {"X-Razorpay-Event-Id": value}
    if not signed:
        standard["webhook-signature"] = b"v1," + b"A" * 44
        razorpay["X-Razorpay-Signature"] = b"0" * 64

    answers = [
        send(client, "POST", "/webhooks/standard", standard, BODY),
        send(client, "POST", "/webhooks/razorpay", razorpay, RAZORPAY_BODY),
    ]

    assert [(r.status_code, r.json()["error"]["code"]) for r in answers] == [(400, "invalid_payload")] * 2
    assert stored_events(database_url) == []
