"""The read API for ops: payment history and state. Plain `def` routes: FastAPI runs them in its
thread pool, so a database read never blocks the event loop; one Session per request."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from errors import PaymentNotFound
from models import Event, Payment
from schemas import ErrorBody, EventOut, PaymentOut

PaymentId = Annotated[str, Path(min_length=1, max_length=255, examples=["pay_014"])]


def get_db(request: Request) -> Iterator[Session]:
    with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]

router = APIRouter(tags=["payments"])


@router.get(
    "/payments/{payment_id}/events",
    response_model=list[EventOut],
    summary="A payment's events, oldest first",
)
def payment_events(payment_id: PaymentId, session: SessionDep) -> list[Event]:
    """Chronological by `occurred_at`, ties in order of receipt. An unknown payment gives `[]`."""
    stmt = select(Event).where(Event.payment_id == payment_id).order_by(Event.occurred_at, Event.id)
    return list(session.scalars(stmt))


@router.get(
    "/payments/{payment_id}",
    response_model=PaymentOut,
    responses={404: {"model": ErrorBody, "description": "payment_not_found"}},
    summary="A payment's current state",
)
def payment_state(payment_id: PaymentId, session: SessionDep) -> Payment:
    payment = session.scalars(select(Payment).where(Payment.payment_id == payment_id).limit(1)).first()
    if payment is None:
        raise PaymentNotFound(f"no events stored for payment {payment_id!r}")
    return payment
