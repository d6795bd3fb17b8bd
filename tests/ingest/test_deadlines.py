"""The shared-timeout deadlines behind the body read's 408 and the commit wait's 503: an overdue wait
expires within a tick of its timeout, a finished one never does, and a cancellation that is not the
deadline's (a shutdown) still reaches the task."""

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from api.webhooks import body_deadlines, read_body
from errors import RequestTimeout
from ingest.deadlines import TICK_S, Deadlines

TIMEOUT = 0.3


def test_overdue_watches_expire_in_order_and_finished_ones_never() -> None:
    async def scenario() -> tuple[list[str], float]:
        loop = asyncio.get_running_loop()
        expired: list[str] = []
        deadlines: Deadlines[str] = Deadlines(TIMEOUT, expired.append)
        deadlines.start()
        started = loop.time()
        first = deadlines.watch("first")
        finished = deadlines.watch("finished")
        finished.active = False
        last = deadlines.watch("last")
        while not last.expired and loop.time() - started < TIMEOUT + 2:
            await asyncio.sleep(0.01)
        took = loop.time() - started
        await deadlines.stop()
        assert first.expired and last.expired and not finished.expired
        return expired, took

    expired, took = asyncio.run(scenario())
    assert expired == ["first", "last"]
    assert TIMEOUT <= took < TIMEOUT + TICK_S + 0.5  # generous: a loaded machine delays the poll too


def _request(receive: Any) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)


def test_a_body_that_never_arrives_is_a_request_timeout() -> None:
    async def never() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def scenario() -> RequestTimeout:
        deadlines = body_deadlines(TIMEOUT)
        deadlines.start()
        try:
            with pytest.raises(RequestTimeout) as raised:
                await read_body(_request(never), {}, 1000, deadlines=deadlines)
            # The task's cancellation was the deadline's own, and was taken back: it goes on normally.
            task = asyncio.current_task()
            assert task is not None and task.cancelling() == 0
            await asyncio.sleep(0)
        finally:
            await deadlines.stop()
        return raised.value

    assert "not received within" in asyncio.run(scenario()).message


def test_a_cancellation_that_is_not_the_deadline_s_still_cancels() -> None:
    reading = asyncio.Event()

    async def never() -> dict[str, Any]:
        reading.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def scenario() -> None:
        deadlines = body_deadlines(60)
        deadlines.start()
        try:
            task = asyncio.create_task(read_body(_request(never), {}, 1000, deadlines=deadlines))
            await reading.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await deadlines.stop()

    asyncio.run(scenario())


def test_a_body_that_arrives_in_time_is_read_whole() -> None:
    messages = iter(
        [
            {"type": "http.request", "body": b'{"a":', "more_body": True},
            {"type": "http.request", "body": b"1}", "more_body": False},
        ]
    )

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def scenario() -> bytes:
        deadlines = body_deadlines(TIMEOUT)
        deadlines.start()
        try:
            body = await read_body(_request(receive), {}, 1000, deadlines=deadlines)
            await asyncio.sleep(TIMEOUT + 2 * TICK_S)  # past the deadline: the finished read is left alone
            return body
        finally:
            await deadlines.stop()

    assert asyncio.run(scenario()) == b'{"a":1}'


def test_an_expiry_that_raises_does_not_stop_later_expiries() -> None:
    async def scenario() -> list[str]:
        expired: list[str] = []

        def on_expiry(item: str) -> None:
            if item == "broken":
                raise RuntimeError("boom")
            expired.append(item)

        deadlines: Deadlines[str] = Deadlines(TIMEOUT, on_expiry)
        deadlines.start()
        deadlines.watch("broken")
        later = deadlines.watch("later")
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not later.expired and loop.time() - started < TIMEOUT + 2:
            await asyncio.sleep(0.01)
        await deadlines.stop()
        return expired

    assert asyncio.run(scenario()) == ["later"]
