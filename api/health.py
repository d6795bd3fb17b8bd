"""The operations routes: liveness, readiness and Prometheus metrics."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from api.auth import bearer, require_token
from database import ping
from errors import StorageUnavailable
from ops.metrics import exposition
from schemas import NOT_READY, UNAUTHORIZED, HealthOut

router = APIRouter()


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


async def metrics_access(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    """The read API's tokens guard /metrics too, unless METRICS_PUBLIC=true (a scraper without one)."""
    if not request.app.state.settings.metrics_public:
        await require_token(request, credentials)


@router.get(
    "/metrics",
    tags=["operations"],
    dependencies=[Depends(metrics_access)],
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format (OpenMetrics if asked)"},
        401: UNAUTHORIZED,
    },
    summary="Prometheus metrics",
)
def metrics(request: Request) -> Response:
    """Deliveries by provider and outcome, handling time, and whether the database answers. Needs a
    read API token when API_TOKENS is set, unless METRICS_PUBLIC=true."""
    # A plain `def`: FastAPI runs it in its thread pool, so the database ping never blocks the loop.
    body, content_type = exposition(engine=request.app.state.engine, accept=request.headers.get("accept", ""))
    return Response(body, headers={"Content-Type": content_type})
