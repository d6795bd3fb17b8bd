"""Pydantic models of what the API answers, with examples for the OpenAPI document."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    code: str = Field(examples=["signature_invalid"])
    message: str = Field(examples=["X-Razorpay-Signature does not match the body"])


class ErrorBody(BaseModel):
    error: ErrorDetail


class WebhookAck(BaseModel):
    status: Literal["processed", "duplicate"]
    event_id: str = Field(examples=["evt_auth_014"])


class HealthOut(BaseModel):
    status: str = Field(examples=["ok"])


class EventOut(BaseModel):
    """One stored event as the history lists it."""

    model_config = ConfigDict(from_attributes=True)

    event_id: str = Field(examples=["evt_auth_014"])
    provider: str = Field(examples=["razorpay"])
    event_type: str | None = Field(examples=["payment.authorized"])
    payment_id: str | None = Field(examples=["pay_014"])
    status: str | None = Field(
        description="Normalised status (see the README's lifecycle)", examples=["authorized"]
    )
    provider_status: str | None = Field(
        description="The status exactly as the provider sent it", examples=["authorized"]
    )
    amount: int | None = Field(description="Minor units of `currency`", examples=[5000])
    currency: str | None = Field(examples=["INR"])
    occurred_at: datetime = Field(
        description="When the provider says it happened (UTC)", examples=["2025-07-07T10:59:25Z"]
    )
    received_at: datetime = Field(
        description="When this service stored it (UTC)", examples=["2025-07-07T10:59:26.412907Z"]
    )
    origin: Literal["webhook", "recovery"] = Field(
        description="How it arrived: `webhook` (a signed delivery) or `recovery` (read back from the "
        "provider's API by a recovery run)",
        examples=["webhook"],
    )


class EventDetail(EventOut):
    """One stored event in full: the history's fields plus the delivery exactly as it arrived."""

    id_derived: bool = Field(
        description="True when the provider sent no event id and `event_id` is the body's SHA-256",
        examples=[False],
    )
    raw_body: str = Field(
        description="The body byte for byte: its UTF-8 text, or base64 when `raw_body_encoding` is `base64`",
        examples=['{"event":"payment.authorized","payload":{"payment":{"entity":{"id":"pay_014"}}}}'],
    )
    raw_body_encoding: Literal["utf-8", "base64"] = Field(
        description="`base64` only when the stored bytes are not valid UTF-8", examples=["utf-8"]
    )
    headers: dict[str, str] = Field(
        description="The delivery headers kept as evidence (signature, event id, content type, request id); "
        "signature headers are shown as `[redacted]`",
        examples=[{"content-type": "application/json", "x-razorpay-signature": "[redacted]"}],
    )
    delivery_count: int = Field(
        description="How many authentic deliveries of this event arrived over HTTP: the first and every "
        "duplicate since. A delivery refused as a reused signature does not count, nor does a copy read "
        "back by recovery, so a recovered event shows 0 until its webhook arrives",
        examples=[2],
    )
    last_delivered_at: datetime | None = Field(
        description="When the latest of those deliveries was received (UTC); null while there has been none",
        examples=["2025-07-07T11:04:26.103512Z"],
    )


class PaymentOut(BaseModel):
    """A payment's current state, folded from its events in any delivery order."""

    model_config = ConfigDict(from_attributes=True)

    payment_id: str = Field(examples=["pay_014"])
    provider: str = Field(examples=["razorpay"])
    status: str | None = Field(
        description="Normalised status: the highest-ranked one its events reported (see the lifecycle)",
        examples=["captured"],
    )
    provider_status: str | None = Field(
        description="The provider's own status word, from the event that set `status`", examples=["captured"]
    )
    amount: int | None = Field(
        description="Minor units, carried by the event that set the status", examples=[5000]
    )
    currency: str | None = Field(description="From the event that set the status", examples=["INR"])
    first_seen_at: datetime = Field(
        description="When this service stored the payment's first event (UTC)",
        examples=["2025-07-07T10:59:26.412907Z"],
    )
    last_event_at: datetime = Field(
        description="The latest `occurred_at` among its events (UTC)", examples=["2025-07-07T11:01:25Z"]
    )
    event_count: int = Field(
        description="Distinct events stored for it (duplicates are not counted)", examples=[2]
    )


def _error(code: str, message: str, description: str) -> dict[str, Any]:
    return {
        "model": ErrorBody,
        "description": description,
        "content": {"application/json": {"example": {"error": {"code": code, "message": message}}}},
    }


