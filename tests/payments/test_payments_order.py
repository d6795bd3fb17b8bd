"""A payment's state does not depend on delivery order: shuffled, duplicated streams of real-signed
Razorpay deliveries fold to the same state and history as the in-order stream, and a rebuild from the
events table gives the same projection as the live updates did. Both databases."""

import itertools
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, select

from database import normalise_url
from models import Payment
from payments import projection
from payments.events import STATUS_RANK
from tests.conftest import fixture_path
from tests.support import razorpay_delivery, razorpay_event, walk

BASE_TIME = 1751885965
PAYMENT_AMOUNT = 5000

# What each kind of delivery says about the payment, as Razorpay's docs describe the events. The
# refund kinds differ only in how much of the payment they refund.
STATUS_OF_KIND = {
    "payment.authorized": "authorized",
    "payment.captured": "captured",
    "payment.failed": "failed",
    "order.paid": "captured",
    "refund.created": None,
    "refund.processed.partial": "partially_refunded",
    "refund.processed.full": "refunded",
    "payment.dispute.created": "disputed",
    "payment.dispute.won": "dispute_won",
    "payment.dispute.lost": "dispute_lost",
}
_ids = itertools.count(1)


@dataclass(frozen=True)
class Spec:
    """One event of one payment: what happened, when (seconds after BASE_TIME), for how much."""

    kind: str
    offset: int
    amount: int

    @property
    def status(self) -> str | None:
        return STATUS_OF_KIND[self.kind]

    @property
    def provider_status(self) -> str:
        if self.kind.startswith("refund."):
            return "created" if self.kind == "refund.created" else "processed"
        if self.kind.startswith("payment.dispute."):
            return {"created": "open", "won": "won", "lost": "lost"}[self.kind.rsplit(".", 1)[-1]]
        return "captured" if self.kind == "order.paid" else self.kind.rsplit(".", 1)[-1]


def razorpay_payload(spec: Spec, *, payment_id: str, event_id: str) -> dict[str, Any]:
    created_at = BASE_TIME + spec.offset
    payment = {"id": payment_id, "amount": PAYMENT_AMOUNT, "currency": "INR", "status": "captured"}
    if spec.kind.startswith("refund."):
        event_type = spec.kind.removesuffix(".partial").removesuffix(".full")
        refund = {
            "id": f"rfnd_{event_id}",
            "payment_id": payment_id,
            "amount": spec.amount,
            "currency": "INR",
            "status": spec.provider_status,
        }
        payment |= {"amount_refunded": spec.amount, "status": "refunded"}
        body = {"refund": {"entity": refund}, "payment": {"entity": payment}}
        return {"id": event_id, "event": event_type, "payload": body, "created_at": created_at}
    if spec.kind.startswith("payment.dispute."):
        dispute = {
            "id": f"disp_{event_id}",
            "payment_id": payment_id,
            "amount": spec.amount,
            "currency": "INR",
            "status": spec.provider_status,
        }
        body = {"dispute": {"entity": dispute}, "payment": {"entity": payment}}
        return {"id": event_id, "event": spec.kind, "payload": body, "created_at": created_at}
    return razorpay_event(
        event=spec.kind,
        payment_id=payment_id,
        status=spec.provider_status,
        amount=spec.amount,
        created_at=created_at,
        event_id=event_id,
    )


@st.composite
def payment_specs(draw: st.DrawFn) -> list[Spec]:
    """One payment's events, each at a distinct time: with (rank, time) unique, no tie is left to the
    receipt order, so every delivery order must give the same state."""
    offsets = draw(st.lists(st.integers(0, 3_600), min_size=1, max_size=5, unique=True))
    specs = []
    for offset in sorted(offsets):
        kind = draw(st.sampled_from(sorted(STATUS_OF_KIND)))
        if kind == "refund.processed.partial":
            amount = 1_000
        elif kind == "refund.processed.full":
            amount = PAYMENT_AMOUNT
        else:
            amount = draw(st.sampled_from([PAYMENT_AMOUNT, PAYMENT_AMOUNT + 100]))
        specs.append(Spec(kind, offset, amount))
    return specs


