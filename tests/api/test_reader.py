"""The history's connections are lent first come, first served (database.Slots): a request that
arrives as one is returned does not take it from a request already waiting."""

import asyncio

import pytest

from api.reader import Slots


def test_a_returned_connection_goes_to_the_longest_waiter_not_to_a_newcomer() -> None:
    async def run() -> list[str]:
        slots = Slots(["connection"])
        served: list[str] = []
        held = await slots.take()

        async def request(name: str) -> None:
            item = await slots.take()
            served.append(name)
            slots.give(item)

        waiting = asyncio.create_task(request("waiting"))
        await asyncio.sleep(0)  # it is now waiting for the one connection
        # A new request, already scheduled when the connection comes back: it runs before the waiter
        # wakes up, as a request whose bytes arrived meanwhile does.
        newcomer = asyncio.create_task(request("newcomer"))
        slots.give(held)
        await asyncio.gather(waiting, newcomer)
        return served

    assert asyncio.run(run()) == ["waiting", "newcomer"]


def test_a_cancelled_waiter_passes_on_what_it_was_handed() -> None:
    async def run() -> str:
        slots = Slots(["connection"])
        held = await slots.take()
        first = asyncio.create_task(slots.take())
        second = asyncio.create_task(slots.take())
        await asyncio.sleep(0)
        slots.give(held)  # handed to `first`...
        first.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        return await asyncio.wait_for(second, timeout=5)

    assert asyncio.run(run()) == "connection"


def test_drain_takes_only_what_is_not_lent() -> None:
    async def run() -> list[str]:
        slots = Slots(["a", "b"])
        await slots.take()
        return slots.drain()

    assert asyncio.run(run()) == ["b"]
