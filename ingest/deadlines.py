"""Deadlines for work that must end within one fixed timeout, kept by one sweep per tick.

A delivery has two waits with a timeout: its body arriving and its commit being confirmed.
`asyncio.timeout()` arms a timer and walks the task's cancellation state for each, measured at about
6 us a time under uvloop, twice per delivery. Here each use appends to a FIFO instead: every watch of
one `Deadlines` has the same timeout, so the deadlines fall in the order they were set, and a sweep
every tick only looks at the front. Measured, this took a delivery from 753,000 to 712,000 instructions
(BENCHMARKS.md). The price is precision: an overdue watch is noticed up to one tick late, which a
timeout of seconds can afford.
"""

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Final, Generic, TypeVar

T = TypeVar("T")

logger = logging.getLogger("webhooks.deadlines")

TICK_S: Final = 0.05  # at most how late an overdue watch is noticed (less for timeouts under 0.25 s)


class Watch(Generic[T]):
    """One timed wait. `expired` is set just before the deadlines' `on_expiry` runs on `item`."""

    __slots__ = ("active", "due", "expired", "item")

    def __init__(self, due: float, item: T) -> None:
        self.due = due
        self.item = item
        self.active = True
        self.expired = False


class Deadlines(Generic[T]):
    """Watches that all share `timeout`; `on_expiry` runs on the item of each one still active when
    its deadline passes (on the event loop, from the sweep task that start() creates)."""

    def __init__(self, timeout: float, on_expiry: Callable[[T], None]) -> None:
        self.timeout = timeout
        self._on_expiry = on_expiry
        self._tick = min(TICK_S, timeout / 5)
        self._watches: deque[Watch[T]] = deque()
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="deadlines")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    def watch(self, item: T) -> Watch[T]:
        """Starts timing `item`; the caller sets `active = False` on the watch once the wait is over."""
        watch = Watch(asyncio.get_running_loop().time() + self.timeout, item)
        self._watches.append(watch)
        return watch

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        watches = self._watches
        while True:
            await asyncio.sleep(self._tick)
            now = loop.time()
            while watches and (not watches[0].active or watches[0].due <= now):
                watch = watches.popleft()
                if watch.active:
                    watch.expired = True
                    watch.active = False
                    try:
                        self._on_expiry(watch.item)
                    except Exception:  # the sweep must outlive it, or no later wait would ever expire
                        logger.exception("expiring a timed wait failed")
