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
    status: str | None = Field(description="Normalised status (see the README's lifecycle)", examples=["authorized"])
    provider_status: str | None = Field(description="The status exactly as the provider sent it")
    amount: int | None = Field(description="Minor units of `currency`", examples=[5000])
    currency: str | None = Field(examples=["INR"])
    occurred_at: datetime = Field(description="When the provider says it happened (UTC)")
    received_at: datetime = Field(description="When this service stored it (UTC)")


class PaymentOut(BaseModel):
    """A payment's current state, folded from its events in any delivery order."""

    model_config = ConfigDict(from_attributes=True)

    payment_id: str = Field(examples=["pay_014"])
    provider: str = Field(examples=["razorpay"])
    status: str | None = Field(examples=["captured"])
    provider_status: str | None = Field(examples=["captured"])
    amount: int | None = Field(description="Carried by the event that set the status", examples=[5000])
    currency: str | None = Field(examples=["INR"])
    first_seen_at: datetime
    last_event_at: datetime
    event_count: int = Field(examples=[2])


def _error(code: str, message: str, description: str) -> dict[str, Any]:
    return {
        "model": ErrorBody,
        "description": description,
        "content": {"application/json": {"example": {"error": {"code": code, "message": message}}}},
    }


WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error(
        "invalid_json",
        "body is not valid UTF-8 JSON",
        "`invalid_json` (not UTF-8 JSON) or `invalid_payload` (not an object, or a required field such as the "
        "event type is missing; the message names it)",
    ),
    403: _error(
        "signature_invalid",
        "X-Razorpay-Signature does not match the body",
        "`signature_missing`, `signature_invalid` (also for malformed signature headers) or `signature_expired` "
        "(timestamp outside SIGNATURE_TOLERANCE_SECONDS)",
    ),
    404: _error("unknown_provider", "no provider named 'acme'", "`unknown_provider` or `provider_not_configured`"),
    413: _error("payload_too_large", "body exceeds 1048576 bytes", "body over MAX_BODY_BYTES"),
    503: _error(
        "storage_unavailable",
        "storage is unavailable; retry later",
        "the event was not stored (database unreachable, locked or overloaded): the provider should retry",
    ),
}
