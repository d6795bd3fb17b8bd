"""PayPal through the API: certificate rules, the cert URL allow-list, the simulator's webhook id, amounts.

The key and certificates are generated in the test; the certificate is pinned (PAYPAL_CERT_PATH) or
served by a stand-in for `requests.get`, so nothing here reaches the network.
"""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient

import providers.paypal
from config import Settings
from tests.support import (
    PAYPAL_CERT_URL,
    PAYPAL_WEBHOOK_ID,
    paypal_cert_pem,
    paypal_headers,
    stored_event,
    stored_events,
    write_paypal_cert,
)


def capture_event(
    *, event_id: str = "WH-CAPTURE-1", value: str = "10.99", currency: str = "USD"
) -> dict[str, Any]:
    return {
        "id": event_id,
        "event_type": "PAYMENT.CAPTURE.COMPLETED",
        "resource_type": "capture",
        "create_time": "2025-07-07T12:00:00Z",
        "resource": {
            "id": "2GG279541U471931P",
            "status": "COMPLETED",
            "amount": {"value": value, "currency_code": currency},
            "supplementary_data": {"related_ids": {"order_id": "5O190127TN364715T"}},
        },
    }


def deliver(client: TestClient, payload: dict[str, Any], **sign: Any) -> Any:
    body = json.dumps(payload).encode()
    return client.post("/webhooks/paypal", content=body, headers=paypal_headers(body, **sign))


