"""What is published for a stored event: its subject, JSON payload and headers. Pure functions.

`{prefix}.events.{provider}.{event_type}` carries the normalised event; `{prefix}.state.{provider}`
one change of a payment's status. Every message has a Nats-Msg-Id the stream deduplicates on, so a
re-publish after a crash is stored once.
"""

import base64
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

_OUTSIDE_TOKEN = re.compile(r"[^A-Za-z0-9_-]")
# Header values are written as `name: value\r\n`: anything but printable ASCII is percent-encoded.
_OUTSIDE_HEADER = re.compile(r"[^\x20-\x7e]|%")


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A row of the events table, as the relay reads it."""

    row_id: int
    provider: str
    event_id: str
    event_type: str | None
    payment_id: str | None
    status: str | None
    provider_status: str | None
    amount: int | None
    currency: str | None
    occurred_at: datetime
    received_at: datetime
    raw_body: bytes | None  # read only when FORWARD_RAW_BODY is on


@dataclass(frozen=True, slots=True)
class Message:
    kind: str  # "event" or "state"
    subject: str
    payload: bytes
    headers: dict[str, str]

    @property
    def msg_id(self) -> str:
        return self.headers["Nats-Msg-Id"]


@dataclass(frozen=True, slots=True)
class StateChange:
    """A payment's status moved from `before` (None for its first status) to `after`, by `event`."""

    event: StoredEvent
    before: str | None
    after: str


def subject_token(value: str | None) -> str:
    """One subject token: every character outside [A-Za-z0-9_-] becomes `_`; nothing at all is `_`.
    So '.', '*', '>', spaces and non-ASCII never split a subject or act as wildcards."""
    return _OUTSIDE_TOKEN.sub("_", value or "") or "_"


def header_value(value: str) -> str:
    if value.isascii() and value.isprintable() and "%" not in value:
        return value  # the common case, without the pattern
    return _OUTSIDE_HEADER.sub(lambda match: "".join(f"%{b:02X}" for b in match[0].encode()), value)


def event_document(event: StoredEvent) -> bytes:
    """The normalised event as JSON: a NATS event message's payload, and the body POSTed to a
    destination."""
    body: dict[str, Any] = {
        "provider": event.provider,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "payment_id": event.payment_id,
        "status": event.status,
        "provider_status": event.provider_status,
        "amount": event.amount,
        "currency": event.currency,
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
    }
    if event.raw_body is not None:
        body["raw_body"] = base64.b64encode(event.raw_body).decode("ascii")
    return orjson.dumps(body)


def event_message(event: StoredEvent, *, prefix: str) -> Message:
    subject = f"{prefix}.events.{subject_token(event.provider)}.{subject_token(event.event_type)}"
    return Message(
        "event", subject, event_document(event), _headers(f"{event.provider}:{event.event_id}", event)
    )


def state_message(change: StateChange, *, prefix: str) -> Message:
    event = change.event
    body = {
        "payment_id": event.payment_id,
        "from": change.before,
        "to": change.after,
        "event_id": event.event_id,
        "occurred_at": event.occurred_at,
    }
    subject = f"{prefix}.state.{subject_token(event.provider)}"
    return Message(
        "state", subject, orjson.dumps(body), _headers(f"state:{event.provider}:{event.event_id}", event)
    )


def _headers(msg_id: str, event: StoredEvent) -> dict[str, str]:
    headers = {"Nats-Msg-Id": header_value(msg_id), "Webhook-Event-Row-Id": str(event.row_id)}
    if event.payment_id is not None:
        headers["Webhook-Payment-Id"] = header_value(event.payment_id)
    return headers
