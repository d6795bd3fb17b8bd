"""Razorpay: no events API. GET /v1/payments (from, to, count, skip) lists payments with their state now,
and GET /v1/payments/{id} fetches one; each is stored as an observation (source.observation) when it
differs from our state, and folds like any event, so it never moves a payment back."""

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

from errors import InvalidPayload, ProviderUnavailable
from payments.events import NormalizedEvent
from providers import fields
from recovery.http import json_body
from recovery.source import Page, Source, observation

PAYMENTS_PATH = "/v1/payments"

# A payment entity's status, normalised as its webhook events are (providers/razorpay.py).
_STATUS = {
    "created": "created",
    "authorized": "authorized",
    "captured": "captured",
    "refunded": "refunded",
    "failed": "failed",
}


def payment_observation(entity: dict[str, Any]) -> NormalizedEvent:
    payment_id = fields.required_text(entity.get("id"), "id")
    provider_status = fields.text(entity.get("status"), "status")
    status = _STATUS.get(provider_status or "")
    key = status or "unknown"
    refunded = fields.amount(entity.get("amount_refunded"), "amount_refunded") or 0
    if status == "captured" and (entity.get("refund_status") == "partial" or refunded > 0):
        # A partial refund leaves the payment "captured" with refund_status "partial".
        status, key = "partially_refunded", f"partially_refunded:{refunded}"
    return observation(
        provider="razorpay",
        payment_id=payment_id,
        status=status,
        provider_status=provider_status,
        amount=fields.amount(entity.get("amount"), "amount"),
        currency=fields.currency(entity.get("currency"), "currency"),
        entity=entity,
        key=key,
        source=f"GET {PAYMENTS_PATH}",
    )


class RazorpaySource(Source):
    name = "razorpay"
    observes = True
    credential_settings = "RAZORPAY_KEY_ID and RAZORPAY_KEY_SECRET"

    @property
    def base(self) -> str:
        return self.settings.razorpay_api_base

    @property
    def configured(self) -> bool:
        return bool(self.settings.razorpay_key_id) and self.settings.razorpay_key_secret is not None

    def _get(self, path: str, params: Any = None, *, allow_missing: bool = False) -> Any:
        assert self.settings.razorpay_key_id and self.settings.razorpay_key_secret is not None
        response = self.client.request(
            "GET",
            path,
            headers={"Accept": "application/json"},
            params=params,
            auth=(self.settings.razorpay_key_id, self.settings.razorpay_key_secret.get_secret_value()),
        )
        if allow_missing and response.status_code in (400, 404):
            return None  # Razorpay answers 400 BAD_REQUEST_ERROR "The id provided does not exist"
        if response.status_code != 200:
            raise ProviderUnavailable(f"GET {path} answered {response.status_code}")
        return json_body(response, f"GET {PAYMENTS_PATH}")

    def pages(self, *, since: datetime, until: datetime) -> Iterator[Page]:
        count = self.settings.recovery_page_size
        skip = 0
        while True:
            params = {
                "from": int(since.timestamp()),
                "to": int(until.timestamp()),
                "count": count,
                "skip": skip,
            }
            body = self._get(PAYMENTS_PATH, params)
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise ProviderUnavailable(f"GET {PAYMENTS_PATH} did not answer a collection")
            items = [item for item in body["items"] if isinstance(item, dict)]
            page = Page()
            for item in items:
                try:
                    page.events.append(payment_observation(item))
                except InvalidPayload:
                    page.refused += 1
            yield page
            if len(body["items"]) < count:
                return
            skip += count

    def payment(self, payment_id: str) -> NormalizedEvent | None:
        body = self._get(f"{PAYMENTS_PATH}/{quote(payment_id, safe='')}", allow_missing=True)
        if body is None:
            return None
        if not isinstance(body, dict):
            raise ProviderUnavailable(f"GET {PAYMENTS_PATH}/{{id}} did not answer a payment")
        try:
            return payment_observation(body)
        except InvalidPayload as exc:
            raise ProviderUnavailable(f"GET {PAYMENTS_PATH}/{{id}}: {exc.message}") from exc
