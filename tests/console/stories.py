"""The deliveries the console's tests show: one payment's story delivered out of order, and a hostile one."""

from typing import Any

from tests.support import razorpay_event

STORY_TIME = 1751885965  # 2025-07-07 10:59:25 UTC: authorized, then captured a minute later, refunded after
HOSTILE = '<script>alert(1)</script>"onmouseover=alert(2) x="'


def refund_processed(
    *, payment_id: str, event_id: str, created_at: int, amount: int = 5000
) -> dict[str, Any]:
    refund = {"id": f"rfnd_{event_id}", "payment_id": payment_id, "amount": amount, "currency": "INR"}
    payment = {"id": payment_id, "amount": 5000, "currency": "INR", "status": "refunded"}
    return {
        "id": event_id,
        "event": "refund.processed",
        "payload": {
            "refund": {"entity": {**refund, "status": "processed"}},
            "payment": {"entity": {**payment, "amount_refunded": amount}},
        },
        "created_at": created_at,
    }


def out_of_order_story(payment_id: str) -> list[dict[str, Any]]:
    """Delivered captured -> authorized -> refunded; they happened authorized -> captured -> refunded."""
    return [
        razorpay_event(
            event="payment.captured",
            payment_id=payment_id,
            created_at=STORY_TIME + 60,
            event_id=f"{payment_id}_cap",
        ),
        razorpay_event(
            event="payment.authorized",
            payment_id=payment_id,
            created_at=STORY_TIME,
            event_id=f"{payment_id}_auth",
        ),
        refund_processed(payment_id=payment_id, event_id=f"{payment_id}_rfnd", created_at=STORY_TIME + 120),
    ]


def hostile_event(payment_id: str = f"pay_{HOSTILE}") -> dict[str, Any]:
    """Script text and an attribute break-out in the payment id, the event type, the event id and the body."""
    payload = razorpay_event(event=f"payment.{HOSTILE}", payment_id=payment_id, event_id=f"evt_{HOSTILE}")
    payload["note"] = HOSTILE
    return payload
