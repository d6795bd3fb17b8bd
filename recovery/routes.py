"""POST /payments/{payment_id}/recover: fetch one payment from its provider now, store what it says as
an observation (through EventWriter.store, like any delivery) and answer the state after the fold."""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select

from api.auth import require_token
from api.params import PaymentId, provider_choice
from api.reads import in_session
from errors import PaymentAmbiguous, PaymentNotFound, ProviderNotConfigured, RecoveryNotSupported
from models import Payment
from recovery import metrics
from recovery.periodic import PeriodicRecovery
from schemas import PAYMENT_AMBIGUOUS, PAYMENT_NOT_FOUND, READ_RESPONSES, ErrorBody, PaymentOut

router = APIRouter(dependencies=[Depends(require_token)], responses=READ_RESPONSES)

REFUSED = {
    "code": "provider_credentials_refused",
    "message": "GET /v1/payments/pay_014 was refused with 401: check RAZORPAY_KEY_ID and RAZORPAY_KEY_SECRET",
}
RECOVER_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {
        **PAYMENT_NOT_FOUND,
        "description": "`payment_not_found`, `provider_not_configured`, or `recovery_not_supported` (the "
        "provider has no API to read a payment back from: Standard Webhooks senders)",
    },
    409: PAYMENT_AMBIGUOUS,
    502: {
        "model": ErrorBody,
        "description": "`provider_credentials_refused` (the message names the setting), "
        "`provider_unavailable` (the provider kept answering 429 or 5xx, or could not be reached) or "
        "`recovery_failed` (reading the provider's API failed for another reason)",
        "content": {"application/json": {"example": {"error": REFUSED}}},
    },
}


@router.post(
    "/payments/{payment_id}/recover",
    response_model=PaymentOut,
    responses=RECOVER_RESPONSES,
    tags=["payments"],
    summary="Fetch a payment from its provider now, and answer its state after the fold",
)
async def recover_payment(
    request: Request,
    payment_id: PaymentId,
    provider: Annotated[
        str | None,
        provider_choice("The payment's provider; needed for a payment this service has never seen"),
    ] = None,
) -> Payment:
    """The provider's answer is stored as an event (`origin: recovery`) and folded like any other, so
    it moves the state forward and never back. 404 when the provider does not know the payment."""
    provider = provider or await _known_provider(request, payment_id)
    recovery: PeriodicRecovery = request.app.state.recovery
    source = recovery.sources.get(provider)
    if source is None:
        raise RecoveryNotSupported(f"{provider} has no API that recovery can read")
    if not source.configured:
        raise ProviderNotConfigured(f"recovery from {provider} needs {source.credential_settings}")
    event = await asyncio.to_thread(source.payment, payment_id)
    if event is None:
        raise PaymentNotFound(f"{provider} knows no payment {payment_id!r}")
    new = await request.app.state.writer.store(event)
    metrics.EVENTS.labels(provider, "new" if new else "duplicate").inc()
    stmt = select(Payment).where(Payment.provider == provider, Payment.payment_id == payment_id)
    payment: Payment = await in_session(request, lambda session: session.scalars(stmt).one())
    return payment


async def _known_provider(request: Request, payment_id: str) -> str:
    stmt = select(Payment.provider).where(Payment.payment_id == payment_id).limit(2)
    providers = await in_session(request, lambda session: list(session.scalars(stmt)))
    if not providers:
        raise PaymentNotFound(f"no events stored for payment {payment_id!r}; pass ?provider= to fetch it")
    if len(providers) > 1:
        names = ", ".join(sorted(providers))
        raise PaymentAmbiguous(
            f"payment {payment_id!r} exists at several providers ({names}); pass ?provider="
        )
    return providers[0]
