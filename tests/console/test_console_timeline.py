"""The timeline's state after each event and its markers, from payments/fold.py."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from console import format
from console.timeline import build, in_arrival_order

T0 = datetime(2025, 7, 7, 10, 59, 25, tzinfo=UTC)


@dataclass
class Row:
    id: int
    event_id: str
    event_type: str
    status: str | None
    occurred_at: datetime
    provider: str = "razorpay"
    payment_id: str = "pay_1"
    provider_status: str | None = None
    amount: int | None = 5000
    currency: str | None = "INR"
    received_at: datetime = T0 + timedelta(hours=1)


def story() -> list[Row]:
    """Received captured (id 1), authorized (id 2), refunded (id 3); listed in the provider's time."""
    return [
        Row(2, "e_auth", "payment.authorized", "authorized", T0),
        Row(1, "e_cap", "payment.captured", "captured", T0 + timedelta(minutes=1)),
        Row(3, "e_rfnd", "refund.processed", "refunded", T0 + timedelta(minutes=2)),
    ]


def test_state_after_each_event_is_the_fold_of_everything_received_up_to_it() -> None:
    rows = build(story())

    assert [(r.event.event_id, r.arrival, r.state_status) for r in rows] == [
        ("e_auth", 2, "captured"),
        ("e_cap", 1, "captured"),
        ("e_rfnd", 3, "refunded"),
    ]


def test_a_late_event_is_marked_out_of_order_and_unchanged() -> None:
    rows = {r.event.event_id: r for r in build(story())}

    assert rows["e_auth"].arrived_after is not None
    assert rows["e_auth"].arrived_after.event_id == "e_cap"
    assert rows["e_auth"].already_further and not rows["e_auth"].changed_state
    assert [rows[name].arrived_after for name in ("e_cap", "e_rfnd")] == [None, None]
    assert rows["e_rfnd"].changed_state and not rows["e_rfnd"].already_further


def test_arrival_order_shows_the_same_rows_in_order_of_receipt() -> None:
    rows = in_arrival_order(build(story()))

    assert [(r.event.event_id, r.state_status) for r in rows] == [
        ("e_cap", "captured"),
        ("e_auth", "captured"),
        ("e_rfnd", "refunded"),
    ]


def test_an_event_without_a_status_is_not_flagged_as_unchanged() -> None:
    rows = build(
        [Row(1, "e_cap", "payment.captured", "captured", T0), Row(2, "e_r", "refund.created", None, T0)]
    )

    assert [(r.state_status, r.already_further) for r in rows] == [("captured", False), ("captured", False)]


def test_amounts_are_shown_in_the_major_unit_exactly() -> None:
    assert [
        format.major_amount(5000, "INR"),
        format.major_amount(500, "JPY"),
        format.major_amount(1234, "KWD"),
        format.major_amount(123456789, "USD"),
    ] == ["50.00", "500", "1.234", "1,234,567.89"]


def test_signature_headers_are_redacted() -> None:
    shown = format.shown_headers({"x-razorpay-signature": "ab" * 32, "content-type": "application/json"})

    assert shown == [
        ("content-type", "application/json", False),
        ("x-razorpay-signature", "redacted (64 characters)", True),
    ]
