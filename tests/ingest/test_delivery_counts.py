"""Every authentic delivery of a stored event is counted on its row (delivery_count, last_delivered_at),
in the batch that answers it: a retry in a later batch, several deliveries in one batch, a retry under
another signed key. A signature reused for another body is refused and counts nowhere; a copy read back
by recovery is not a delivery. Two writers delivering the same events at once add up exactly. On both
databases, through the sinks and the API."""

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ingest.batch import Outcome
from ingest.sinks import Sink, make_sinks
from models import Event
from payments.events import NormalizedEvent
from tests.conftest import make_settings
from tests.ingest.test_signed_keys import adapter_events, forged_refund, genuine_capture, paypal_settings
from tests.support import an_event, paypal_headers, razorpay_delivery, razorpay_event

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def sink_for(engine: Engine) -> Sink:
    [sink] = make_sinks(engine, make_settings(_url(engine), write_concurrency=1))
    return sink


def write(engine: Engine, *batches: Sequence[NormalizedEvent]) -> list[list[Outcome]]:
    """Each batch written by one sink, in turn: one transaction each."""

    async def run() -> list[list[Outcome]]:
        sink = sink_for(engine)
        try:
            return [await sink.write(batch) for batch in batches]
        finally:
            await sink.close()

    return asyncio.run(run())


def counts(engine: Engine, provider: str = "razorpay") -> dict[str, tuple[int, datetime | None]]:
    with Session(engine) as session:
        rows = session.execute(
            select(Event.event_id, Event.delivery_count, Event.last_delivered_at).where(
                Event.provider == provider
            )
        )
        return {event_id: (count, last) for event_id, count, last in rows}


def at(seconds: int) -> datetime:
    return AT + timedelta(seconds=seconds)


def test_a_retry_in_a_later_batch_is_counted(migrated_engine: Engine) -> None:
    first = an_event(received_at=at(0))
    retries = [replace(first, received_at=at(n)) for n in (5, 9)]

    outcomes = write(migrated_engine, [first], [retries[0]], [retries[1], an_event()])

    assert outcomes[:2] == [[True], [False]]
    assert counts(migrated_engine)[first.event_id] == (3, at(9))


def test_each_delivery_in_one_batch_is_counted(migrated_engine: Engine) -> None:
    new = an_event(received_at=at(0))
    stored = an_event(received_at=at(0))
    write(migrated_engine, [stored])

    [outcomes] = write(
        migrated_engine,
        [
            replace(new, received_at=at(1)),
            replace(stored, received_at=at(2)),
            replace(new, received_at=at(4)),
            replace(stored, received_at=at(3)),
            replace(new, received_at=at(3)),
        ],
    )

    assert outcomes == [True, False, False, False, False]
    assert counts(migrated_engine)[new.event_id] == (3, at(4))  # the first inserts 1, the others add
    assert counts(migrated_engine)[stored.event_id] == (3, at(3))  # the latest time, not the last in line


def test_the_last_delivery_time_never_goes_back(migrated_engine: Engine) -> None:
    event = an_event(received_at=at(10))
    write(migrated_engine, [event], [replace(event, received_at=at(5))])

    assert counts(migrated_engine)[event.event_id] == (2, at(10))


def test_a_paypal_retry_under_the_same_or_a_new_transmission_is_counted(
    migrated_engine: Engine, tmp_path: Path
) -> None:
    genuine = genuine_capture()
    headers = paypal_headers(genuine)
    [first] = adapter_events(tmp_path, genuine, headers=headers)
    same = adapter_events(tmp_path, genuine, genuine, headers=headers)  # twice, in one batch
    [renewed] = adapter_events(tmp_path, genuine, headers=paypal_headers(genuine))
    assert renewed.signed_key != first.signed_key

    outcomes = write(migrated_engine, [first], same, [renewed, renewed])

    assert outcomes == [[True], [False, False], [False, False]]
    assert counts(migrated_engine, "paypal")["WH-GENUINE-9"][0] == 5


def test_a_reused_signature_with_another_body_is_not_counted(migrated_engine: Engine, tmp_path: Path) -> None:
    genuine = genuine_capture()
    headers = paypal_headers(genuine)
    events = adapter_events(
        tmp_path,
        genuine,
        forged_refund(genuine),  # another event id
        forged_refund(genuine, event_id="WH-GENUINE-9"),  # the genuine event's own id
        headers=headers,
    )

    # Refused in the batch that stores the genuine delivery, and in later ones.
    outcomes = write(migrated_engine, events, events[1:], [events[2], events[0]])

    assert outcomes == [[True, None, None], [None, None], [None, False]]
    assert counts(migrated_engine, "paypal") == {"WH-GENUINE-9": (2, events[0].received_at)}