def deliver(client: TestClient, body: bytes, headers: dict[str, str]) -> None:
    response = client.post("/webhooks/razorpay", content=body, headers=headers)
    assert response.status_code == 200, response.text


def state(client: TestClient, payment_id: str) -> dict[str, Any]:
    response = client.get(f"/payments/{payment_id}")
    assert response.status_code == 200, response.text
    return {name: value for name, value in response.json().items() if name != "payment_id"}


def history(client: TestClient, payment_id: str, *, limit: int) -> list[tuple[Any, ...]]:
    rows = walk(client, f"/payments/{payment_id}/events?limit={limit}")
    return [
        (r["event_type"], r["status"], r["provider_status"], r["amount"], r["currency"], r["occurred_at"])
        for r in rows
    ]


def expected_state(specs: list[Spec]) -> dict[str, Any]:
    """The lifecycle, written independently of payments/projection.py: the highest (rank, time) sets
    the status."""
    decisive = max(specs, key=lambda spec: (STATUS_RANK.get(spec.status or "", -1), spec.offset))
    last = datetime.fromtimestamp(BASE_TIME + max(spec.offset for spec in specs), UTC)
    return {
        "provider": "razorpay",
        "status": decisive.status,
        "provider_status": decisive.provider_status,
        "amount": decisive.amount,
        "currency": "INR",
        "last_event_at": last.isoformat().replace("+00:00", "Z"),
        "event_count": len(specs),
    }


def projection_rows(database_url: str) -> list[tuple[Any, ...]]:
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(Payment.__table__).order_by(Payment.provider, Payment.payment_id)
            )
            return [tuple(row) for row in rows]
    finally:
        engine.dispose()


def rebuilt_rows(database_url: str) -> list[tuple[Any, ...]]:
    """The projection a rebuild computes, in a transaction that is rolled back."""
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as connection, connection.begin() as transaction:
            projection.rebuild(connection)
            rows = connection.execute(
                select(Payment.__table__).order_by(Payment.provider, Payment.payment_id)
            )
            result = [tuple(row) for row in rows]
            transaction.rollback()
            return result
    finally:
        engine.dispose()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payments=st.lists(payment_specs(), min_size=1, max_size=3), data=st.data())
