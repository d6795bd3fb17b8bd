"""Deliveries that carry many events (Adyen, GoCardless): every event stored once, all in one
transaction, answered only after all are committed; one forged item refuses the whole delivery."""

import asyncio
import copy
import json
from collections.abc import Callable, Sequence

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from errors import StorageUnavailable
from ingest.store import EventWriter
from models import Event
from payments.events import NormalizedEvent
from tests.ingest.test_sinks import an_event, sinks_for
from tests.providers import signing
from tests.providers.test_more_providers import post
from tests.support import stored_events


class RecordingSink:
    """Records each batch; fails a batch holding `refuse` as a row error, like a database would."""

    row_errors: tuple[type[Exception], ...] = (ValueError,)

    def __init__(self, refuse: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.refuse = refuse

    async def open(self) -> None:
        pass

    async def write(self, events: Sequence[NormalizedEvent]) -> list[bool]:
        ids = [event.event_id for event in events]
        if self.refuse in ids:
            raise ValueError("a row the database refuses")
        self.batches.append(ids)
        return [True] * len(events)

    async def reset(self) -> None:
        pass

    async def close(self) -> None:
        pass


def run_writer(
    sink: RecordingSink, deliveries: list[list[NormalizedEvent]], *, batch_max: int
) -> list[object]:
    async def run() -> list[object]:
        writer = EventWriter([sink], batch_max=batch_max, queue_max=100, timeout=10)
        await writer.start()
        try:
            # Queued before the writer runs, so they meet in its queue.
            return await asyncio.gather(*(writer.store_many(d) for d in deliveries), return_exceptions=True)
        finally:
            await writer.stop()

    return asyncio.run(run())


def test_a_deliverys_events_are_never_split_across_transactions() -> None:
    sink = RecordingSink()
    single, many = [an_event()], [an_event() for _ in range(250)]

    outcomes = run_writer(sink, [single, many, [an_event()]], batch_max=16)

    assert outcomes[1] == [True] * 250
    many_ids = {event.event_id for event in many}
    assert [len(set(batch) & many_ids) for batch in sink.batches if set(batch) & many_ids] == [250]


def test_a_delivery_with_a_row_the_database_refuses_stores_none_of_its_events() -> None:
    refused = an_event()
    group = [an_event(), refused, an_event()]
    neighbour = [an_event()]
    sink = RecordingSink(refuse=refused.event_id)

    outcomes = run_writer(sink, [group, neighbour], batch_max=16)

    assert isinstance(outcomes[0], StorageUnavailable)
    assert outcomes[1] == [True]
    stored = {event_id for batch in sink.batches for event_id in batch}
    assert stored == {neighbour[0].event_id}


def test_store_many_commits_every_event_on_the_database(migrated_engine: Engine) -> None:
    events = [an_event() for _ in range(250)]

    async def run() -> list[bool]:
        writer = EventWriter(sinks_for(migrated_engine), batch_max=16, queue_max=100, timeout=10)
        await writer.start()
        try:
            return await writer.store_many(events)
        finally:
            await writer.stop()

    assert asyncio.run(run()) == [True] * 250
    with Session(migrated_engine) as session:
        assert set(session.scalars(select(Event.event_id))) == {event.event_id for event in events}


def test_gocardless_stores_a_batch_of_250_events_and_answers_204(
    client_factory: Callable[..., TestClient], database_url: str
) -> None:
    client = client_factory(**signing.SETTINGS["gocardless"])

    response = post(client, "gocardless", signing.gocardless(signing.gocardless_events(250)))

    assert response.status_code == 204 and response.content == b""
    stored = stored_events(database_url, "gocardless")
    assert sorted(event.event_id for event in stored) == [f"EV{i:08d}" for i in range(250)]
    # Each event is its own row in the history, with its own JSON as the raw body.
    assert json.loads(stored[0].raw_body)["id"] == stored[0].event_id
    payment = client.get("/payments/PM00000007").json()
    assert (payment["provider"], payment["status"]) == ("gocardless", "captured")
    assert [e["event_id"] for e in client.get("/payments/PM00000007/events").json()] == ["EV00000007"]


def test_gocardless_resending_an_event_in_a_later_batch_is_a_duplicate(
    client_factory: Callable[..., TestClient], database_url: str
) -> None:
    client = client_factory(**signing.SETTINGS["gocardless"])
    first = signing.gocardless_events(50)
    later = signing.gocardless_events(50, start=25)  # EV25..EV49 again, then 25 new ones

    assert post(client, "gocardless", signing.gocardless(first)).status_code == 204
    assert post(client, "gocardless", signing.gocardless(later)).status_code == 204

    assert len(stored_events(database_url, "gocardless")) == 75


def test_gocardless_invalid_signature_is_498_with_the_error_shape(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(**signing.SETTINGS["gocardless"])
    delivery = signing.gocardless(signing.gocardless_events(3), secret="another_secret")

    response = post(client, "gocardless", delivery)

    assert response.status_code == 498
    assert response.json()["error"]["code"] == "signature_invalid"


def test_adyen_accepts_a_delivery_of_250_items(
    client_factory: Callable[..., TestClient], database_url: str
) -> None:
    client = client_factory(**signing.SETTINGS["adyen"])

    response = post(client, "adyen", signing.adyen(signing.adyen_items(250)))

    assert (response.status_code, response.content) == (200, b"[accepted]")
    assert len(stored_events(database_url, "adyen")) == 250


def test_adyen_refuses_the_whole_delivery_when_one_item_is_forged(
    client_factory: Callable[..., TestClient], database_url: str
) -> None:
    client = client_factory(**signing.SETTINGS["adyen"])
    notification = signing.adyen_sign(signing.adyen_items(5))
    forged = copy.deepcopy(notification)
    forged["notificationItems"][3]["NotificationRequestItem"]["amount"]["value"] = 1

    response = post(client, "adyen", signing.Delivery(json.dumps(forged).encode(), {}))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "signature_invalid"
    assert stored_events(database_url, "adyen") == []


def test_adyen_modifications_attach_to_the_payment_they_modify(
    client_factory: Callable[..., TestClient], database_url: str
) -> None:
    client = client_factory(**signing.SETTINGS["adyen"])
    post(client, "adyen", signing.adyen(signing.payload("adyen_authorisation.json")))

    response = post(client, "adyen", signing.adyen(signing.payload("adyen_capture_refund.json")))

    assert response.content == b"[accepted]"
    history = client.get("/payments/8535516988037431/events").json()
    assert [(e["event_type"], e["status"]) for e in history] == [
        ("AUTHORISATION", "authorized"),
        ("CAPTURE", "captured"),
        ("REFUND", "refunded"),
    ]
    assert client.get("/payments/8535516988037431").json()["status"] == "refunded"


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "signature_missing"),
        ("Basic " + "d3Jvbmc6Y3JlZHM=", "signature_invalid"),
        ("Bearer x", "signature_invalid"),
    ],
)
def test_adyen_basic_auth_when_configured(
    client_factory: Callable[..., TestClient], authorization: str | None, code: str
) -> None:
    client = client_factory(**signing.SETTINGS["adyen"], adyen_basic_auth=["adyen_user:s3cret"])
    delivery = signing.adyen(signing.payload("adyen_authorisation.json"))
    if authorization is not None:
        delivery.headers["Authorization"] = authorization

    response = post(client, "adyen", delivery)

    assert response.status_code == 403 and response.json()["error"]["code"] == code
    delivery.headers["Authorization"] = "Basic YWR5ZW5fdXNlcjpzM2NyZXQ="  # adyen_user:s3cret
    assert post(client, "adyen", delivery).content == b"[accepted]"
