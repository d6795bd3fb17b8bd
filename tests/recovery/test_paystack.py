"""Paystack recovery: transactions listed with their meta paging and verified one by one, stored as
observations when they differ from ours."""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from tests.recovery.conftest import Recoverer
from tests.recovery.fake_api import PAYSTACK_KEY, FakeProviders, paystack_transaction
from tests.support import paystack_headers

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)


def created(minute: int) -> str:
    return (SINCE + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_transactions_are_paged_by_meta_and_stored_when_they_differ(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    fake.paystack_transactions.extend(
        paystack_transaction(i, status="success", created_at=created(i)) for i in range(230)
    )

    report = Recoverer(client)("paystack", since=SINCE, until=UNTIL)

    assert (report.outcome, report.new, report.pages) == ("ok", 230, 3)
    calls = fake.requests_to("/transaction")
    assert [c.query["page"] for c in calls] == [["1"], ["2"], ["3"]]
    assert {c.headers["authorization"] for c in calls} == {f"Bearer {PAYSTACK_KEY}"}
    assert calls[0].query["from"] == ["2026-11-01T00:00:00Z"]
    assert calls[0].query["perPage"] == ["100"]
    assert client.get("/payments/re4lyvq3s30007").json()["status"] == "captured"


def test_a_captured_charge_is_not_moved_back_by_a_stale_pending_read(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    transaction = paystack_transaction(1, status="success", created_at=created(1))
    body = json.dumps({"event": "charge.success", "data": transaction}).encode()
    assert client.post("/webhooks/paystack", content=body, headers=paystack_headers(body)).status_code == 200
    fake.paystack_transactions.append({**transaction, "status": "ongoing"})

    report = Recoverer(client)("paystack", since=SINCE, until=UNTIL)

    assert report.changed == []
    assert client.get("/payments/re4lyvq3s30001").json()["status"] == "captured"


def test_a_wrong_key_names_paystack_secret_key(app: Callable[..., TestClient], fake: FakeProviders) -> None:
    client = app(paystack_secret_key=["sk_test_wrong"])

    report = Recoverer(client)("paystack", since=SINCE, until=UNTIL)

    assert report.outcome == "credentials_refused"
    assert "PAYSTACK_SECRET_KEY" in report.message
