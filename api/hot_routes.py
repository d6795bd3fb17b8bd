"""The hot routes: a delivery and a payment's history, served straight from the ASGI scope.

FastAPI's per-request machinery (routing, dependency and parameter solving, its middleware layers) is
most of the CPU of a delivery and of a history read (BENCHMARKS.md). Each hot route is declared twice,
side by side in its module: as the documented FastAPI route (for /docs, and for any request the matcher
does not recognise exactly, such as one under a root_path) and as a `HotRoute` that calls the same
handler. main.py lists every `HotRoute` in one table, served by one `HotRoutes` middleware ahead of the
router; tests/api/test_hot_routes.py holds both paths to the same answers.
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.error_shape import internal_error, invalid_request, refusal
from errors import ApiError

Match = TypeVar("Match")


@dataclass(frozen=True, slots=True)
class HotRoute(Generic[Match]):
    """`route` names the documented route this serves, e.g. "POST /webhooks/{provider}". `match` gives
    what the handler needs from an HTTP scope of exactly that route, or None for any other scope."""

    route: str
    match: Callable[[Scope], Match | None]
    handle: Callable[[Request, Match], Awaitable[Response]]


class HotRoutes:
    """ASGI middleware: the first route of `routes` that matches serves the request, with errors in the
    service's one shape; anything else goes on to FastAPI."""

    def __init__(self, app: ASGIApp, routes: Sequence[HotRoute[Any]]) -> None:
        self.app = app
        self.routes = tuple(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self.routes:
                matched = route.match(scope)
                if matched is not None:
                    await self._serve(route, matched, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    @staticmethod
    async def _serve(route: HotRoute[Any], matched: Any, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await route.handle(Request(scope, receive), matched)
        except RequestValidationError as exc:
            response = invalid_request(exc.errors())
        except ApiError as exc:
            response = refusal(exc)
        except Exception as exc:
            response = internal_error(exc)
        await response(scope, receive, send)
