"""`timeout(seconds)`: `asyncio.timeout` for the delivery path, with one loop timer per tick, not per await.

A delivery waits twice under a deadline: for its body, then for its commit. `asyncio.timeout` arms a loop
timer on entry and cancels it on exit, and on uvloop those two calls cost more than anything else in the
wait (BENCHMARKS.md, "Deadlines"). Here a deadline is rounded up to the next tick, and every wait due in
the same tick shares that tick's one timer: entering and leaving cost a set insert and a removal. A wait
ends at most one tick after its deadline, which is nothing beside timeouts of seconds.

The semantics are asyncio.timeout's: when the deadline passes while the task waits inside the block, the
task is cancelled and the block raises TimeoutError; a cancellation from anywhere else passes through.
"""

import asyncio
import math
from types import TracebackType
from typing import Final

TICK_SECONDS: Final = 0.05

# The waits due at each tick, by event loop (tests run several loops in one process) and tick number.
_due: dict[tuple[asyncio.AbstractEventLoop, int], set["_Timeout"]] = {}


class _Timeout:
    __slots__ = ("_cancelling", "_expired", "_key", "_seconds", "_task")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._expired = False

    def __enter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("timeout() must be used inside a task")
        loop = task.get_loop()
        tick = math.ceil((loop.time() + self._seconds) / TICK_SECONDS)
        self._key = key = (loop, tick)
        waits = _due.get(key)
        if waits is None:
            waits = _due[key] = set()
            loop.call_at(tick * TICK_SECONDS, _expire, key)
        waits.add(self)
        self._task = task
        self._cancelling = task.cancelling()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if (waits := _due.get(self._key)) is not None:
            waits.discard(self)
        # As asyncio.timeout: the cancellation this deadline asked for becomes TimeoutError, unless
        # someone else cancelled the task as well.
        if self._expired and self._task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
            raise TimeoutError from error


def _expire(key: tuple[asyncio.AbstractEventLoop, int]) -> None:
    # Only waits still inside their block are members: each one's task is suspended within it.
    for wait in _due.pop(key, ()):
        wait._expired = True
        wait._task.cancel()


def timeout(seconds: float) -> _Timeout:
    """`with timeout(seconds): await ...` raises TimeoutError once `seconds` (plus at most one tick) have
    passed, cancelling the await, as `async with asyncio.timeout(seconds)` does."""
    return _Timeout(seconds)
