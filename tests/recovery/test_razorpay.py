"""Razorpay recovery: no events API, so each payment's state at fetch time is stored as an observation
when it differs from ours, and folds like any event: forward, never back."""

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from tests.recovery.conftest import Recoverer
from tests.recovery.fake_api import RAZORPAY_KEY, FakeProviders, razorpay_payment
from tests.support import razorpay_event, razorpay_headers

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)
AT = int(SINCE.timestamp()) + 3600


def deliver(client: TestClient, *, event: str, payment_id: str) -> None:
    body = json.dumps(
        razorpay_event(event=event, payment_id=payment_id, amount=50000, created_at=AT)
    ).encode()
    response = client.post("/webhooks/razorpay", content=body, headers=razorpay_headers(body))
    assert response.json()["status"] == "processed"


def state_of(client: TestClient, payment_id: str) -> str:
    return str(client.get(f"/payments/{payment_id}").json()["status"])


def test_a_recovered_capture_moves_a_stored_authorization_forward(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    deliver(client, event="payment.authorized", payment_id="pay_Forward0001")
    fake.razorpay_payments["pay_Forward0001"] = razorpay_payment(
        "pay_Forward0001", status="captured", created_at=AT
    )

    report = Recoverer(client)("razorpay", since=SINCE, until=UNTIL)

    assert (report.new, report.changed) == (1, [("pay_Forward0001", "authorized", "captured")])
    assert state_of(client, "pay_Forward0001") == "captured"
    history = client.get("/payments/pay_Forward0001/events").json()
    assert [(e["event_type"], e["origin"]) for e in history] == [
        ("payment.authorized", "webhook"),
        ("recovery.captured", "recovery"),
    ]
    detail = client.get("/events/razorpay/recovered:pay_Forward0001:captured").json()
    assert detail["id_derived"] is True
    assert json.loads(detail["raw_body"])["status"] == "captured"


def test_a_recovered_authorization_after_a_capture_does_not_move_it_back(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    deliver(client, event="payment.captured", payment_id="pay_Back0000001")
    # A stale read: the provider's list still says authorized. It differs, so it is stored, and the
    # fold keeps the capture.
    fake.razorpay_payments["pay_Back0000001"] = razorpay_payment(
        "pay_Back0000001", status="authorized", created_at=AT
    )

    report = Recoverer(client)("razorpay", since=SINCE, until=UNTIL)

    assert (report.new, report.changed) == (1, [])
    assert state_of(client, "pay_Back0000001") == "captured"


def test_payments_in_the_state_we_hold_are_left_alone_and_unknown_ones_are_stored(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    deliver(client, event="payment.captured", payment_id="pay_Same0000001")
    fake.razorpay_payments["pay_Same0000001"] = razorpay_payment(
        "pay_Same0000001", status="captured", created_at=AT
    )
    fake.razorpay_payments["pay_Never000001"] = razorpay_payment(
        "pay_Never000001", status="failed", created_at=AT
    )
    recover = Recoverer(client)

    first = recover("razorpay", since=SINCE, until=UNTIL)
    again = recover("razorpay", since=SINCE, until=UNTIL)

    assert (first.new, first.unchanged, first.changed) == (1, 1, [("pay_Never000001", None, "failed")])
    assert (again.new, again.unchanged, again.duplicate) == (0, 2, 0)
    assert state_of(client, "pay_Never000001") == "failed"


def test_the_list_is_read_with_from_to_count_and_skip_and_basic_auth(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    for i in range(250):
        payment_id = f"pay_Page{i:010d}"
        fake.razorpay_payments[payment_id] = razorpay_payment(
            payment_id, status="captured", created_at=AT + i
        )

    report = Recoverer(client)("razorpay", since=SINCE, until=UNTIL)

    assert (report.outcome, report.new, report.pages) == ("ok", 250, 3)
    calls = fake.requests_to("/v1/payments")
    assert [c.query["skip"] for c in calls] == [["0"], ["100"], ["200"]]
    credentials = base64.b64encode(":".join(RAZORPAY_KEY).encode()).decode()
    for call in calls:
        assert call.query["from"] == [str(int(SINCE.timestamp()))]
        assert call.query["to"] == [str(int(UNTIL.timestamp()))]
        assert call.query["count"] == ["100"]
        assert call.headers["authorization"] == f"Basic {credentials}"


def test_wrong_keys_stop_the_run_naming_both_settings(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app(razorpay_key_secret="not_the_secret")
    fake.razorpay_payments["pay_X"] = razorpay_payment("pay_X", status="captured", created_at=AT)

    report = Recoverer(client)("razorpay", since=SINCE, until=UNTIL)

    assert report.outcome == "credentials_refused"
    assert "RAZORPAY_KEY_ID and RAZORPAY_KEY_SECRET" in report.message
    assert "not_the_secret" not in report.message


def test_a_partial_refund_is_observed_as_partially_refunded(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    deliver(client, event="payment.captured", payment_id="pay_Partial0001")
    fake.razorpay_payments["pay_Partial0001"] = {
        **razorpay_payment("pay_Partial0001", status="captured", created_at=AT),
        "amount_refunded": 10000,
        "refund_status": "partial",
    }

    Recoverer(client)("razorpay", since=SINCE, until=UNTIL)

    assert state_of(client, "pay_Partial0001") == "partially_refunded"