def test_any_delivery_order_with_duplicates_folds_to_the_in_order_state_and_history(
    client: TestClient, database_url: str, payments: list[list[Spec]], data: st.DataObject
) -> None:
    run = f"{uuid.uuid4().hex[:8]}"
    deliveries: dict[str, list[tuple[int, int, bytes, dict[str, str]]]] = {"inorder": [], "shuffled": []}
    for stream, entries in deliveries.items():
        for number, specs in enumerate(payments):
            for spec in specs:
                payment_id, event_id = f"pay_{run}_{stream}_{number}", f"evt_{run}_{stream}_{next(_ids)}"
                body, headers = razorpay_delivery(
                    razorpay_payload(spec, payment_id=payment_id, event_id=event_id)
                )
                entries.append((spec.offset, number, body, headers))
    in_order = sorted(deliveries["inorder"], key=lambda entry: entry[:2])
    again = data.draw(st.lists(st.sampled_from(deliveries["shuffled"]), max_size=4), label="redelivered")
    shuffled = data.draw(st.permutations(deliveries["shuffled"] + again), label="shuffled")

    for _, _, body, headers in [*in_order, *shuffled]:
        deliver(client, body, headers)

    for number, specs in enumerate(payments):
        reference, candidate = f"pay_{run}_inorder_{number}", f"pay_{run}_shuffled_{number}"
        reference_state, candidate_state = state(client, reference), state(client, candidate)
        assert {k: v for k, v in reference_state.items() if k != "first_seen_at"} == expected_state(specs)
        assert {k: v for k, v in candidate_state.items() if k != "first_seen_at"} == expected_state(specs)
        # Walked two at a time: paging must neither skip nor repeat an event.
        assert history(client, candidate, limit=2) == history(client, reference, limit=1000)
        assert [row[0] for row in history(client, reference, limit=1000)] == [
            json.loads(entry[2])["event"] for entry in in_order if entry[1] == number
        ]
        # first_seen_at is when this service stored the first event: the earliest receipt in the history.
        received = [row["received_at"] for row in walk(client, f"/payments/{candidate}/events")]
        assert candidate_state["first_seen_at"] == min(received, key=datetime.fromisoformat)
    assert rebuilt_rows(database_url) == projection_rows(database_url)


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        # Razorpay: payment.failed can arrive before payment.captured, after a late authorisation.
        (["payment.failed", "payment.authorized", "payment.captured"], "captured"),
        (["payment.failed", "payment.captured", "payment.authorized"], "captured"),
        (["payment.captured", "payment.failed", "payment.authorized"], "captured"),
        # A late payment.authorized never moves a captured payment back.
        (["payment.authorized", "payment.captured", "payment.authorized.late"], "captured"),
        (["payment.captured", "payment.authorized"], "captured"),
        # A failure then a late authorisation: failed is not final.
        (["payment.failed", "payment.authorized"], "authorized"),
        (["payment.authorized", "payment.failed"], "authorized"),
    ],
)
def test_razorpay_lifecycle_cases(client: TestClient, order: list[str], expected: str) -> None:
    payment_id = f"pay_{uuid.uuid4().hex[:10]}"
    # Provider times follow the real sequence (fail, late authorisation, capture); delivery is `order`.
    times = {
        "payment.failed": 0,
        "payment.authorized": 60,
        "payment.captured": 120,
        "payment.authorized.late": 30,
    }
    for kind in order:
        event = kind.removesuffix(".late")
        deliver(
            client,
            *razorpay_delivery(
                razorpay_event(
                    event=event,
                    payment_id=payment_id,
                    created_at=BASE_TIME + times[kind],
                    event_id=f"evt_{next(_ids)}",
                )
            ),
        )

    body = client.get(f"/payments/{payment_id}").json()

    assert (body["status"], body["provider_status"], body["event_count"]) == (expected, expected, len(order))


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        # Equal rank: the later provider time wins, whichever arrived first.
        ((100, 5_000), (200, 6_000), 6_000),
        ((200, 6_000), (100, 5_000), 6_000),
        # Equal rank and equal time: the later receipt wins.
        ((100, 5_000), (100, 6_000), 6_000),
        ((100, 6_000), (100, 5_000), 5_000),
    ],
)
def test_ties_break_by_occurred_at_then_receipt_order(
    client: TestClient, first: tuple[int, int], second: tuple[int, int], winner: int
) -> None:
    payment_id = f"pay_{uuid.uuid4().hex[:10]}"
    for offset, amount in (first, second):
        deliver(
            client,
            *razorpay_delivery(
                razorpay_event(
                    event="payment.captured",
                    payment_id=payment_id,
                    amount=amount,
                    created_at=BASE_TIME + offset,
                    event_id=f"evt_{next(_ids)}",
                )
            ),
        )

    assert client.get(f"/payments/{payment_id}").json()["amount"] == winner


def test_published_take_home_streams_fold_to_the_lifecycle_in_any_order(client: TestClient) -> None:
    events = [
        event
        for name in ("payment_authorized.json", "payment_captured.json", "payment_failed.json")
        for event in json.loads(fixture_path("takehome", "canonical_0xvjay", name).read_bytes())
    ]
    # A fixed, deterministic interleaving that is far from chronological: newest first.
    for event in sorted(events, key=lambda event: event["created_at"], reverse=True):
        deliver(client, *razorpay_delivery(event))

    by_payment: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_payment.setdefault(event["payload"]["payment"]["entity"]["id"], []).append(event)
    for payment_id, its_events in by_payment.items():
        top = max(
            its_events,
            key=lambda e: (STATUS_RANK[e["payload"]["payment"]["entity"]["status"]], e["created_at"]),
        )
        body = client.get(f"/payments/{payment_id}").json()
        assert (body["status"], body["amount"], body["event_count"]) == (
            top["payload"]["payment"]["entity"]["status"],
            top["payload"]["payment"]["entity"]["amount"],
            len(its_events),
        )
