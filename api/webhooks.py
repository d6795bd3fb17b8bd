"""The delivery path: find the provider -> check its headers -> read the raw body (capped, timed) ->
verify -> parse -> normalise -> store once -> answer. Each arrow is one call into one module.

The documented FastAPI routes and their hot route (api/hot_routes.py) both call `receive()`.
"""

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.types import Scope

from api.hot_routes import HotRoute
from errors import (
    ApiError,
    ClientDisconnected,
    InvalidJson,
    InvalidPayload,
    PayloadTooLarge,
    ProviderNotConfigured,
    RequestTimeout,
    UnknownProvider,
)
from ingest import deadlines
from ops import telemetry
from providers import Provider
from schemas import WEBHOOK_RESPONSES, WebhookAck

router = APIRouter(tags=["webhooks"])


def header_map(request: Request) -> dict[str, str]:
    """The delivery's headers as a plain dict, built once: adapters look several up, and Starlette's
    Headers scans the whole list on every lookup. Names arrive lower-case from the server; where a
    header repeats, the first one counts, as with Starlette's Headers."""
    headers: dict[str, str] = {}
    for name, value in request.scope["headers"]:
        headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return headers


async def read_body(request: Request, headers: dict[str, str], limit: int, *, timeout: float) -> bytes:
    """The raw body, refused as soon as it is known to exceed `limit`, without reading the rest, or
    when it has not all arrived within `timeout` seconds (however slowly it trickles in). Read from the
    ASGI messages themselves: Starlette's stream() adds an async generator per delivery."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        with deadlines.timeout(timeout):
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnected("the client closed the connection before sending the whole body")
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        refused = f"body not received within {timeout:g} s"
        raise RequestTimeout(refused, headers={"Connection": "close"}) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"body exceeds {limit} bytes", headers={"Connection": "close"})


def parse_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)  # orjson refuses invalid UTF-8, as JSON requires
    except orjson.JSONDecodeError as exc:
        raise InvalidJson("body is not valid UTF-8 JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidPayload("body must be a JSON object")
    return payload


def find_provider(request: Request, name: str) -> Provider:
    provider: Provider | None = request.app.state.providers.get(name)
    if provider is None:
        raise UnknownProvider(f"no provider named {name!r}")
    if not provider.secrets:
        raise ProviderNotConfigured(f"provider {name!r} has no secret configured")
    return provider


async def receive(request: Request, provider_name: str) -> Response:
    started = time.perf_counter()
    # Only known names reach logs and metric labels: the path segment is the client's to choose.
    known = provider_name in request.app.state.providers
    outcome = telemetry.Delivery(provider=provider_name if known else "unknown")
    provider: Provider | None = None
    try:
        provider = find_provider(request, provider_name)
        headers = header_map(request)
        provider.check_headers(headers)
        settings = request.app.state.settings
        body = await read_body(
            request, headers, settings.max_body_bytes, timeout=settings.body_read_timeout_seconds
        )
        now = time.time()
        await provider.authenticate(body, headers, now, query_string=request.scope["query_string"])
        payload = parse_object(body)
        events = provider.events(
            payload, body=body, headers=headers, received_at=datetime.fromtimestamp(now, UTC)
        )
        outcome.event_id = events[0].event_id if len(events) == 1 else f"{len(events)} events"
        new = await request.app.state.writer.store_many(events)
        outcome.outcome = "processed" if any(new) else "duplicate"
        answer = provider.accepted(events, new)
        outcome.status_code = answer.status_code
        return Response(answer.body, status_code=answer.status_code, media_type=answer.media_type)
    except ApiError as exc:
        if provider is not None and (status := provider.refusal_status(exc)) is not None:
            exc.status_code = status
        outcome.outcome = exc.code
        outcome.status_code = exc.status_code
        raise
    finally:
        telemetry.record_delivery(request, outcome, time.perf_counter() - started)


# The provider is read from the path by hand, not declared as a parameter: FastAPI's parameter
# machinery measured as a large share of the hot route's cost. `openapi_extra` still documents it.
PROVIDER_PARAMETER = {
    "name": "provider",
    "in": "path",
    "required": True,
    "description": "One of razorpay, stripe, paypal, standard, paystack, adyen, gocardless, paddle, square, "
    "checkout, mercadopago, cashfree",
    "schema": {"type": "string", "examples": ["razorpay"]},
}


# A URL pasted into a provider's dashboard with a trailing slash works too: providers do not follow
# redirects, and the app sends none (redirect_slashes=False).
@router.post("/webhooks/{provider}/", include_in_schema=False)
@router.post(
    "/webhooks/{provider}",
    response_model=WebhookAck,
    responses=WEBHOOK_RESPONSES,
    tags=["webhooks"],
    summary="Receive a provider's webhook delivery",
    openapi_extra={"parameters": [PROVIDER_PARAMETER]},
)
async def receive_webhook(request: Request) -> Response:
    """Verifies the provider's signature over the exact raw body, then stores the event once.

    A duplicate delivery is answered 200 with `"status": "duplicate"`, so the provider stops retrying.
    """
    return await receive(request, request.path_params["provider"])


@router.post("/webhook/payments/", include_in_schema=False)
@router.post(
    "/webhook/payments",
    response_model=WebhookAck,
    responses=WEBHOOK_RESPONSES,
    tags=["webhooks"],
    summary="Receive a Razorpay delivery (the prototype's route)",
)
async def receive_razorpay_legacy(request: Request) -> Response:
    """Same as `POST /webhooks/razorpay`."""
    return await receive(request, "razorpay")


def _webhook_provider(scope: Scope) -> str | None:
    if scope["method"] != "POST":
        return None
    path: str = scope["path"].removesuffix("/")  # a trailing slash, as the routes take it
    if path == "/webhook/payments":
        return "razorpay"
    name = path.removeprefix("/webhooks/")
    return name if name != path and name and "/" not in name else None


# Both routes declared above, served ahead of FastAPI's router by the table in main.py (api/hot_routes.py).
HOT_ROUTE = HotRoute("POST /webhooks/{provider}", match=_webhook_provider, handle=receive)
