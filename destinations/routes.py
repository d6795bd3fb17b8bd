"""The destinations API, behind the read API's bearer tokens: the destinations' state, an event's
attempts, the dead list, replay, pause and resume. Database work runs on the reader's threads; a
replay, pause or resume wakes this process's dispatcher (another instance's polls the database)."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, Path, Request, Response
from sqlalchemy import Connection

from api import paging
from api.auth import require_token
from api.params import EventId, FeedAfter, Limit, ProviderName
from api.reads import on_connection
from destinations import operations
from destinations.file import NAME, Destination
from destinations.operations import ReplayFilter
from destinations.schemas import (
    BODY_NOT_JSON,
    DESTINATION_NOT_FOUND,
    AttemptOut,
    DeadOut,
    DestinationOut,
    PausedOut,
    ReplayOut,
)
from errors import DestinationNotFound, EventNotFound
from schemas import EVENT_NOT_FOUND, PAGED_LIST_HEADERS, READ_RESPONSES

router = APIRouter(dependencies=[Depends(require_token)], responses=READ_RESPONSES, tags=["destinations"])

DEAD: str = "d"  # the dead list's cursor kind: the delivery row id
T = TypeVar("T")

DestinationName = Annotated[
    str,
    Path(
        max_length=64,
        pattern=NAME,
        description="The destination's name in DESTINATIONS_FILE",
        examples=["orders"],
    ),
]


def _destination(request: Request, name: str) -> Destination:
    service = request.app.state.destinations
    destination: Destination | None = service.destinations.get(name) if service is not None else None
    if destination is None:
        raise DestinationNotFound(f"no destination named {name!r} in DESTINATIONS_FILE")
    return destination


async def _in_transaction(request: Request, work: Callable[[Connection], T]) -> T:
    def run(connection: Connection) -> T:
        with connection.begin():
            return work(connection)

    return await on_connection(request, run)


@router.get(
    "/destinations", response_model=list[DestinationOut], summary="Each destination's state and backlog"
)
async def list_destinations(request: Request) -> list[dict[str, Any]]:
    """`state` is `paused`, `failing` (its latest attempt failed) or `healthy`; `backlog` counts the events
    owed and not yet delivered. Empty without DESTINATIONS_FILE."""
    service = request.app.state.destinations
    if service is None:
        return []
    destinations = list(service.destinations.values())
    return await on_connection(request, lambda connection: operations.overview(connection, destinations))


@router.get(
    "/events/{provider}/{event_id:id}/attempts",
    response_model=list[AttemptOut],
    responses={404: EVENT_NOT_FOUND},
    summary="Every delivery attempt of one event, to every destination, oldest first",
)
async def event_attempts(request: Request, provider: ProviderName, event_id: EventId) -> list[dict[str, Any]]:
    def read(connection: Connection) -> list[dict[str, Any]] | None:
        tried = operations.attempts_of(connection, provider, event_id)
        if not tried and not operations.event_stored(connection, provider, event_id):
            return None
        return tried

    tried = await on_connection(request, read)
    if tried is None:
        raise EventNotFound(f"no event {event_id!r} from provider {provider!r}")
    return tried


@router.get(
    "/destinations/{name}/dead",
    response_model=list[DeadOut],
    responses={
        404: DESTINATION_NOT_FOUND,
        200: {"description": "A JSON array", "headers": PAGED_LIST_HEADERS},
    },
    summary="The events that went dead for a destination, in the order they were owed (cursor-paged)",
)
async def dead_events(
    request: Request, name: DestinationName, limit: Limit = 100, after: FeedAfter = None
) -> Response:
    destination = _destination(request, name)
    start = _dead_cursor(after)
    rows = await on_connection(
        request,
        lambda connection: operations.dead_page(connection, destination.name, after=start, limit=limit),
    )
    headers: dict[str, str] = {}
    if len(rows) > limit:
        rows = rows[:limit]
        headers["Link"] = paging.next_link(request, paging.encode(DEAD, rows[-1]["id"]))
    body = [DeadOut.model_validate(row).model_dump(mode="json") for row in rows]
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)


def _dead_cursor(after: str | None) -> int | None:
    if after is None:
        return None
    return paging.decode_row_id(after, DEAD)


@router.post(
    "/destinations/{name}/replay",
    response_model=ReplayOut,
    responses={400: BODY_NOT_JSON, 404: DESTINATION_NOT_FOUND},
    summary="Queue matching stored events again for a destination; answers how many",
)
async def replay(request: Request, name: DestinationName, wanted: ReplayFilter) -> ReplayOut:
    """Dead events (and, unless `dead_only`, delivered ones and matching events never sent to it) are
    sent again, with the same `webhook-id`. Posting the same filter again while its events are still
    pending queues nothing more and answers the running replay (`repeated: true`)."""
    destination = _destination(request, name)
    outcome = await _in_transaction(
        request, lambda connection: operations.replay(connection, destination, wanted, now=datetime.now(UTC))
    )
    request.app.state.destinations.wake_destination(name)
    return ReplayOut(replay_id=outcome.replay_id, queued=outcome.queued, repeated=outcome.repeated)


@router.post(
    "/destinations/{name}/pause",
    response_model=PausedOut,
    responses={404: DESTINATION_NOT_FOUND},
    summary="Stop delivering to a destination; its events are kept",
)
async def pause(request: Request, name: DestinationName) -> PausedOut:
    return await _set_paused(request, name, paused=True)


@router.post(
    "/destinations/{name}/resume",
    response_model=PausedOut,
    responses={404: DESTINATION_NOT_FOUND},
    summary="Deliver to a paused destination again, its kept events first",
)
async def resume(request: Request, name: DestinationName) -> PausedOut:
    return await _set_paused(request, name, paused=False)


async def _set_paused(request: Request, name: str, *, paused: bool) -> PausedOut:
    destination = _destination(request, name)
    await _in_transaction(
        request,
        lambda connection: operations.set_paused(
            connection, destination.name, paused=paused, now=datetime.now(UTC)
        ),
    )
    request.app.state.destinations.wake_destination(name)
    return PausedOut(name=name, paused=paused)
