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
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
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
    # Authentic deliveries over HTTP of this event: the first, and each duplicate since (a copy read back
    # by recovery is not a delivery, so a recovered event starts at 0). The batch writers set both
    # columns (ingest/sinks.py), in the batch's transaction.
    delivery_count: Mapped[int] = mapped_column(BigInteger, default=1, server_default="1")
    # When the last of those deliveries was received (UTC); NULL while there has been none.
    last_delivered_at: Mapped[datetime | None]

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


# --- forwarding to NATS (forwarding/): the events table is the outbox --------------------------------

# PostgreSQL assigns event ids from a sequence before commit, so ids are not commit order when batches
# commit concurrently. Each statement that inserts events therefore records its new ids, with its
# transaction id, in forward_batches (a trigger, so every writer is covered). The relay publishes
# batches whose transaction id is below the oldest transaction still running: those batches are final,
# and any batch committed later has a greater transaction id, so nothing is skipped. The trigger records
# only once forwarding has been started (a forward_cursor row exists). SQLite has one writer at a time,
# so its ids are commit order and the relay reads the events table by id.
FORWARD_TRIGGER_DDL: tuple[str, ...] = (
    """
    CREATE OR REPLACE FUNCTION forward_record_batch() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM forward_cursor) THEN
            INSERT INTO forward_batches (txid, event_ids, recorded_at)
            SELECT pg_current_xact_id()::text::bigint, array_agg(id ORDER BY id), now()
            FROM new_events HAVING count(*) > 0;
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE OR REPLACE TRIGGER webhook_events_forward AFTER INSERT ON webhook_events
    REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION forward_record_batch()
    """,
)
FORWARD_TRIGGER_DROP: tuple[str, ...] = (
    "DROP TRIGGER IF EXISTS webhook_events_forward ON webhook_events",
    "DROP FUNCTION IF EXISTS forward_record_batch()",
)
EventIds = ARRAY(BigInteger).with_variant(JSON(), "sqlite")


class ForwardBatch(Base):
    """One statement's new events, by transaction (PostgreSQL only; see FORWARD_TRIGGER_DDL). Rows that
    every cursor (the relay's, destinations' intake's) has passed are deleted, so the table stays small."""

    __tablename__ = "forward_batches"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    txid: Mapped[int] = mapped_column(BigInteger)
    event_ids: Mapped[list[int]] = mapped_column(EventIds)
    recorded_at: Mapped[UTC_TIME]

    __table_args__ = (Index("ix_forward_batches_txid_seq", "txid", "seq"),)


class ForwardCursor(Base):
    """The relay's durable position, one row per stream: everything up to it is in the stream. On
    PostgreSQL the position is (txid, seq) of forward_batches; on SQLite the last event row id."""

    __tablename__ = "forward_cursor"

    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    txid: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger)
    event_row_id: Mapped[int] = mapped_column(BigInteger)
    events_published: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[UTC_TIME]


class ForwardPaymentState(Base):
    """Each payment's status as published on payments.state.*, moved in the same transaction as the
    cursor: a state message is published when an event changes it (payments.fold.status_order)."""

    __tablename__ = "forward_payment_states"

    provider: Mapped[Str32] = mapped_column(primary_key=True)
    payment_id: Mapped[Str255] = mapped_column(primary_key=True)
    status: Mapped[str | None] = mapped_column(String(32))
    status_rank: Mapped[int]
    status_occurred_at: Mapped[UTC_TIME]
    status_event_row_id: Mapped[int] = mapped_column(BigInteger)


def _create_forward_trigger(target: Any, connection: Any, **_: Any) -> None:
    if connection.dialect.name == "postgresql":
        for statement in FORWARD_TRIGGER_DDL:
            connection.exec_driver_sql(statement)


# create_all (tests, a fresh schema without Alembic) gets the trigger as the migration makes it.
event.listen(Event.__table__, "after_create", _create_forward_trigger)


# --- destinations (destinations/): signed HTTP forwarding to the operator's own services ------------

