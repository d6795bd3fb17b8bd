"""Start-up with forwarding on: a stream that cannot hold the guarantees stops it with a message naming
the setting; a broker that is down does not (deliveries are stored and published later)."""

import asyncio
import time
from collections.abc import Callable

import nats
import pytest
from fastapi.testclient import TestClient

from forwarding.stream import StreamMismatch
from tests.conftest import free_port
from tests.forwarding.nats_support import NatsServer
from tests.support import razorpay_delivery, razorpay_event


def create_stream(url: str, **config: object) -> None:
    async def create() -> None:
        client = await nats.connect(url)
        try:
            await client.jetstream().add_stream(name="PAYMENTS", **config)
        finally:
            await client.close()

    asyncio.run(create())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("config", "named"),
    [
        (
            {"subjects": ["payments.events.>", "payments.state.>"], "duplicate_window": 120},
            "duplicate_window",
        ),
        ({"subjects": ["payments.events.>"], "duplicate_window": 3600}, "payments.state.>"),
    ],
)
def test_an_incompatible_stream_stops_start_up_naming_the_setting(
    client_factory: Callable[..., TestClient], nats_server: NatsServer, config: dict[str, object], named: str
) -> None:
    create_stream(nats_server.url, **config)
    with pytest.raises(StreamMismatch, match=named):
        client_factory(nats_url=nats_server.url)


def test_a_stream_with_fewer_replicas_than_asked_stops_start_up(
    client_factory: Callable[..., TestClient], nats_server: NatsServer
) -> None:
    create_stream(nats_server.url, subjects=["payments.events.>", "payments.state.>"], duplicate_window=3600)
    with pytest.raises(StreamMismatch, match="NATS_STREAM_REPLICAS=3"):
        client_factory(nats_url=nats_server.url, nats_stream_replicas=3)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_broker_down_at_start_up_does_not_stop_the_service(
    client_factory: Callable[..., TestClient],
) -> None:
    started = time.monotonic()
    client = client_factory(nats_url=f"nats://127.0.0.1:{free_port()}")
    assert time.monotonic() - started < 10
    assert client.get("/readyz").status_code == 200
    body, headers = razorpay_delivery(razorpay_event(event_id="evt_down"))
    assert client.post("/webhooks/razorpay", content=body, headers=headers).status_code == 200
