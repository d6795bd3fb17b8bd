"""RECOVERY_EVENTS_PER_SECOND: a run paces itself page by page and never bursts above the rate."""

import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from recovery.pace import Pace
from tests.recovery.conftest import Recoverer
from tests.recovery.fake_api import FakeProviders
from tests.recovery.test_stripe import SINCE, UNTIL, outage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_page_read_faster_than_the_rate_waits_out_the_rest_of_its_allotment() -> None:
    clock = Clock()
    pace = Pace(1000, clock=clock)

    clock.now += 0.02  # 100 items read and stored in 20 ms; at 1,000 a second they are allotted 100 ms
    assert pace.wait(100) == pytest.approx(0.08)
    clock.now += 0.08 + 0.03  # it waited, then the next page took 30 ms
    assert pace.wait(100) == pytest.approx(0.07)


def test_a_slow_page_is_not_made_up_for_by_the_next_ones() -> None:
    clock = Clock()
    pace = Pace(1000, clock=clock)

    clock.now += 0.5  # a slow page: the provider took half a second
    assert pace.wait(100) == 0
    clock.now += 0.01
    # Its 400 ms over the allotment are not credited: the next page still waits out its own 100 ms.
    assert pace.wait(100) == pytest.approx(0.09)


def test_unpaced_never_waits() -> None:
    clock = Clock()
    assert Pace(0, clock=clock).wait(10_000) == 0


def test_a_paced_run_takes_at_least_its_items_over_the_rate(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app(recovery_events_per_second=200)
    outage(fake, 300)  # three pages of 100, each allotted half a second

    started = time.monotonic()
    report = Recoverer(client)("stripe", since=SINCE, until=UNTIL)
    elapsed = time.monotonic() - started

    assert (report.outcome, report.pages, report.new) == ("ok", 3, 300)
    assert elapsed >= 1.5
