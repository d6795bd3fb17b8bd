"""RECOVERY_EVENTS_PER_SECOND: a run that paces itself, so that reading a large window while deliveries
arrive leaves them most of the CPU and of the database's write lock.

Each page is allotted its items / rate seconds from the end of the previous page's allotment: a page
read faster waits out the rest, a page read slower (the provider, our store) waits nothing, and the
time it lost is not made up by going faster afterwards, so the run never bursts above the rate.
"""

import time
from collections.abc import Callable


class Pace:
    """At most `per_second` items a second, page by page; 0: no pacing."""

    def __init__(self, per_second: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self._clock = clock
        self._allotted_until = clock()  # where the previous page's allotment ended

    def wait(self, items: int) -> float:
        """Seconds to wait now that a page of `items` has been read and stored: what is left of its
        allotment (0 when unpaced, or when the page took longer)."""
        if self.per_second <= 0:
            return 0.0
        now = self._clock()
        due = self._allotted_until + items / self.per_second
        self._allotted_until = max(due, now)
        return max(0.0, due - now)
