"""The FastAPI app: lifespan, the webhook route, health routes and the one error shape.

A delivery reads like the product: find the provider -> check its headers -> read the raw body (capped)
-> verify -> parse -> normalise -> store once -> answer.
"""

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

import metrics
import migrate
import queries
import telemetry
from config import Settings, get_settings
from database import make_engine, make_sessionmaker, ping
from errors import (
    ApiError,
    ClientDisconnected,
    InvalidJson,
    InvalidPayload,
    PayloadTooLarge,
    ProviderNotConfigured,
    RequestTimeout,
    StorageUnavailable,
    UnknownProvider,
)
from providers import Provider, build_registry
from schemas import NOT_READY, WEBHOOK_RESPONSES, HealthOut, WebhookAck
from security import SignatureError
from sinks import make_sinks
from store import EventWriter

logger = logging.getLogger("webhooks")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Tests hand their own Settings to create_app; a server reads the environment. Either way a
    # production misconfiguration stops start-up here, with a message naming the variable.
    settings: Settings = app.state.settings_override or get_settings()
    stop_logging = telemetry.configure_logging(settings)
    engine = make_engine(settings)
    # Alembic owns the schema: pending migrations are applied once even when workers start together.
    await run_in_threadpool(migrate.prepare_schema, settings)
    sinks = make_sinks(
        engine,
        concurrency=settings.write_concurrency,
        connect_timeout=settings.db_connect_timeout_seconds,
        statement_timeout_ms=int(settings.store_timeout_seconds * 1000),
    )
    writer = EventWriter(sinks, batch_max=settings.write_batch_max, queue_max=settings.write_queue_max)
    writer.start()
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.writer = writer
    app.state.providers = build_registry(settings)
    metrics.initialise(providers=app.state.providers)
    if not settings.api_tokens:
        logger.warning("API_TOKENS is not set: the read API is open to anyone who can reach this port")
    # Everything loaded so far lives as long as the process: exempt it from the cyclic collector, whose
    # full passes over it measured as the slowest deliveries (tens of milliseconds each).
    gc.freeze()
    try:
        yield
    finally:
        await writer.stop()
        engine.dispose()
        stop_logging()


router = APIRouter()


# --- errors: one JSON shape for everything -----------------------------------------------------------


def error_response(
    status_code: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


def refusal(exc: ApiError | SignatureError) -> Response:
    """The answer to a refused delivery or request: the documented status and code."""
    if isinstance(exc, SignatureError):
        return error_response(403, exc.code, str(exc))
    return error_response(exc.status_code, exc.code, exc.message, exc.headers)


async def api_error(_: Request, exc: ApiError) -> Response:
    return refusal(exc)


async def signature_error(_: Request, exc: SignatureError) -> Response:
    return refusal(exc)


async def validation_error(_: Request, exc: RequestValidationError) -> Response:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()[:5]
    )
    return error_response(422, "validation_error", problems or "invalid request")


async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))


async def unexpected_error(_: Request, exc: Exception) -> Response:
    # Never a stack trace to the client; the type alone in the log (the message may quote a payload).
    logger.error("unhandled %s", type(exc).__name__)
    return error_response(500, "internal_error", "internal error")


# --- the webhook route --------------------------------------------------------------------------------


def header_map(request: Request) -> dict[str, str]:
    """The delivery's headers as a plain dict, built once: adapters look several up, and Starlette's
    Headers scans the whole list on every lookup. Names arrive lower-case from the server; where a
    header repeats, the first one counts, as with Starlette's Headers."""
    headers: dict[str, str] = {}
    for name, value in request.scope["headers"]:
        headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return headers