# Answers any request can get, whatever its route: listed in /docs (the app's description) as in the
# README's troubleshooting table.
ANY_ROUTE_ERRORS = {
    "not_found": (404, "no route has this path; a trailing slash is part of the path, and nothing redirects"),
    "method_not_allowed": (405, "the route does not take this method (webhooks are POST, reads GET)"),
    "http_error": ("4xx", "any other refusal by the HTTP framework; the message says which"),
    "internal_error": (500, "a fault of the service, logged by exception type; report it"),
}
ANY_ROUTE_ERRORS_TEXT = (
    'Every error is `{"error": {"code": "...", "message": "..."}}`. Besides each route\'s own answers, any '
    "request can get:\n\n"
    + "\n".join(f"- `{status}` `{code}`: {meaning}" for code, (status, meaning) in ANY_ROUTE_ERRORS.items())
)
INTERNAL_ERROR = _error("internal_error", "internal error", "`internal_error`: a fault of the service")

WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error(
        "invalid_json",
        "body is not valid UTF-8 JSON",
        "`invalid_json` (not UTF-8 JSON) or `invalid_payload` (not an object, or a required field such as "
        "the event type is missing; the message names it)",
    ),
    403: _error(
        "signature_invalid",
        "X-Razorpay-Signature does not match the body",
        "`signature_missing`, `signature_invalid` (also for malformed signature headers, and for a PayPal "
        "transmission id already accepted with another body) or `signature_expired` (timestamp outside "
        "SIGNATURE_TOLERANCE_SECONDS)",
    ),
    404: _error(
        "unknown_provider", "no provider named 'acme'", "`unknown_provider` or `provider_not_configured`"
    ),
    408: _error(
        "request_timeout",
        "body not received within 10 s",
        "the body did not all arrive in BODY_READ_TIMEOUT_SECONDS",
    ),
    413: _error("payload_too_large", "body exceeds 1048576 bytes", "body over MAX_BODY_BYTES"),
    503: _error(
        "storage_unavailable",
        "storage is unavailable; retry later",
        "the event was not stored (database unreachable, locked or overloaded): the provider should retry",
    ),
    500: INTERNAL_ERROR,
}


UNAUTHORIZED = {
    **_error(
        "unauthorized",
        "this route needs an Authorization: Bearer <token> header",
        "`unauthorized`: API_TOKENS is set and the request has no `Authorization: Bearer` header, or its "
        "token is not one of them",
    ),
    "headers": {
        "WWW-Authenticate": {
            "description": '`Bearer`, or `Bearer error="invalid_token"` when a token was sent but is wrong',
            "schema": {"type": "string"},
        }
    },
}

# Every read route can answer these; routes add their own 404/409 next to them.
READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: UNAUTHORIZED,
    422: _error(
        "validation_error",
        "query.limit: Input should be less than or equal to 1000",
        "`validation_error`: a parameter is malformed or out of range (over-long or control characters in an "
        "id, a cursor this API did not issue, `limit` outside 1..1000, a date that is not ISO 8601); the "
        "message names the parameter",
    ),
    503: _error(
        "storage_unavailable",
        "storage is unavailable; retry later",
        "the database is unreachable or did not answer in time",
    ),
    500: INTERNAL_ERROR,
}

PAYMENT_NOT_FOUND = _error(
    "payment_not_found",
    "no events stored for payment 'pay_404'",
    "`payment_not_found`: no stored event names this payment",
)
PAYMENT_AMBIGUOUS = _error(
    "payment_ambiguous",
    "payment 'pay_014' exists at several providers (razorpay, stripe); pass ?provider=",
    "`payment_ambiguous`: the id is stored for more than one provider and no `provider` was given",
)
EVENT_NOT_FOUND = _error(
    "event_not_found", "no event 'evt_404' from provider 'razorpay'", "`event_not_found`: nothing stored"
)

# The 200 of a paged list: the body is a plain JSON array; the next page's address is in a header.
NOT_READY = _error(
    "storage_unavailable", "database is unreachable", "the database does not answer: take this instance out"
)
PAGED_LIST_HEADERS: dict[str, Any] = {
    "Link": {
        "description": "Present only when more rows remain: `</payments/pay_014/events?limit=100&after=...>; "
        'rel="next"`, the same query with the next page\'s cursor',
        "schema": {"type": "string"},
    }
}
