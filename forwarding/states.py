"""Which stored events change a payment's published status, by the projection's own order
(payments.fold.status_order): a late or repeated event that does not move the status changes nothing,
and the status's rank never goes down."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from forwarding.messages import StateChange, StoredEvent
from payments.events import NO_STATUS_RANK
from payments.fold import status_order

PaymentKey = tuple[str, str]  # (provider, payment_id)


@dataclass(frozen=True, slots=True)
class PaymentState:
    status: str | None
    order: tuple[int, datetime, int]  # status_order of the event that set it


def step(
    events: Iterable[StoredEvent], known: Mapping[PaymentKey, PaymentState]
) -> tuple[list[StateChange], dict[PaymentKey, PaymentState]]:
    """The status changes `events` make, in order, after the states `known`, and the states they leave
    for the payments they touched."""
    changes: list[StateChange] = []
    moved: dict[PaymentKey, PaymentState] = {}
    for event in events:
        if event.payment_id is None:
            continue
        order = status_order(event.row_id, event)
        if order[0] == NO_STATUS_RANK or event.status is None:
            continue
        key = (event.provider, event.payment_id)
        current = moved.get(key) or known.get(key)
        if current is not None and order <= current.order:
            continue
        moved[key] = PaymentState(event.status, order)
        if current is None or current.status != event.status:
            changes.append(StateChange(event, None if current is None else current.status, event.status))
    return changes, moved
