"""The API's error vocabulary: one exception per documented error code, one JSON shape for all.

Every error the service answers with is `{"error": {"code": ..., "message": ...}}`, rendered here; the
handlers in main.py and the fast paths turn exceptions (FastAPI's own too) into that shape.
"""

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from starlette.responses import Response

from security import SignatureError

logger = logging.getLogger("webhooks")


class ApiError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class InvalidJson(ApiError):
    code = "invalid_json"


class InvalidPayload(ApiError):
    code = "invalid_payload"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


class RequestTimeout(ApiError):
    status_code = 408
    code = "request_timeout"


class ClientDisconnected(ApiError):
    """The client left before sending its whole body. Nobody receives the answer; the status (nginx's
    convention) only labels the delivery's log line and metrics, instead of a 500 with a traceback."""

    status_code = 499
    code = "client_disconnected"


class UnknownProvider(ApiError):
    status_code = 404
    code = "unknown_provider"


class ProviderNotConfigured(ApiError):
    status_code = 404
    code = "provider_not_configured"


class PaymentNotFound(ApiError):
    status_code = 404
    code = "payment_not_found"


class EventNotFound(ApiError):
    status_code = 404
    code = "event_not_found"


class Unauthorized(ApiError):
    status_code = 401
    code = "unauthorized"


class StorageUnavailable(ApiError):
    status_code = 503
    code = "storage_unavailable"


# --- rendering ------------------------------------------------------------------------------------------


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
