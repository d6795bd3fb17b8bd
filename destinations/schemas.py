"""The destinations API's documented answers."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from schemas import ErrorBody

# A replay's filter is a JSON body: one that cannot be parsed is refused by FastAPI before validation.
BODY_NOT_JSON: dict[str, Any] = {
    "model": ErrorBody,
    "description": "`http_error`: the body is not JSON",
    "content": {
        "application/json": {
            "example": {"error": {"code": "http_error", "message": "There was an error parsing the body"}}
        }
    },
}
DESTINATION_NOT_FOUND: dict[str, Any] = {
    "model": ErrorBody,
    "description": "`destination_not_found`: DESTINATIONS_FILE declares no destination of this name",
    "content": {
        "application/json": {
            "example": {
                "error": {
                    "code": "destination_not_found",
                    "message": "no destination named 'orders' in DESTINATIONS_FILE",
                }
            }
        }
    },
}


class DestinationOut(BaseModel):
    name: str = Field(examples=["orders"])
    host: str = Field(
        description="The URL's host (the rest of the URL is not shown)", examples=["127.0.0.1:9000"]
    )
    state: str = Field(description="`healthy`, `failing` (its latest attempt failed) or `paused`")
    backlog: int = Field(description="Events owed and not yet delivered")
    dead: int = Field(description="Events that went dead for it (replay them with POST .../replay)")
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None = Field(
        description="The latest failure: `http 503`, `timeout`, `connect_error`..."
    )


class AttemptOut(BaseModel):
    destination: str
    attempt: int = Field(description="1 for the first attempt; replays continue the count")
    attempted_at: datetime
    outcome: str = Field(description="`delivered` or `failed`")
    status_code: int | None = Field(description="The destination's HTTP status, when it answered")
    error: str | None = Field(
        description="`http_status` (a non-2xx answer), `timeout`, `connect_error`, `connection_reset`, "
        "`tls_error` or `http_error`; null when delivered"
    )
    latency_ms: float
    response_body: str | None = Field(description="The first 1 KiB of the answer's body")


class DeadOut(BaseModel):
    provider: str
    event_id: str
    payment_id: str | None
    attempts: int = Field(description="Attempts made, every round included")
    dead_at: datetime
    last_status_code: int | None
    last_error: str | None


class ReplayOut(BaseModel):
    replay_id: int
    queued: int = Field(description="How many events were queued again")
    repeated: bool = Field(
        description="True when this filter's replay was still running: nothing was queued again"
    )


class PausedOut(BaseModel):
    name: str
    paused: bool
