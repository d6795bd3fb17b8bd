"""One runner at a time across instances: of several asking at once, one gets a provider's lease."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from sqlalchemy import Engine

from recovery import state


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
