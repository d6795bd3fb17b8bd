"""One runner at a time across instances: of several asking at once, one gets a provider's lease; a run
renews it when a quarter of it has passed and stops once another runner holds it."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from models import RecoveryState
from recovery import state
from recovery.run import Report
from tests.recovery.conftest import Recoverer
from tests.recovery.fake_api import FakeProviders
from tests.recovery.test_stripe import SINCE, UNTIL, outage


def test_of_instances_asking_at_once_exactly_one_gets_the_lease(migrated_engine: Engine) -> None:
    owners = [f"instance-{i}" for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        taken = list(
            pool.map(
                lambda owner: state.take_lease(migrated_engine, provider="stripe", owner=owner, seconds=60),
                owners,
            )
        )

    assert sum(taken) == 1
    holder = owners[taken.index(True)]
    assert state.take_lease(migrated_engine, provider="stripe", owner=holder, seconds=60)  # renewed
    assert not state.take_lease(migrated_engine, provider="stripe", owner="late", seconds=60)
    # Providers are leased independently.
    assert state.take_lease(migrated_engine, provider="razorpay", owner="late", seconds=60)


def test_the_mark_moves_only_forward_and_only_for_the_lease_holder(migrated_engine: Engine) -> None:
    later, earlier = datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    assert state.take_lease(migrated_engine, provider="stripe", owner="a", seconds=60)

    assert not state.advance(migrated_engine, provider="stripe", owner="b", to=later)
    assert state.advance(migrated_engine, provider="stripe", owner="a", to=later)
    assert not state.advance(migrated_engine, provider="stripe", owner="a", to=earlier)
    assert state.high_water_mark(migrated_engine, provider="stripe") == later


def lease_until(client: TestClient) -> datetime | None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        return connection.execute(select(RecoveryState.lease_until)).scalar_one_or_none()


def test_a_run_renews_its_lease_once_a_quarter_of_it_has_passed(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    outage(fake, 300)
    recover = Recoverer(client)
    seen: list[datetime | None] = []

    # A 10-minute lease: a run of three quick pages never renews it (no write between pages).
    report = recover(
        "stripe",
        since=SINCE,
        until=UNTIL,
        lease_seconds=600,
        on_page=lambda _: seen.append(lease_until(client)),
    )
    assert (report.outcome, report.pages) == ("ok", 3)
    assert len(set(seen)) == 1

    # A lease that lapses at once is due for renewal after every page: each page moves it on.
    seen.clear()
    report = recover(
        "stripe",
        since=SINCE,
        until=UNTIL,
        lease_seconds=0,
        on_page=lambda _: seen.append(lease_until(client)),
    )
    assert report.pages == 3
    stamps = [stamp for stamp in seen if stamp is not None]
    assert len(set(stamps)) == 3 and stamps == sorted(stamps)


def test_a_run_whose_lease_was_taken_over_stops_at_its_next_renewal(
    app: Callable[..., TestClient], fake: FakeProviders
) -> None:
    client = app()
    outage(fake, 300)
    engine = client.app.state.engine  # type: ignore[attr-defined]

    def take_over(report: Report) -> None:
        # Another runner takes the lease this one let lapse (seconds=0: lapsed as soon as renewed).
        assert state.take_lease(engine, provider="stripe", owner="other", seconds=60)

    report = Recoverer(client)(
        "stripe", since=SINCE, until=UNTIL, owner="slow", lease_seconds=0, on_page=take_over
    )

    assert (report.outcome, report.pages, report.new) == ("lease_lost", 1, 100)
    assert state.high_water_mark(engine, provider="stripe") is None
    assert not state.take_lease(engine, provider="stripe", owner="slow", seconds=60)  # still the other's
