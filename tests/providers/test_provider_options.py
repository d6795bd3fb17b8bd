"""The optional settings, production's refusals, and the particular rules of Checkout.com, Square,
Mercado Pago and Paddle."""

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from config import Settings
from security import mercadopago_manifest
from tests.providers import signing
from tests.providers.test_more_providers import MERCADOPAGO, post
from tests.support import stored_events


def test_checkout_static_authorization_key_when_configured(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory(**signing.SETTINGS["checkout"], checkout_authorization_key=["cko_static_key"])
    body = signing.payload("checkout_payment_captured.json")

    missing = post(client, "checkout", signing.checkout(body))
    wrong = post(client, "checkout", signing.checkout(body, authorization="not_it"))
    right = post(client, "checkout", signing.checkout(body, authorization="cko_static_key"))

    assert (missing.status_code, missing.json()["error"]["code"]) == (403, "signature_missing")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (403, "signature_invalid")
    assert right.json()["status"] == "processed"


def test_square_needs_its_notification_url_to_be_configured(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(square_signature_key=[signing.SQUARE_KEY])

    response = post(client, "square", signing.square(signing.payload("square_payment_updated.json")))

    assert (response.status_code, response.json()["error"]["code"]) == (404, "provider_not_configured")


def test_square_signed_for_another_url_is_refused(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory(**signing.SETTINGS["square"])
    delivery = signing.square(
        signing.payload("square_payment_updated.json"), url="https://elsewhere.example/hook"
    )

    assert post(client, "square", delivery).json()["error"]["code"] == "signature_invalid"


def test_square_refund_attaches_to_its_payment(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory(**signing.SETTINGS["square"])
    post(client, "square", signing.square(signing.payload("square_payment_updated.json")))
    post(client, "square", signing.square(signing.payload("square_refund_updated.json")))

    assert client.get("/payments/hYy9pRFVxpDsO1FB05SunFWUe9JZY").json()["status"] == "refunded"


def test_mercadopago_needs_data_id_in_the_query_string(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory(**signing.SETTINGS["mercadopago"])
    delivery = signing.mercadopago(MERCADOPAGO)
    delivery.query = {}

    response = post(client, "mercadopago", delivery)

    assert (response.status_code, response.json()["error"]["code"]) == (403, "signature_missing")


def test_mercadopago_body_must_name_the_signed_data_id(
    client_factory: Callable[..., TestClient], database_url: str
) -> None:
    client = client_factory(**signing.SETTINGS["mercadopago"])
    delivery = signing.mercadopago(MERCADOPAGO, data_id="999999")

    response = post(client, "mercadopago", delivery)

    assert (response.status_code, response.json()["error"]["code"]) == (403, "signature_invalid")
    assert stored_events(database_url, "mercadopago") == []


def test_mercadopago_manifest_lower_cases_an_alphanumeric_id_and_omits_absent_parts() -> None:
    assert mercadopago_manifest(data_id="ABC123", request_id="r-1", ts="1704908010") == (
        b"id:abc123;request-id:r-1;ts:1704908010;"
    )
    assert mercadopago_manifest(data_id="AB-12", request_id=None, ts="1") == b"id:AB-12;ts:1;"


def test_paddle_accepts_any_h1_during_rotation(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory(paddle_webhook_secret=["pdl_new_secret"])
    # Paddle signs with both secrets while one is rotated; only the new one is configured here.
    delivery = signing.paddle(
        signing.payload("paddle_adjustment_refund.json"), secrets=("pdl_old_secret", "pdl_new_secret")
    )

    response = post(client, "paddle", delivery)

    assert response.json()["status"] == "processed"
    history = client.get("/payments/txn_01hv8wptq8987qeep44cyrewp9/events").json()
    assert [(e["status"], e["amount"]) for e in history] == [("partially_refunded", 1000)]


@pytest.mark.parametrize("setting", sorted(signing.SECRET_SETTING.values()))
def test_production_refuses_the_development_secret_for_each_new_provider(setting: str) -> None:
    with pytest.raises(ValidationError, match=setting.upper()):
        Settings(app_env="production", api_tokens=["token"], **{setting: ["test_secret"]})


@pytest.mark.parametrize("setting", sorted(signing.SECRET_SETTING.values()))
def test_production_starts_with_only_a_new_providers_secret(setting: str) -> None:
    value = "9b" * 32  # hexadecimal, as Adyen's key must be; published nowhere
    production = {"api_tokens": ["a-read-token-of-some-length"], "console_session_secret": "c" * 32}
    assert getattr(Settings(app_env="production", **production, **{setting: [value]}), setting) == [value]
