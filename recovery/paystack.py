"""Paystack: no events API. GET /transaction (from, to, perPage, page; paged by its `meta`) lists
transactions with their state now, and GET /transaction/verify/{reference} fetches one; each is stored
as an observation (source.observation) when it differs from ours. The payment id is the transaction's
reference, as in webhooks (providers/paystack.py)."""

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

from errors import InvalidPayload, ProviderUnavailable
from payments.events import NormalizedEvent
from providers import fields
from recovery.http import json_body
from recovery.source import Page, Source, iso_utc, observation

LIST_PATH = "/transaction"
VERIFY_PATH = "/transaction/verify"

# A transaction's status, normalised. abandoned: the customer never completed it.
_STATUS = {
    "success": "captured",
    "failed": "failed",
    "abandoned": "failed",
    "reversed": "refunded",
    "ongoing": "created",
    "pending": "created",
    "processing": "created",
    "queued": "created",
}


def transaction_observation(data: dict[str, Any], *, source: str) -> NormalizedEvent:
    reference = fields.required_text(data.get("reference"), "reference")
    provider_status = fields.text(data.get("status"), "status")
    status = _STATUS.get(provider_status or "")
    return observation(
        provider="paystack",
        payment_id=reference,
        status=status,
        provider_status=provider_status,
        amount=fields.amount(data.get("amount"), "amount"),
        currency=fields.currency(data.get("currency"), "currency"),
        entity=data,
        key=status or "unknown",
        source=source,
    )


class PaystackSource(Source):
    name = "paystack"
    observes = True
    credential_settings = "PAYSTACK_SECRET_KEY"

    @property
    def base(self) -> str:
        return self.settings.paystack_api_base

    @property
    def configured(self) -> bool:
        return bool(self.settings.paystack_secret_key)

    def _get(self, path: str, params: Any = None) -> Any:
        # The first key: while keys are being rotated the first is the one in use (README).
        key = self.settings.paystack_secret_key[0]
        response = self.client.request(
            "GET",
            path,
            headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
            params=params,
        )
        call = f"GET {VERIFY_PATH if path.startswith(VERIFY_PATH) else LIST_PATH}"
        if response.status_code == 400 and path.startswith(VERIFY_PATH):
            return None  # {"status": false, "message": "Transaction reference not found"}
        body = json_body(response, call) if response.status_code == 200 else None
        if not isinstance(body, dict) or body.get("status") is not True:
            raise ProviderUnavailable(f"{call} answered {response.status_code}")
        return body

    def pages(self, *, since: datetime, until: datetime) -> Iterator[Page]:
        number = 1
        while True:
            params = {
                "from": iso_utc(since),
                "to": iso_utc(until),
                "perPage": self.settings.recovery_page_size,
                "page": number,
            }
            body = self._get(LIST_PATH, params)
            data, meta = body.get("data"), body.get("meta")
            if not isinstance(data, list) or not isinstance(meta, dict):
                raise ProviderUnavailable(f"GET {LIST_PATH} did not answer data and meta")
            page = Page()
            for item in data:
                try:
                    if not isinstance(item, dict):
                        raise InvalidPayload("not an object")
                    page.events.append(transaction_observation(item, source=f"GET {LIST_PATH}"))
                except InvalidPayload:
                    page.refused += 1
            yield page
            page_count = meta.get("pageCount")
            if not data or not isinstance(page_count, int) or number >= page_count:
                return
            number += 1

    def payment(self, payment_id: str) -> NormalizedEvent | None:
        body = self._get(f"{VERIFY_PATH}/{quote(payment_id, safe='')}")
        if body is None:
            return None
        data = body.get("data")
        if not isinstance(data, dict):
            raise ProviderUnavailable(f"GET {VERIFY_PATH}/{{reference}} did not answer a transaction")
        try:
            return transaction_observation(data, source=f"GET {VERIFY_PATH}")
        except InvalidPayload as exc:
            raise ProviderUnavailable(f"GET {VERIFY_PATH}/{{reference}}: {exc.message}") from exc
