"""A payment's timeline: each event with the state the payment was in once it was stored.

The state after an event comes from payments/fold.py, the projection's own fold, over every event of
the payment received up to and including it (receipt order is the row id). The fold is a maximum, so
folding the previous winner with the next event gives the same state as folding the whole prefix.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from payments.events import NO_STATUS_RANK, STATUS_RANK
from payments.fold import fold


@dataclass(frozen=True, slots=True)
class TimelineRow:
    event: Any  # a listed event row (console/queries.py): the fold's facts, id, event_id, event_type
    arrival: int  # 1 for the first event received
    lag: timedelta  # received_at - occurred_at
    state_status: str | None
    state_amount: int | None
    state_currency: str | None
    changed_state: bool  # this event set the state the payment was in after it
    already_further: bool  # it carried a status but the state stayed where it was
    arrived_after: Any | None  # an event that happened later but was received before this one


def build(events: Sequence[Any]) -> list[TimelineRow]:
    """One row per event, in the order given (the provider's time, or receipt order)."""
    rows: dict[int, TimelineRow] = {}
    winner: tuple[int, Any] | None = None
    latest: Any | None = None  # the received-so-far event that happened last
    for arrival, event in enumerate(sorted(events, key=lambda e: e.id), start=1):
        state = fold([*([winner] if winner else []), (event.id, event)])[0]
        changed = state["status_event_id"] == event.id
        if changed:
            winner = (event.id, event)
        out_of_order = latest if latest is not None and latest.occurred_at > event.occurred_at else None
        if latest is None or event.occurred_at >= latest.occurred_at:
            latest = event
        rank = STATUS_RANK.get(event.status, NO_STATUS_RANK) if event.status else NO_STATUS_RANK
        rows[event.id] = TimelineRow(
            event=event,
            arrival=arrival,
            lag=event.received_at - event.occurred_at,
            state_status=state["status"],
            state_amount=state["amount"],
            state_currency=state["currency"],
            changed_state=changed,
            already_further=not changed and rank != NO_STATUS_RANK,
            arrived_after=out_of_order,
        )
    return [rows[event.id] for event in events]


def in_arrival_order(rows: list[TimelineRow]) -> list[TimelineRow]:
    return sorted(rows, key=lambda row: row.arrival)
