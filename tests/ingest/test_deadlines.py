"""ingest.deadlines.timeout behaves as asyncio.timeout does, on asyncio's loop and on uvloop's."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from ingest import deadlines

LOOPS = {"asyncio": asyncio.run, "uvloop": uvloop.run}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Awaitable[Any]], Any]:
    return LOOPS[request.param]  # type: ignore[return-value]


def test_a_wait_past_its_deadline_raises_timeout_error_within_a_tick(run: Callable[..., Any]) -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        never: asyncio.Future[None] = loop.create_future()
        with pytest.raises(TimeoutError), deadlines.timeout(0.1):
            await never
        assert never.cancelled()  # the await was cancelled, as asyncio.timeout cancels it
        return loop.time() - started

    waited = run(main())
    assert 0.1 <= waited < 0.1 + deadlines.TICK_SECONDS + 0.25


def test_a_wait_that_ends_in_time_is_not_touched_and_leaves_nothing_behind(run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(100):
            done: asyncio.Future[int] = loop.create_future()
            loop.call_soon(done.set_result, 7)
            with deadlines.timeout(0.05):
                assert await done == 7
        assert all(not waits for waits in deadlines._due.values())
        # Past every tick those waits shared: the task is never cancelled afterwards.
        await asyncio.sleep(0.05 + deadlines.TICK_SECONDS * 2)
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]

    run(main())


def test_many_waits_share_a_tick_and_each_one_times_out(run: Callable[..., Any]) -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()

        async def wait(index: int) -> str:
            try:
                with deadlines.timeout(0.05):
                    await loop.create_future()
            except TimeoutError:
                return "timed out"
            return "ended"

        return await asyncio.gather(*(wait(index) for index in range(200)))

    assert run(main()) == ["timed out"] * 200


def test_a_cancellation_from_elsewhere_passes_through(run: Callable[..., Any]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        entered = asyncio.Event()

        async def waiter() -> None:
            with deadlines.timeout(10):
                entered.set()
                await loop.create_future()

        task = asyncio.create_task(waiter())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())


def test_a_cancellation_racing_the_deadline_still_cancels(run: Callable[..., Any]) -> None:
    """The deadline and an outside cancel in the same loop turn: the outside one wins, as with
    asyncio.timeout, so a caller that cancels is never told the wait merely timed out."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        entered = asyncio.Event()

        async def waiter() -> None:
            with deadlines.timeout(0.05):
                entered.set()
                await loop.create_future()

        task = asyncio.create_task(waiter())
        await entered.wait()
        due = [key for key, waits in deadlines._due.items() if key[0] is loop and waits]
        assert len(due) == 1
        loop.call_at(due[0][1] * deadlines.TICK_SECONDS, task.cancel)  # right after the tick's own timer
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())


def test_outside_a_running_loop_it_refuses() -> None:
    with pytest.raises(RuntimeError), deadlines.timeout(1):
        pass
