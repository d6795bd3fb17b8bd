"""Initial schema: webhook_events (unique per provider and event id) and the payments projection.

Revision ID: 0001
Revises:
Create Date: 2025-07-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in models.py: SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "webhook_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("id_derived", sa.Boolean(), nullable=False),
        sa.Column("event_type", sa.String(length=255), nullable=True),
        sa.Column("payment_id", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("provider_status", sa.String(length=255), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("occurred_at", models.UTCDateTime(), nullable=False),
        sa.Column("received_at", models.UTCDateTime(), nullable=False),
        sa.Column("raw_body", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        # The idempotency guarantee: the database decides whether a delivery is new.
        sa.UniqueConstraint("provider", "event_id", name="uq_webhook_events_provider_event_id"),
    )
    op.create_index(
        "ix_webhook_events_payment_history", "webhook_events", ["payment_id", "occurred_at", "id"]
    )
    op.create_index("ix_webhook_events_received_at", "webhook_events", ["received_at"])

    op.create_table(
        "payments",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("payment_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("provider_status", sa.String(length=255), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("first_seen_at", models.UTCDateTime(), nullable=False),
        sa.Column("last_event_at", models.UTCDateTime(), nullable=False),
        sa.Column("event_count", sa.BigInteger(), nullable=False),
        sa.Column("status_rank", sa.Integer(), nullable=False),
        sa.Column("status_occurred_at", models.UTCDateTime(), nullable=False),
        sa.Column("status_event_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("provider", "payment_id"),
    )
    op.create_index("ix_payments_payment_id", "payments", ["payment_id"])


def downgrade() -> None:
    op.drop_table("payments")
    op.drop_table("webhook_events")