# Each new event is owed to the destinations whose filters it matches in the transaction that stores
# it, by a trigger on webhook_events: every writer is covered (the service's, `cli recover`'s, any
# instance's), nothing committed is left unowed, and nothing has to read the events back to owe them.
# The filters are the rows of destination_filters, which the service writes from DESTINATIONS_FILE at
# start-up (destinations/filters.py). Each filter is one row per destination; a NULL list matches
# everything; an event without a type matches as the empty string (destinations.file.Destination.matches).
# `e` is the new event: PostgreSQL's statement trigger joins its transition table, SQLite's row trigger
# selects from NEW.
DESTINATION_MATCH_SQL: dict[str, str] = {
    "postgresql": """
        (f.providers IS NULL OR e.provider = ANY (f.providers))
        AND (f.statuses IS NULL OR e.status = ANY (f.statuses))
        AND (f.event_types IS NULL
             OR EXISTS (SELECT 1 FROM unnest(f.event_types) AS p(pattern)
                        WHERE coalesce(e.event_type, '') LIKE p.pattern))
    """,
    "sqlite": """
        (f.providers IS NULL OR EXISTS (SELECT 1 FROM json_each(f.providers) WHERE value = e.provider))
        AND (f.statuses IS NULL OR EXISTS (SELECT 1 FROM json_each(f.statuses) WHERE value = e.status))
        AND (f.event_types IS NULL
             OR EXISTS (SELECT 1 FROM json_each(f.event_types)
                        WHERE coalesce(e.event_type, '') GLOB value))
    """,
}
# The columns of an owed row, from the event `e` and the filter `f`: due at once, queued when received.
DESTINATION_OWED_COLUMNS = (
    "destination, event_row_id, provider, event_id, payment_id, state, attempts, round_attempts,"
    " queued_at, next_attempt_at, updated_at"
)
DESTINATION_OWED_VALUES = (
    "f.destination, e.id, e.provider, e.event_id, e.payment_id, 'pending', 0, 0,"
    " e.received_at, e.received_at, e.received_at"
)
DESTINATION_TRIGGER_DDL: dict[str, tuple[str, ...]] = {
    # Sequential scans are turned on inside the function: the writer's connection has them off
    # (database.connect_async), and the filters' table, a few rows, has no index to scan instead.
    # No ON CONFLICT here, unlike SQLite's: the events are new rows of this statement with ids from a
    # sequence, so no delivery can name them yet (the start-up catch-up and replays owe only committed
    # events), and a plain insert costs PostgreSQL less than a checked one (BENCHMARKS.md,
    # "Destinations"). SQLite's can hand out the id of a deleted row again (ops/retention.py keeps the
    # newest row so that it does not): there the check stays.
    "postgresql": (
        f"""
        CREATE OR REPLACE FUNCTION destinations_owe() RETURNS trigger LANGUAGE plpgsql
        SET enable_seqscan = on AS $$
        BEGIN
            INSERT INTO destination_deliveries ({DESTINATION_OWED_COLUMNS})
            SELECT {DESTINATION_OWED_VALUES}
            FROM new_events e JOIN destination_filters f ON {DESTINATION_MATCH_SQL["postgresql"]}
            ORDER BY e.id, f.destination;
            RETURN NULL;
        END $$
        """,  # noqa: S608 (fixed SQL of this module's own constants)
        """
        CREATE OR REPLACE TRIGGER webhook_events_destinations AFTER INSERT ON webhook_events
        REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION destinations_owe()
        """,
    ),
    "sqlite": (
        f"""
        CREATE TRIGGER IF NOT EXISTS webhook_events_destinations AFTER INSERT ON webhook_events
        BEGIN
            INSERT INTO destination_deliveries ({DESTINATION_OWED_COLUMNS})
            SELECT {DESTINATION_OWED_VALUES}
            FROM (SELECT NEW.id AS id, NEW.provider AS provider, NEW.event_id AS event_id,
                         NEW.event_type AS event_type, NEW.payment_id AS payment_id,
                         NEW.status AS status, NEW.received_at AS received_at) AS e
            JOIN destination_filters f
            WHERE {DESTINATION_MATCH_SQL["sqlite"]}
            ORDER BY f.destination
            ON CONFLICT (destination, event_row_id) DO NOTHING;
        END
        """,  # noqa: S608 (fixed SQL of this module's own constants)
    ),
}
DESTINATION_TRIGGER_DROP: dict[str, tuple[str, ...]] = {
    "postgresql": (
        "DROP TRIGGER IF EXISTS webhook_events_destinations ON webhook_events",
        "DROP FUNCTION IF EXISTS destinations_owe()",
    ),
    "sqlite": ("DROP TRIGGER IF EXISTS webhook_events_destinations",),
}
# PostgreSQL: lists of text; SQLite: JSON arrays (json_each reads them). NULL: no filter.
FilterList = ARRAY(String(255)).with_variant(JSON(none_as_null=True), "sqlite")


