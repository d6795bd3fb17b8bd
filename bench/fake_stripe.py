"""The tests' fake of Stripe's API (tests/recovery/fake_api.py) in a process of its own, so the fake's
work shares no interpreter lock with anything measured: `python -m bench.fake_stripe EVENTS START`
serves EVENTS events (`stripe_event`), created one a second from the Unix time START, prints its URL on
one line and serves until its standard input closes.

Its events do not change while it serves, so the events a set of filters selects is worked out once,
at the first page, not again for every page: the tests' fake sorts and filters every event per request,
CPU taken from the cores that what is measured runs on (BENCHMARKS.md, "Recovery"), where a provider's
API does that work on its own machines."""

import sys
from functools import cache
from typing import Any

from tests.recovery.fake_api import FakeProviders, stripe_event


class FixedEvents(FakeProviders):
    @cache  # noqa: B019 (one instance, alive as long as the process)
    def stripe_matching(
        self, types: frozenset[str], gte: int | None, lt: int | None, undelivered: bool
    ) -> list[dict[str, Any]]:
        return super().stripe_matching(types, gte, lt, undelivered)


def main(events: int, start: int) -> None:
    with FixedEvents() as fake:
        fake.stripe_events.extend(stripe_event(i, created=start + i) for i in range(events))
        print(fake.url, flush=True)
        sys.stdin.read()  # the harness closes the pipe (or exits) when it is done with the fake


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
