"""The one JSON shape of every error: `{"error": {"code": ..., "message": ...}}` with its status.

The exception handlers in main.py and the hot routes (api/hot_routes.py) answer through these.
"""

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from starlette.responses import Response

from errors import ApiError

logger = logging.getLogger("webhooks")


def error_response(
    status_code: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


def refusal(exc: ApiError) -> Response:
    """The answer to a refused delivery or request: the documented status and code."""
    return error_response(exc.status_code, exc.code, exc.message, exc.headers)


def invalid_request(errors: Sequence[Any]) -> Response:
    """422 `validation_error` naming each bad parameter as `location.name: problem` (the first five).
    `errors` are pydantic's, with the location (`query`, `path`...) first in each `loc`."""
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in errors[:5]
    )
    return error_response(422, "validation_error", problems or "invalid request")


def internal_error(exc: Exception) -> Response:
    # Never a stack trace to the client; the type alone in the log (the message may quote a payload).
    logger.error("unhandled %s", type(exc).__name__)
    return error_response(500, "internal_error", "internal error")