class DestinationFilter(Base):
    """What a destination is owed, as DESTINATIONS_FILE declares it, for the trigger above: providers and
    statuses as given, event types as patterns of the database's own (LIKE on PostgreSQL, GLOB on
    SQLite), each NULL when the file sets no filter."""

    __tablename__ = "destination_filters"

    destination: Mapped[str] = mapped_column(String(64), primary_key=True)
    providers: Mapped[list[str] | None] = mapped_column(FilterList)
    statuses: Mapped[list[str] | None] = mapped_column(FilterList)
    event_types: Mapped[list[str] | None] = mapped_column(FilterList)


def _create_destination_trigger(target: Any, connection: Any, **_: Any) -> None:
    for statement in DESTINATION_TRIGGER_DDL[connection.dialect.name]:
        connection.exec_driver_sql(statement)


# create_all gets the trigger as the migration makes it, on webhook_events (defined above); the tables
# its body writes and reads are looked up when it fires.
event.listen(DestinationFilter.__table__, "after_create", _create_destination_trigger)


class DestinationDelivery(Base):
    """One event owed to one destination, added with its event (DESTINATION_TRIGGER_DDL). The id is the
    order that per-payment ordering follows: the order the events were stored in, except that on
    PostgreSQL transactions writing at once take ids as their statements run, which need not be the
    order they commit in (two events of one payment stored within the same few milliseconds). `state`
    is pending, delivered or dead; `round_attempts` counts the attempts since the event was last queued
    (a replay starts a new round), `attempts` every attempt ever (the number the next attempt record gets)."""

    __tablename__ = "destination_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    destination: Mapped[str] = mapped_column(String(64))
    event_row_id: Mapped[int] = mapped_column(BigInteger)
    provider: Mapped[Str32]
    event_id: Mapped[Str255]
    payment_id: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int]
    round_attempts: Mapped[int]
    queued_at: Mapped[UTC_TIME]
    next_attempt_at: Mapped[UTC_TIME]
    updated_at: Mapped[UTC_TIME]
    replay_id: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        # The guarantee that an event is owed once per destination, however often the intake repeats.
        UniqueConstraint("destination", "event_row_id", name="uq_destination_deliveries_event"),
        # Partial indexes over the pending rows only: they stay as small as the backlog, however many
        # deliveries are done, and each matches one question exactly. What is due next:
        Index(
            "ix_destination_deliveries_due",
            "destination",
            "next_attempt_at",
            "id",
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
        # Per-payment ordering: is an earlier event of this payment still owed?
        Index(
            "ix_destination_deliveries_payment",
            "destination",
            "provider",
            "payment_id",
            "id",
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
        # The dead list and the counts by state, in id order.
        Index("ix_destination_deliveries_state_id", "destination", "state", "id"),
        # A replay's own rows: only replayed rows have a replay id, so rows owed as they are stored
        # add nothing to this index.
        Index(
            "ix_destination_deliveries_replay",
            "replay_id",
            postgresql_where=text("replay_id IS NOT NULL"),
            sqlite_where=text("replay_id IS NOT NULL"),
        ),
    )


class DestinationAttempt(Base):
    """Every attempt, durably: recorded in the transaction that moves its delivery on."""

    __tablename__ = "destination_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(BigInteger)
    destination: Mapped[str] = mapped_column(String(64))
    provider: Mapped[Str32]
    event_id: Mapped[Str255]
    attempt: Mapped[int]
    attempted_at: Mapped[UTC_TIME]
    # delivered, or failed; a failed attempt has a status code (any non-2xx) or an error class.
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(32))
    latency_ms: Mapped[float] = mapped_column(Float)
    # The first 1 KiB of the answer's body, as text (undecodable bytes replaced).
    response_body: Mapped[str | None] = mapped_column(String())

    __table_args__ = (
        Index("ix_destination_attempts_event", "provider", "event_id", "id"),
        Index("ix_destination_attempts_delivery", "delivery_id"),
    )


class DestinationStatus(Base):
    """Per destination: paused or not, and the last success and failure (GET /destinations)."""

    __tablename__ = "destination_status"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    paused: Mapped[bool] = mapped_column(default=False)
    last_success_at: Mapped[datetime | None]
    last_failure_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[UTC_TIME]


class DestinationReplay(Base):
    """A replay: which filter, how many events it queued. A replay of the same filter while its events
    are still pending answers this one again instead of queueing them twice."""

    __tablename__ = "destination_replays"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    destination: Mapped[str] = mapped_column(String(64))
    filter_key: Mapped[str] = mapped_column(String(64))
    filter: Mapped[dict[str, Any]]
    queued: Mapped[int]
    created_at: Mapped[UTC_TIME]

    __table_args__ = (Index("ix_destination_replays_filter", "destination", "filter_key", "id"),)
