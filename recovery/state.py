"""What recovery reads and keeps in the database, besides the events it stores through the writer: our
state of the payments a page names, which of its events are stored already (for --dry-run), and per
provider the high-water mark and the lease that keeps one runner at a time across instances."""

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from models import Event, Payment, RecoveryState


def payment_states(engine: Engine, *, provider: str, payment_ids: Collection[str]) -> dict[str, str | None]:
    """Our status of each payment in `payment_ids` that we know of."""
    if not payment_ids:
        return {}
    stmt = select(Payment.payment_id, Payment.status).where(
        Payment.provider == provider, Payment.payment_id.in_(payment_ids)
    )
    with engine.connect() as connection:
        return {payment_id: status for payment_id, status in connection.execute(stmt)}


def stored_event_ids(engine: Engine, *, provider: str, event_ids: Collection[str]) -> set[str]:
    if not event_ids:
        return set()
    stmt = select(Event.event_id).where(Event.provider == provider, Event.event_id.in_(event_ids))
    with engine.connect() as connection:
        return set(connection.execute(stmt).scalars())


def high_water_mark(engine: Engine, *, provider: str) -> datetime | None:
    stmt = select(RecoveryState.high_water_mark).where(RecoveryState.provider == provider)
    with engine.connect() as connection:
        return connection.execute(stmt).scalar_one_or_none()


def take_lease(engine: Engine, *, provider: str, owner: str, seconds: float) -> bool:
    """Take (or renew) the provider's lease for `seconds`; False while another runner holds it. One
    conditional UPDATE, so two instances asking at once cannot both get it."""
    now = datetime.now(UTC)
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    with engine.begin() as connection:
        connection.execute(
            insert(RecoveryState)
            .values(provider=provider)
            .on_conflict_do_nothing(index_elements=["provider"])
        )
        taken = connection.execute(
            update(RecoveryState)
            .where(
                RecoveryState.provider == provider,
                or_(
                    RecoveryState.lease_until.is_(None),
                    RecoveryState.lease_until < now,
                    RecoveryState.lease_owner == owner,
                ),
            )
            .values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds))
        )
    return taken.rowcount == 1


def release_lease(engine: Engine, *, provider: str, owner: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(RecoveryState)
            .where(RecoveryState.provider == provider, RecoveryState.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )


def advance(engine: Engine, *, provider: str, owner: str, to: datetime) -> bool:
    """Move the high-water mark forward to `to` (never back), if `owner` still holds the lease."""
    with engine.begin() as connection:
        moved = connection.execute(
            update(RecoveryState)
            .where(
                RecoveryState.provider == provider,
                RecoveryState.lease_owner == owner,
                or_(RecoveryState.high_water_mark.is_(None), RecoveryState.high_water_mark < to),
            )
            .values(high_water_mark=to)
        )
    return moved.rowcount == 1
