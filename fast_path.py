"""Serving a hot route straight from the ASGI scope, ahead of FastAPI's router.

FastAPI's per-request machinery (routing, dependency and parameter solving, its middleware layers)
measured as most of the CPU of a delivery and of a history read. A fast path recognises its route
exactly, calls the same handler as the documented FastAPI route, and renders errors in the same one
shape; anything it does not recognise exactly (a root_path prefix, say) falls through to the router,
which answers as always.
"""

from abc import ABC, abstractmethod
from typing import Generic, TypeVar

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from errors import ApiError, internal_error, invalid_request, refusal
from security import SignatureError

Match = TypeVar("Match")


class FastPath(ABC, Generic[Match]):
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @abstractmethod
    def match(self, scope: Scope) -> Match | None:
        """What the handler needs from an HTTP scope that is this route's; None for any other."""

    @abstractmethod
    async def handle(self, request: Request, matched: Match) -> Response: ...

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = self.match(scope) if scope["type"] == "http" else None
        if matched is None:
            await self.app(scope, receive, send)
            return
        try:
            response = await self.handle(Request(scope, receive), matched)
        except RequestValidationError as exc:
            response = invalid_request(exc.errors())
        except (ApiError, SignatureError) as exc:
            response = refusal(exc)
        except Exception as exc:
            response = internal_error(exc)
        await response(scope, receive, send)
