"""PayPal: GET /v1/notifications/webhooks-events (start_time, end_time, page_size), paged by following
its `next` link. These are the events webhooks carry, with the same ids, so they dedupe. Calls carry an
OAuth2 client-credentials token, cached until shortly before it expires and fetched again once when
PayPal refuses it early (revoked, or expired by PayPal's clock)."""

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import requests

from config import Settings
from errors import CredentialsRefused, InvalidPayload, ProviderUnavailable
from payments.events import NormalizedEvent
from providers import fields
from providers.money import decimal_to_minor
from providers.paypal import PayPal
from recovery.http import json_body
from recovery.source import Page, Source, iso_utc, observation, recovered

TOKEN_PATH = "/v1/oauth2/token"  # noqa: S105 (a path, not a secret)
EVENTS_PATH = "/v1/notifications/webhooks-events"
CAPTURES_PATH = "/v2/payments/captures"
# A capture's status, normalised as its events are (providers/paypal.py).
_CAPTURE_STATUS = {
    "PENDING": "created",
    "COMPLETED": "captured",
    "DECLINED": "failed",
    "FAILED": "failed",
    "PARTIALLY_REFUNDED": "partially_refunded",
    "REFUNDED": "refunded",
}
# A token is used until this long before PayPal says it expires: no call leaves with a dying token.
TOKEN_MARGIN_SECONDS = 60


class PayPalSource(Source):
    name = "paypal"
    credential_settings = "PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET"

    def __init__(
        self,
        settings: Settings,
        *,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(settings, sleep=sleep)
        self._clock = clock
        self._token: tuple[str, float] | None = None  # (token, when to stop using it)
        self.tokens_fetched = 0

    @property
    def base(self) -> str:
        return self.settings.paypal_api_base

    @property
    def configured(self) -> bool:
        return bool(self.settings.paypal_client_id) and self.settings.paypal_client_secret is not None

    def _access_token(self) -> str:
        if self._token is not None and self._clock() < self._token[1]:
            return self._token[0]
        assert self.settings.paypal_client_id and self.settings.paypal_client_secret is not None
        response = self.client.request(
            "POST",
            TOKEN_PATH,
            headers={"Accept": "application/json"},
            data={"grant_type": "client_credentials"},
            auth=(self.settings.paypal_client_id, self.settings.paypal_client_secret.get_secret_value()),
        )
        body = json_body(response, f"POST {TOKEN_PATH}") if response.status_code == 200 else None
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise ProviderUnavailable(f"POST {TOKEN_PATH} answered {response.status_code} without a token")
        expires_in = body.get("expires_in")
        lifetime = expires_in if isinstance(expires_in, int) else 0
        self._token = (body["access_token"], self._clock() + lifetime - TOKEN_MARGIN_SECONDS)
        self.tokens_fetched += 1
        return self._token[0]

    def _authorised_get(self, path: str, params: Any = None) -> requests.Response:
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {self._access_token()}", "Accept": "application/json"}
            try:
                return self.client.request("GET", path, headers=headers, params=params)
            except CredentialsRefused:
                if attempt == 1:
                    raise
                self._token = None  # refused early: one new token, then the credentials are to blame
        raise AssertionError("unreachable")

    def _get(self, path: str, params: Any = None) -> Any:
        response = self._authorised_get(path, params)
        if response.status_code != 200:
            raise ProviderUnavailable(f"GET {EVENTS_PATH} answered {response.status_code}")
        return json_body(response, f"GET {EVENTS_PATH}")

    def pages(self, *, since: datetime, until: datetime) -> Iterator[Page]:
        adapter = PayPal(self.settings)
        path = EVENTS_PATH
        params: dict[str, str] | None = {
            "page_size": str(self.settings.recovery_page_size),
            "start_time": iso_utc(since),
            "end_time": iso_utc(until),
        }
        while True:
            body = self._get(path, params)
            if not isinstance(body, dict) or not isinstance(body.get("events"), list):
                raise ProviderUnavailable(f"GET {EVENTS_PATH} did not answer an event list")
            page = Page()
            for item in body["events"]:
                try:
                    if not isinstance(item, dict):
                        raise InvalidPayload("not an object")
                    event = adapter.normalise(
                        item, body=orjson.dumps(item), headers={}, received_at=datetime.now(UTC)
                    )
                except InvalidPayload:
                    page.refused += 1
                    continue
                page.events.append(recovered(event, source=f"GET {EVENTS_PATH}"))
            yield page
            next_link = _next_link(body.get("links"))
            if next_link is None or not body["events"]:
                return
            path, params = next_link, None

    def payment(self, payment_id: str) -> NormalizedEvent | None:
        """GET /v2/payments/captures/{id}: a capture's state now, as an observation. The payment id of
        PayPal's capture events is the capture's id."""
        path = f"{CAPTURES_PATH}/{quote(payment_id, safe='')}"
        response = self._authorised_get(path)
        if response.status_code == 404:  # {"name": "RESOURCE_NOT_FOUND", ...}
            return None
        capture = json_body(response, f"GET {CAPTURES_PATH}") if response.status_code == 200 else None
        if not isinstance(capture, dict):
            raise ProviderUnavailable(f"GET {CAPTURES_PATH}/{{id}} answered {response.status_code}")
        try:
            provider_status = fields.text(capture.get("status"), "status")
            currency = fields.currency(
                fields.get_path(capture, "amount.currency_code"), "amount.currency_code"
            )
            value = fields.get_path(capture, "amount.value")
            amount = decimal_to_minor(value, currency) if isinstance(value, str) and currency else None
            status = _CAPTURE_STATUS.get(provider_status or "")
            return observation(
                provider=self.name,
                payment_id=fields.required_text(capture.get("id"), "id"),
                status=status,
                provider_status=provider_status,
                amount=fields.amount(amount, "amount.value"),
                currency=currency,
                entity=capture,
                key=status or "unknown",
                source=f"GET {CAPTURES_PATH}",
            )
        except (InvalidPayload, ValueError) as exc:
            raise ProviderUnavailable(f"GET {CAPTURES_PATH}/{{id}}: {exc}") from exc


def _next_link(links: object) -> str | None:
    """The path and query of the `next` link. Only the path is followed, on the configured base: the
    token is never sent to a host a response names."""
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("rel") == "next" and isinstance(link.get("href"), str):
            parts = urlsplit(link["href"])
            if parts.path != EVENTS_PATH:
                raise ProviderUnavailable(f"GET {EVENTS_PATH}: a next link to another path")
            return f"{parts.path}?{parts.query}" if parts.query else parts.path
    return None
