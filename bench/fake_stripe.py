"""The tests' fake of Stripe's API (tests/recovery/fake_api.py) in a process of its own, so the fake's
work shares no interpreter lock with anything measured: `python -m bench.fake_stripe EVENTS START`
serves EVENTS events (`stripe_event`), created one a second from the Unix time START, prints its URL on
one line and serves until its standard input closes."""

import sys

from tests.recovery.fake_api import FakeProviders, stripe_event


def main(events: int, start: int) -> None:
    with FakeProviders() as fake:
        fake.stripe_events.extend(stripe_event(i, created=start + i) for i in range(events))
        print(fake.url, flush=True)
        sys.stdin.read()  # the harness closes the pipe (or exits) when it is done with the fake


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