def error_code(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


@pytest.fixture
def pinned(client_factory: Callable[..., TestClient], tmp_path: Path) -> TestClient:
    return client_factory(paypal_webhook_id=[PAYPAL_WEBHOOK_ID], paypal_cert_path=write_paypal_cert(tmp_path))


# --- the certificate ----------------------------------------------------------------------------------

NOW = datetime.now(UTC)


@pytest.mark.parametrize(
    "cert",
    [
        {"not_before": NOW - timedelta(days=400), "not_after": NOW - timedelta(days=35)},
        {"not_before": NOW + timedelta(days=1), "not_after": NOW + timedelta(days=30)},
        {"common_name": "messageverificationcerts.paypal.com.evil.example"},
        {"common_name": "paypal.com"},
        {"common_name": "webhooks.example.com"},
    ],
    ids=["expired", "not_yet_valid", "paypal_as_a_prefix", "bare_paypal_com", "other_host"],
)
def test_a_certificate_that_is_not_current_or_not_paypals_is_refused(
    client_factory: Callable[..., TestClient], tmp_path: Path, database_url: str, cert: dict[str, Any]
) -> None:
    client = client_factory(
        paypal_webhook_id=[PAYPAL_WEBHOOK_ID], paypal_cert_path=write_paypal_cert(tmp_path, **cert)
    )

    response = deliver(client, capture_event())

    assert error_code(response) == (403, "signature_invalid")
    assert "certificate" in response.json()["error"]["message"]
    assert stored_events(database_url) == []


def test_a_pinned_certificate_path_that_cannot_be_read_stops_start_up(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")

    for path in (missing, not_pem):
        with pytest.raises(ValueError, match="PAYPAL_CERT_PATH"):
            providers.paypal.PayPal(
                Settings(paypal_webhook_id=[PAYPAL_WEBHOOK_ID], paypal_cert_path=str(path))
            )


# --- the certificate URL (no pinned certificate): checked before any fetch ------------------------------


class FakeCertServer:
    """Stands in for `requests.get` in the adapter, so the fetch path runs without a network."""

    def __init__(self, pem: bytes | None) -> None:
        self.pem = pem
        self.urls: list[str] = []

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        self.urls.append(url)
        assert kwargs["allow_redirects"] is False and kwargs["timeout"] > 0
        if self.pem is None:
            raise requests.ConnectionError("unreachable")
        response = requests.Response()
        response.status_code = 200
        response._content = self.pem
        return response


@pytest.fixture
def cert_server(monkeypatch: pytest.MonkeyPatch) -> FakeCertServer:
    server = FakeCertServer(paypal_cert_pem())
    monkeypatch.setattr(requests, "get", server.get)
    return server


@pytest.fixture
def fetching(client_factory: Callable[..., TestClient]) -> TestClient:
    return client_factory(paypal_webhook_id=[PAYPAL_WEBHOOK_ID])


@pytest.mark.parametrize(
    "url",
    [
        "http://api.paypal.com/v1/notifications/certs/CERT-1",
        "https://evil.example/v1/notifications/certs/CERT-1",
        "https://api.paypal.com.evil.example/v1/notifications/certs/CERT-1",
        "https://api.paypal.com@evil.example/v1/notifications/certs/CERT-1",
        "https://user:pw@api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
        "https://api.paypal.com:notaport/v1/notifications/certs/CERT-1",
        "https://[::1/v1/notifications/certs/CERT-1",
        "file:///etc/passwd",
        "//api.paypal.com/v1/notifications/certs/CERT-1",
        "not a url",
    ],
)
def test_a_cert_url_not_https_on_an_allowed_paypal_host_is_refused_without_fetching(
    fetching: TestClient, cert_server: FakeCertServer, database_url: str, url: str
) -> None:
    response = deliver(fetching, capture_event(), cert_url=url)

    assert error_code(response) == (403, "signature_invalid")
    assert cert_server.urls == []
    assert stored_events(database_url) == []


def test_malformed_signature_headers_are_refused_before_any_fetch(
    fetching: TestClient, cert_server: FakeCertServer
) -> None:
    body = json.dumps(capture_event()).encode()
    headers = paypal_headers(body) | {"PAYPAL-AUTH-ALGO": "SHA1withRSA"}

    response = fetching.post("/webhooks/paypal", content=body, headers=headers)

    assert error_code(response) == (403, "signature_invalid")
    assert cert_server.urls == []


def test_a_fetched_certificate_verifies_and_is_cached(
    fetching: TestClient, cert_server: FakeCertServer, database_url: str
) -> None:
    first = deliver(fetching, capture_event(event_id="WH-1"))
    second = deliver(fetching, capture_event(event_id="WH-2"))

    assert (first.status_code, second.status_code) == (200, 200), first.text
    assert cert_server.urls == [PAYPAL_CERT_URL]
    assert [e.event_id for e in stored_events(database_url)] == ["WH-1", "WH-2"]


@pytest.mark.parametrize(
    "pem",
    [
        None,
        b"<html>not a certificate</html>",
        paypal_cert_pem(not_before=NOW - timedelta(days=90), not_after=NOW - timedelta(days=1)),
        paypal_cert_pem(common_name="api.example.com"),
    ],
    ids=["unreachable", "not_pem", "expired", "not_paypal"],
)
def test_a_fetched_certificate_that_fails_its_checks_is_refused(
    fetching: TestClient, cert_server: FakeCertServer, database_url: str, pem: bytes | None
) -> None:
    cert_server.pem = pem

    response = deliver(fetching, capture_event())

    assert error_code(response) == (403, "signature_invalid")
    assert cert_server.urls == [PAYPAL_CERT_URL]
    assert stored_events(database_url) == []


# --- webhook ids and PayPal's simulator ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "expected"),
    [([PAYPAL_WEBHOOK_ID], 403), ([PAYPAL_WEBHOOK_ID, "WEBHOOK_ID"], 200)],
    ids=["production", "simulator_accepted"],
)
def test_simulator_deliveries_verify_only_when_WEBHOOK_ID_is_configured(
    client_factory: Callable[..., TestClient], tmp_path: Path, configured: list[str], expected: int
) -> None:
    client = client_factory(
        paypal_webhook_id=",".join(configured), paypal_cert_path=write_paypal_cert(tmp_path)
    )

    # PayPal's webhook simulator signs with the literal webhook id "WEBHOOK_ID".
    response = deliver(client, capture_event(), webhook_id="WEBHOOK_ID")

    assert response.status_code == expected


# --- amounts and payment ids --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        ("10.99", "USD", 1099),
        ("10.9", "USD", 1090),
        ("500", "JPY", 500),
        ("1.234", "KWD", 1234),
        ("0.01", "EUR", 1),
        ("100", "INR", 10000),
        ("19.990", "USD", 1999),
    ],
)
def test_decimal_amounts_become_minor_units_by_the_currency_exponent(
    pinned: TestClient, database_url: str, value: str, currency: str, minor: int
) -> None:
    response = deliver(pinned, capture_event(value=value, currency=currency))

    assert response.status_code == 200, response.text
    event = stored_event(database_url, "paypal", "WH-CAPTURE-1")
    assert (event.amount, event.currency) == (minor, currency)


