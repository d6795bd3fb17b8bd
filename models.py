"""The schema. The unique constraint on (provider, event_id) is the idempotency guarantee, and the unique
index on (provider, signed_key) keeps a signature from being accepted for two bodies: the database, not
application code, decides whether a delivery is new."""

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on every dialect.

    SQLite has no time zone type, so values are stored as naive UTC there and made aware on the way
    out; PostgreSQL stores timestamptz. Naive values are refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Str32 = Annotated[str, mapped_column(String(32))]
Str255 = Annotated[str, mapped_column(String(255))]
UTC_TIME = Annotated[datetime, mapped_column(UTCDateTime())]


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Event(Base):
    __tablename__ = "webhook_events"

    # Also the receipt order: ties between events of equal occurred_at are broken by it.
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[Str32]
    event_id: Mapped[Str255]
    id_derived: Mapped[bool] = mapped_column(default=False)
    event_type: Mapped[str | None] = mapped_column(String(255))
    payment_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str | None] = mapped_column(String(32))
    provider_status: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    occurred_at: Mapped[UTC_TIME]
    received_at: Mapped[UTC_TIME]
    raw_body: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, Any]]
    # Set when retention emptied raw_body (`make purge DAYS=n REDACT=1`): the row still deduplicates.
    redacted_at: Mapped[datetime | None]
    # What the signature binds when the event id is not signed (events.NormalizedEvent.signed_key).
    signed_key: Mapped[str | None] = mapped_column(String(255))
    # "webhook" (a signed delivery) or "recovery" (read back from the provider's API, recovery/).
    origin: Mapped[str] = mapped_column(String(16), default="webhook", server_default="webhook")

    __table_args__ = (
        UniqueConstraint("provider", "event_id", name="uq_webhook_events_provider_event_id"),
        # The second guarantee: a signed key is stored once per provider. Rows without one (NULL) never
        # conflict. Batches insert with ON CONFLICT DO NOTHING over both, so neither is check-then-insert.
        # The key leads: a read by provider and event id must not find a prefix of this index to scan.
        Index("uq_webhook_events_provider_signed_key", "signed_key", "provider", unique=True),
        # A payment's history in order is one index range scan, however many events are stored.
        Index("ix_webhook_events_payment_history", "payment_id", "occurred_at", "id"),
        Index("ix_webhook_events_received_at", "received_at"),
    )


class Payment(Base):
    """The current state of each payment: a projection of its events, updated in the same transaction
    as the event insert, and rebuildable from the events table (`python -m cli rebuild-payments`)."""

    __tablename__ = "payments"

    provider: Mapped[Str32] = mapped_column(primary_key=True)
    payment_id: Mapped[Str255] = mapped_column(primary_key=True)
    status: Mapped[str | None] = mapped_column(String(32))
    provider_status: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    first_seen_at: Mapped[UTC_TIME]
    last_event_at: Mapped[UTC_TIME]
    event_count: Mapped[int] = mapped_column(BigInteger)
    # Which event set the status: (rank, occurred_at, event row id). A new event replaces the status
    # only when its triple is greater, so any delivery order folds to the same state.
    status_rank: Mapped[int]
    status_occurred_at: Mapped[UTC_TIME]
    status_event_id: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_payments_payment_id", "payment_id"),)


class RecoveryState(Base):
    """Per provider, where recovery (recovery/) has read up to and who is reading now. The lease is a
    row, not an advisory lock, so it works the same on SQLite and PostgreSQL and outlives no runner: a
    runner that dies stops renewing it, and another takes over when it lapses."""

    __tablename__ = "recovery_state"

    provider: Mapped[Str32] = mapped_column(primary_key=True)
    # Everything the provider created before this time has been read and stored.
    high_water_mark: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
