"""The FastAPI app: lifespan, health routes, the one error shape, and assembly of the routers.

Deliveries are handled in api/webhooks.py, the read API in api/reads.py, metrics in ops/metrics.py;
ARCHITECTURE.md follows one delivery and one read through the packages.
"""

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import health, reads, webhooks
from api.error_shape import error_response, internal_error, invalid_request, refusal
from api.hot_routes import HotRoutes
from api.reader import Reader
from config import Settings, get_settings
from console import routes as console
from database import make_engine
from destinations.routes import router as destinations_router
from destinations.service import Destinations
from errors import ApiError, DestinationsFileInvalid
from forwarding.service import Forwarding
from ingest.sinks import make_sinks
from ingest.store import EventWriter
from ops import metrics, migrate, telemetry
from providers import build_registry
from recovery.periodic import PeriodicRecovery
from recovery.routes import router as recovery_router
from schemas import ANY_ROUTE_ERRORS_TEXT

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
    # Forwarding to NATS (off without NATS_URL): the relay is woken after each commit.
    forwarding = Forwarding.configure(engine, settings)
    # Destinations (off without DESTINATIONS_FILE; a file that does not validate stops start-up here):
    # a second reader of the same outbox, woken after each commit too.
    try:
        destinations = Destinations.configure(engine, settings)
    except DestinationsFileInvalid:
        engine.dispose()
        stop_logging()
        raise
    wakers = [part.wake for part in (forwarding, destinations) if part is not None]
    writer = EventWriter(
        make_sinks(engine, settings),
        batch_max=settings.write_batch_max,
        queue_max=settings.write_queue_max,
        timeout=settings.store_timeout_seconds,
        on_commit=wake_all(wakers),
        on_batch=partial(metrics.observe_batch, engine.dialect.name),
    )
    await writer.start()
    if forwarding:
        await forwarding.start()
    if destinations:
        await destinations.start()
    app.state.destinations = destinations
    app.state.settings = settings
    app.state.engine = engine
    app.state.reader = Reader(
        engine,
        threads=settings.db_pool_size,
        connect_timeout=settings.db_connect_timeout_seconds,
        statement_timeout_ms=settings.statement_timeout_ms,
    )
    app.state.writer = writer
    app.state.providers = build_registry(settings)
    metrics.initialise(providers=app.state.providers)
    # Recovery (recovery/): the sources for POST /payments/{id}/recover, and RECOVERY_INTERVAL's loop;
    # after metrics.initialise, which makes PROMETHEUS_MULTIPROC_DIR that its counters write to.
    app.state.recovery = PeriodicRecovery(settings=settings, store=writer, engine=engine)
    await app.state.recovery.start()
    if not settings.api_tokens:
        logger.warning("API_TOKENS is not set: the read API is open to anyone who can reach this port")
    if published := settings.published_settings():
        # Development only (production refuses to start): say so once, loudly, naming what to set.
        logger.warning(
            "%s: a PUBLIC test secret is in effect (published in this repository): anyone can forge what "
            "it accepts; set a real value before this port is reachable by others",
            ", ".join(published),
        )
    # Everything loaded so far lives as long as the process: exempt it from the cyclic collector, whose
    # full passes over it were measured as the slowest deliveries (BENCHMARKS.md).
    gc.freeze()
    try:
        yield
    finally:
        await app.state.recovery.stop()
        await writer.stop()
        if forwarding:
            await forwarding.stop()
        if destinations:
            await destinations.stop()
        await app.state.reader.close()
        engine.dispose()
        stop_logging()


def wake_all(wakers: list[Callable[[], None]]) -> Callable[[], None] | None:
    """One on_commit for every reader of the outbox (forwarding's relay, destinations' intake)."""
    if len(wakers) <= 1:
        return wakers[0] if wakers else None

    def wake() -> None:
        for each in wakers:
            each()

    return wake


# --- errors: one JSON shape for everything -----------------------------------------------------------


async def api_error(_: Request, exc: ApiError) -> Response:
    return refusal(exc)


async def validation_error(_: Request, exc: RequestValidationError) -> Response:
    return invalid_request(exc.errors())


# The router's own refusals by status; any other is `http_error` (documented: schemas.ANY_ROUTE_ERRORS).
HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed"}


async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
    code = HTTP_ERROR_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))


async def unexpected_error(_: Request, exc: Exception) -> Response:
    return internal_error(exc)


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        # The service exports Prometheus metrics and its own log lines. FastAPI's OpenTelemetry bridge,
        # on by default, looks up the global OpenTelemetry providers on every request (a measurable
        # share of a delivery's CPU, BENCHMARKS.md) although none is configured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        title="Payment webhook receiver",
        summary="Verifies payment providers' webhooks, stores each event once, serves payment history.",
        description=ANY_ROUTE_ERRORS_TEXT,
        version="1.0.0",
        lifespan=lifespan,
        # No redirects: a provider does not follow one (a dashboard URL with a trailing slash would fail
        # silently), and Starlette built its Location from the Host header. Every path answers itself.
        redirect_slashes=False,
    )
    app.state.settings_override = settings
    # The hot routes, served ahead of the router (api/hot_routes.py): deliveries first, the hotter path.
    # The request id middleware is added last, so outermost: the id is set before either sees a request.
    app.add_middleware(HotRoutes, routes=[webhooks.HOT_ROUTE, reads.HISTORY_HOT_ROUTE])
    app.add_middleware(telemetry.RequestIdMiddleware)
    app.add_exception_handler(ApiError, api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected_error)
    app.include_router(webhooks.router)
    app.include_router(health.router)
    # Before the read routes: /events/{provider}/{id} would otherwise take .../attempts as part of the id.
    app.include_router(destinations_router)
    app.include_router(reads.router)
    app.include_router(console.router)
    app.include_router(recovery_router)
    return app


app = create_app()