@pytest.mark.parametrize(
    ("value", "currency"),
    [
        ("10.999", "USD"),
        ("500.5", "JPY"),
        ("1e3", "USD"),
        ("NaN", "USD"),
        (" 10.99", "USD"),
        ("1_000", "USD"),
        ("", "USD"),
        (10.99, "USD"),
        ("99999999999999999999", "USD"),
    ],
)
def test_an_amount_that_is_not_exact_in_the_currency_is_invalid(
    pinned: TestClient, database_url: str, value: Any, currency: str
) -> None:
    response = deliver(pinned, capture_event(value=value, currency=currency))

    assert error_code(response) == (400, "invalid_payload")
    assert "resource.amount" in response.json()["error"]["message"]
    assert stored_events(database_url) == []


REFUND_V2 = {
    "id": "WH-REFUND-1",
    "event_type": "PAYMENT.CAPTURE.REFUNDED",
    "resource_type": "refund",
    "create_time": "2025-07-08T12:00:00Z",
    "resource": {
        "id": "1JU08902781691411",
        "status": "COMPLETED",
        "amount": {"value": "10.99", "currency_code": "USD"},
        "links": [
            {"href": "https://api.paypal.com/v2/payments/refunds/1JU08902781691411", "rel": "self"},
            {"href": "https://api.paypal.com/v2/payments/captures/2GG279541U471931P", "rel": "up"},
        ],
    },
}
REFUND_V1 = {
    "id": "WH-REFUND-2",
    "event_type": "PAYMENT.SALE.REFUNDED",
    "resource_type": "refund",
    "create_time": "2025-07-08T12:00:00Z",
    "resource": {
        "id": "0P209507D6694645N",
        "state": "completed",
        "sale_id": "4EU7004268015634R",
        "amount": {"total": "-20.00", "currency": "USD"},
    },
}
AUTHORIZATION_V1 = {
    "id": "WH-AUTH-1",
    "event_type": "PAYMENT.AUTHORIZATION.CREATED",
    "resource_type": "authorization",
    "create_time": "2025-07-08T12:00:00Z",
    "resource": {
        "id": "6F961703H62685926",
        "state": "authorized",
        "amount": {"total": "6.00", "currency": "USD"},
    },
}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (capture_event(), ("2GG279541U471931P", "captured", "COMPLETED", 1099)),
        (REFUND_V2, ("2GG279541U471931P", "refunded", "COMPLETED", 1099)),
        (REFUND_V1, ("4EU7004268015634R", "refunded", "completed", -2000)),
        (AUTHORIZATION_V1, ("6F961703H62685926", "authorized", "authorized", 600)),
    ],
    ids=["v2_capture", "v2_refund_names_its_capture", "v1_refund_names_its_sale", "v1_authorization"],
)
def test_payment_id_per_resource_type(
    pinned: TestClient, database_url: str, payload: dict[str, Any], expected: tuple[str, str, str, int]
) -> None:
    response = deliver(pinned, payload)

    assert response.status_code == 200, response.text
    event = stored_event(database_url, "paypal", payload["id"])
    assert (event.payment_id, event.status, event.provider_status, event.amount) == expected
    assert event.occurred_at == datetime.fromisoformat(payload["create_time"])
