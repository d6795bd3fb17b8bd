"""The tests' fake of Stripe's API (tests/recovery/fake_api.py) in a process of its own, so the fake's
work shares no interpreter lock with anything measured: `python -m bench.fake_stripe EVENTS START
[--held]` serves EVENTS events (`stripe_event`), created one a second from the Unix time START, prints
its URL on one line and serves until its standard input closes.

Its events do not change while it serves, so the events a set of filters selects is worked out once,
at the first page, not again for every page: the tests' fake sorts and filters every event per request,
CPU taken from the cores that what is measured runs on (BENCHMARKS.md, "Recovery"), where a provider's
API does that work on its own machines.

With --held it lists no events until told to, so that a service recovering every RECOVERY_INTERVAL
finds its events at a moment the harness chooses. Commands, one per line on standard input:
`arm` (the next run is served the events, up to its last page; runs after it find none again) and
`wait` (once that run has read its last page, print one JSON line: the Unix times of its first and
last page's requests)."""

import json
import sys
import threading
import time
from functools import cache
from typing import Any

from tests.recovery.fake_api import FakeProviders, Seen, stripe_event

WAIT_DEADLINE_S = 120.0  # `wait` answers with nulls after this long without a finished run

EMPTY_LIST = {"object": "list", "data": [], "has_more": False, "url": "/v1/events"}


class FixedEvents(FakeProviders):
    def __init__(self, *, held: bool) -> None:
        super().__init__()
        self.held = held
        self.armed = not held
        self.first: float | None = None  # the armed run's first and last page requests
        self.last: float | None = None
        self.served = threading.Event()  # set once the armed run has read its last page

    def arm(self) -> None:
        self.first = self.last = None
        self.served.clear()
        self.armed = True

    def stripe_list(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        if not self.armed:
            return 200, EMPTY_LIST, {}
        asked = time.time()
        status, body, headers = super().stripe_list(seen)
        if self.held and status == 200:
            self.first = self.first or asked
            if not body["has_more"]:
                self.last, self.armed = asked, False
                self.served.set()
        return status, body, headers

    @cache  # noqa: B019 (one instance, alive as long as the process)
    def stripe_matching(
        self, types: frozenset[str], gte: int | None, lt: int | None, undelivered: bool
    ) -> list[dict[str, Any]]:
        return super().stripe_matching(types, gte, lt, undelivered)


def main(events: int, start: int, *, held: bool) -> None:
    fake = FixedEvents(held=held)
    with fake:
        fake.stripe_events.extend(stripe_event(i, created=start + i) for i in range(events))
        print(fake.url, flush=True)
        # The harness closes the pipe (or exits) when it is done with the fake.
        for command in sys.stdin:
            if command.strip() == "arm":
                fake.arm()
            elif command.strip() == "wait":
                fake.served.wait(WAIT_DEADLINE_S)
                print(json.dumps({"first": fake.first, "last": fake.last}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), held="--held" in sys.argv[3:])