def test_a_razorpay_body_sent_again_under_new_header_ids_counts_on_its_event(migrated_engine: Engine) -> None:
    body = b'{"entity":"event","event":"payment.captured","payload":{}}'
    key = "sha256:" + hashlib.sha256(body).hexdigest()
    stored = an_event(event_id="evt_1", raw_body=body, signed_key=key, received_at=at(0))
    replays = [replace(stored, event_id=f"replay-{n}", received_at=at(n)) for n in (1, 2)]

    outcomes = write(migrated_engine, [stored], [replays[0]], [replays[1], replays[1]])

    assert outcomes == [[True], [False], [False, False]]
    assert counts(migrated_engine) == {"evt_1": (4, at(2))}


def test_a_recovered_copy_is_not_a_delivery(migrated_engine: Engine) -> None:
    recovered = an_event(origin="recovery", received_at=at(0))
    delivered = an_event(received_at=at(0))

    outcomes = write(
        migrated_engine,
        [recovered, delivered],
        [replace(delivered, origin="recovery", received_at=at(1))],  # recovery finds it again
        [replace(recovered, origin="webhook", received_at=at(2))],  # its webhook arrives at last
        [replace(recovered, received_at=at(3))],  # and recovery reads it once more
    )

    assert outcomes == [[True, True], [False], [False], [False]]
    assert counts(migrated_engine) == {recovered.event_id: (1, at(2)), delivered.event_id: (1, at(0))}


def test_a_recovered_copy_and_its_webhook_in_one_batch(migrated_engine: Engine) -> None:
    recovered = an_event(origin="recovery", received_at=at(0))
    webhook = replace(recovered, origin="webhook", received_at=at(1))

    assert write(migrated_engine, [recovered, webhook, webhook]) == [[True, False, False]]
    assert counts(migrated_engine) == {recovered.event_id: (2, at(1))}


def test_two_writers_delivering_the_same_events_at_once_add_up(
    migrated_engine: Engine, tmp_path: Path
) -> None:
    """Two sinks (two connections; on SQLite two writer processes), as two app instances have, each
    given every event several times over several batches, at once. On PostgreSQL a row the other
    writer commits while a batch statement runs is outside that statement's snapshot: it is counted
    by the statement after it."""
    plain = [an_event(received_at=at(n)) for n in range(40)]
    keyed = [
        adapter_events(tmp_path, body, headers=paypal_headers(body))[0]
        for body in (genuine_capture(f"WH-BOTH-{n}", f"CAP-BOTH-{n}") for n in range(10))
    ]
    events = plain + keyed
    rounds = 3

    async def deliver_all() -> list[list[Outcome]]:
        settings = make_settings(_url(migrated_engine), write_concurrency=1)
        [one], [other] = make_sinks(migrated_engine, settings), make_sinks(migrated_engine, settings)
        await asyncio.gather(one.open(), other.open())
        try:
            outcomes: list[list[Outcome]] = []
            for start in range(0, len(events), 10):
                batch = events[start : start + 10]
                for _ in range(rounds):
                    outcomes += await asyncio.gather(one.write(batch), other.write(batch[::-1]))
            return outcomes
        finally:
            await asyncio.gather(one.close(), other.close())

    outcomes = [outcome for batch in asyncio.run(deliver_all()) for outcome in batch]

    assert outcomes.count(True) == len(events)
    assert outcomes.count(False) == len(events) * (2 * rounds - 1)
    stored = {**counts(migrated_engine), **counts(migrated_engine, "paypal")}
    assert stored == {event.event_id: (2 * rounds, event.received_at) for event in events}


# --- through the API: the event detail shows both ---------------------------------------------------------


def deliver(client: TestClient, body: bytes, headers: dict[str, str]) -> str:
    response = client.post("/webhooks/razorpay", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


def test_the_event_detail_shows_the_count_and_the_last_delivery(client: TestClient) -> None:
    body, headers = razorpay_delivery(razorpay_event(event_id="evt_counted", payment_id="pay_counted"))
    before = datetime.now(UTC)

    answers = [deliver(client, body, headers) for _ in range(3)]
    detail = client.get("/events/razorpay/evt_counted").json()

    assert answers == ["processed", "duplicate", "duplicate"]
    assert detail["delivery_count"] == 3
    last = datetime.fromisoformat(detail["last_delivered_at"])
    assert before <= datetime.fromisoformat(detail["received_at"]) <= last <= datetime.now(UTC)
    # The history lists events as before: the count is the detail's.
    [listed] = client.get("/payments/pay_counted/events").json()
    assert "delivery_count" not in listed


def test_a_refused_delivery_leaves_the_count(
    client_factory: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = client_factory(**paypal_settings(tmp_path))
    genuine = genuine_capture()
    headers = paypal_headers(genuine)
    assert client.post("/webhooks/paypal", content=genuine, headers=headers).status_code == 200

    forged = client.post(
        "/webhooks/paypal", content=forged_refund(genuine, event_id="WH-GENUINE-9"), headers=headers
    )

    assert (forged.status_code, forged.json()["error"]["code"]) == (403, "signature_invalid")
    detail = client.get("/events/paypal/WH-GENUINE-9").json()
    assert (detail["delivery_count"], detail["last_delivered_at"]) == (1, detail["received_at"])
    assert json.loads(detail["raw_body"])["event_type"] == "PAYMENT.CAPTURE.COMPLETED"
