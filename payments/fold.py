"""The payments fold in plain Python: each payment's current state from its newly stored events.

Beside payments/projection.py, which holds its SQL twin and the upserts, since SQLite's writer process
(ingest/sqlite_writer.py) runs this fold and imports nothing that needs SQLAlchemy.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from payments.events import NO_STATUS_RANK, STATUS_RANK

# What the fold reads of an event, besides its row id (EventFacts).
FACTS = (
    "provider",
    "payment_id",
    "status",
    "provider_status",
    "amount",
    "currency",
    "occurred_at",
    "received_at",
)


class EventFacts(Protocol):
    """What the fold reads from an event: a NormalizedEvent and a row of the events table both fit."""

    @property
    def provider(self) -> str: ...
    @property
    def payment_id(self) -> str | None: ...
    @property
    def status(self) -> str | None: ...
    @property
    def provider_status(self) -> str | None: ...
    @property
    def amount(self) -> int | None: ...
    @property
    def currency(self) -> str | None: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def received_at(self) -> datetime: ...


def _rank(status: str | None) -> int:
    # A status outside the vocabulary (say, stored before a rename) ranks as "no status" instead of
    # stopping the fold: it never moves a payment's state, and a rebuild never fails on old rows.
    return NO_STATUS_RANK if status is None else STATUS_RANK.get(status, NO_STATUS_RANK)


def status_order(row_id: int, event: EventFacts) -> tuple[int, datetime, int]:
    """Which of two events sets a payment's status: the greater (rank, occurred_at, row id). The fold
    below, and the state messages forwarded to NATS (forwarding/states.py), both follow it."""
    return (_rank(event.status), event.occurred_at, row_id)


def fold(stored: Iterable[tuple[int, EventFacts]]) -> list[dict[str, Any]]:
    """One projection row per payment in `stored` ((row id, event) pairs of newly stored events)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for row_id, event in stored:
        if event.payment_id is None:
            continue
        key = (event.provider, event.payment_id)
        order = status_order(row_id, event)
        row = rows.setdefault(
            key,
            {
                "provider": event.provider,
                "payment_id": event.payment_id,
                "first_seen_at": event.received_at,
                "last_event_at": event.occurred_at,
                "event_count": 0,
            },
        )
        row["event_count"] += 1
        row["first_seen_at"] = min(row["first_seen_at"], event.received_at)
        row["last_event_at"] = max(row["last_event_at"], event.occurred_at)
        current = (row.get("status_rank"), row.get("status_occurred_at"), row.get("status_event_id"))
        if "status_rank" in row and order <= current:
            continue
        row.update(
            status=event.status if order[0] != NO_STATUS_RANK else None,
            provider_status=event.provider_status,
            amount=event.amount,
            currency=event.currency,
            status_rank=order[0],
            status_occurred_at=order[1],
            status_event_id=order[2],
        )
    # Sorted keys: two processes upserting overlapping payments lock rows in the same order, so they
    # wait for each other instead of deadlocking.
    return [rows[key] for key in sorted(rows)]
