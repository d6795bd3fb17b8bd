"""Stripe: GET /v1/events, newest first, paged with starting_after while has_more. These are the very
event objects webhooks carry, with the same ids, so a recovered event and its late webhook dedupe."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson

from errors import InvalidPayload, ProviderUnavailable
from payments.events import NormalizedEvent
from providers import fields
from providers.stripe import Stripe
from recovery.http import json_body
from recovery.source import Page, Source, observation, recovered

# The payment event types the adapter (providers/stripe.py) reads. Stripe takes at most 20 in types[].
PAYMENT_EVENT_TYPES = (
    "payment_intent.created",
    "payment_intent.amount_capturable_updated",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "charge.succeeded",
    "charge.captured",
    "charge.failed",
    "charge.refunded",
    "charge.dispute.created",
    "charge.dispute.closed",
)
EVENTS_PATH = "/v1/events"
INTENTS_PATH = "/v1/payment_intents"
# A PaymentIntent's status, normalised as its events are (providers/stripe.py).
_INTENT_STATUS = {
    "requires_payment_method": "created",
    "requires_confirmation": "created",
    "requires_action": "created",
    "processing": "created",
    "requires_capture": "authorized",
    "succeeded": "captured",
    "canceled": "failed",
}


class StripeSource(Source):
    name = "stripe"
    credential_settings = "STRIPE_API_KEY"

    @property
    def base(self) -> str:
        return self.settings.stripe_api_base

    @property
    def configured(self) -> bool:
        return self.settings.stripe_api_key is not None

    def _headers(self) -> dict[str, str]:
        assert self.settings.stripe_api_key is not None
        return {"Authorization": f"Bearer {self.settings.stripe_api_key.get_secret_value()}"}

    def pages(self, *, since: datetime, until: datetime) -> Iterator[Page]:
        adapter = Stripe(self.settings)
        params: list[tuple[str, str]] = [
            ("limit", str(self.settings.recovery_page_size)),
            ("created[gte]", str(int(since.timestamp()))),
            ("created[lt]", str(int(until.timestamp()))),
            *(("types[]", event_type) for event_type in PAYMENT_EVENT_TYPES),
        ]
        if self.settings.stripe_recovery_undelivered_only:
            params.append(("delivery_success", "false"))
        starting_after: str | None = None
        while True:
            query = params if starting_after is None else [*params, ("starting_after", starting_after)]
            body = self.client.get_json(EVENTS_PATH, headers=self._headers(), params=query)
            data = _list(body)
            page = Page()
            for item in data:
                try:
                    event = adapter.normalise(
                        item, body=orjson.dumps(item), headers={}, received_at=datetime.now(UTC)
                    )
                except InvalidPayload:
                    page.refused += 1
                    continue
                page.events.append(recovered(event, source=f"GET {EVENTS_PATH}"))
            yield page
            if not body.get("has_more") or not data:
                return
            starting_after = str(data[-1].get("id"))

    def payment(self, payment_id: str) -> NormalizedEvent | None:
        """GET /v1/payment_intents/{id}: the intent's state now, as an observation (its events are
        recovered by `pages`; this is the on-demand look at one payment)."""
        response = self.client.request(
            "GET", f"{INTENTS_PATH}/{quote(payment_id, safe='')}", headers=self._headers()
        )
        if response.status_code == 404:  # {"error": {"code": "resource_missing", ...}}
            return None
        intent = json_body(response, f"GET {INTENTS_PATH}") if response.status_code == 200 else None
        if not isinstance(intent, dict) or intent.get("object") != "payment_intent":
            raise ProviderUnavailable(f"GET {INTENTS_PATH}/{{id}} answered {response.status_code}")
        try:
            provider_status = fields.text(intent.get("status"), "status")
            status = _INTENT_STATUS.get(provider_status or "")
            return observation(
                provider=self.name,
                payment_id=fields.required_text(intent.get("id"), "id"),
                status=status,
                provider_status=provider_status,
                amount=fields.amount(intent.get("amount"), "amount"),
                currency=fields.currency(intent.get("currency"), "currency"),
                entity=intent,
                key=status or "unknown",
                source=f"GET {INTENTS_PATH}",
            )
        except InvalidPayload as exc:
            raise ProviderUnavailable(f"GET {INTENTS_PATH}/{{id}}: {exc.message}") from exc


def _list(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or body.get("object") != "list" or not isinstance(body.get("data"), list):
        raise ProviderUnavailable(f"GET {EVENTS_PATH} did not answer a list object")
    return [item for item in body["data"] if isinstance(item, dict)]