async def read_body(request: Request, limit: int, *, timeout: float) -> bytes:
    """The raw body, refused as soon as it is known to exceed `limit`, without reading the rest, or
    when it has not all arrived within `timeout` seconds (however slowly it trickles in)."""
    too_large = PayloadTooLarge(f"body exceeds {limit} bytes", headers={"Connection": "close"})
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        message = f"body not received within {timeout:g} s"
        raise RequestTimeout(message, headers={"Connection": "close"}) from None
    except ClientDisconnect:
        raise ClientDisconnected("the client closed the connection before sending the whole body") from None
    return b"".join(chunks)


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
    try:
        provider = find_provider(request, provider_name)
        headers = header_map(request)
        provider.check_headers(headers)
        settings = request.app.state.settings
        body = await read_body(request, settings.max_body_bytes, timeout=settings.body_read_timeout_seconds)
        now = time.time()
        await provider.verify(body, headers, now)
        payload = parse_object(body)
        event = provider.normalise(
            payload, body=body, headers=headers, received_at=datetime.fromtimestamp(now, UTC)
        )
        outcome.event_id = event.event_id
        is_new = await request.app.state.writer.store(event, timeout=settings.store_timeout_seconds)
        outcome.outcome = "processed" if is_new else "duplicate"
        outcome.status_code = 200
        return Response(
            orjson.dumps({"status": outcome.outcome, "event_id": event.event_id}),
            media_type="application/json",
        )
    except (ApiError, SignatureError) as exc:
        outcome.outcome = exc.code
        outcome.status_code = exc.status_code if isinstance(exc, ApiError) else 403
        raise
    finally:
        telemetry.record_delivery(request, outcome, time.perf_counter() - started)


# The provider is read from the path by hand, not declared as a parameter: FastAPI's parameter
# machinery measured as a large share of the hot route's cost. `openapi_extra` still documents it.
PROVIDER_PARAMETER = {
    "name": "provider",
    "in": "path",
    "required": True,
    "description": "One of razorpay, stripe, paypal, standard, paystack",
    "schema": {"type": "string", "examples": ["razorpay"]},
}


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


# --- health -------------------------------------------------------------------------------------------


@router.get("/healthz", response_model=HealthOut, tags=["health"], summary="The process is alive")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    response_model=HealthOut,
    responses={503: NOT_READY},
    tags=["health"],
    summary="The database is reachable",
)
async def readyz(request: Request) -> HealthOut:
    try:
        await run_in_threadpool(ping, request.app.state.engine)
    except Exception as exc:
        raise StorageUnavailable("database is unreachable") from exc
    return HealthOut(status="ready")


class WebhookFastPath:
    """Serves webhook deliveries straight from the ASGI scope, ahead of FastAPI's router.

    Deliveries are the hot path, and FastAPI's per-request machinery (routing, dependency solving,
    its middleware layers) measured as most of a delivery's CPU cost. The handler is the same
    `receive()` that the documented FastAPI routes call, with the same answers; any path this does
    not recognise exactly (a trailing slash, a root_path prefix) simply falls through to them.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive_message: Receive, send: Send) -> None:
        provider = _webhook_provider(scope) if scope["type"] == "http" else None
        if provider is None:
            await self.app(scope, receive_message, send)
            return
        try:
            response = await receive(Request(scope, receive_message), provider)
        except (ApiError, SignatureError) as exc:
            response = refusal(exc)
        except Exception as exc:
            response = await unexpected_error(Request(scope), exc)
        await response(scope, receive_message, send)


def _webhook_provider(scope: Scope) -> str | None:
    if scope["method"] != "POST":
        return None
    path: str = scope["path"]
    if path == "/webhook/payments":
        return "razorpay"
    name = path.removeprefix("/webhooks/")
    return name if name != path and name and "/" not in name else None


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        title="Payment webhook receiver",
        summary="Verifies payment providers' webhooks, stores each event once, serves payment history.",
        version="1.0.0",
        lifespan=lifespan,
    )
    app.state.settings_override = settings
    # Added last, so outermost: the request id is set before the fast path or FastAPI sees the request.
    app.add_middleware(WebhookFastPath)
    app.add_middleware(telemetry.RequestIdMiddleware)
    app.add_exception_handler(ApiError, api_error)  # type: ignore[arg-type]
    app.add_exception_handler(SignatureError, signature_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected_error)
    app.include_router(router)
    app.include_router(queries.router)
    app.include_router(metrics.router)
    return app


app = create_app()
