"""Destinations: the deliveries owed to each destination, every attempt, each destination's status, and
the replays.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "destination_deliveries",
        sa.Column("id", models.BigId, primary_key=True, autoincrement=True),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("event_row_id", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("payment_id", sa.String(255), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("round_attempts", sa.Integer(), nullable=False),
        sa.Column("queued_at", models.UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", models.UTCDateTime(), nullable=False),
        sa.Column("updated_at", models.UTCDateTime(), nullable=False),
        sa.Column("replay_id", sa.BigInteger(), nullable=True),
        sa.UniqueConstraint("destination", "event_row_id", name="uq_destination_deliveries_event"),
    )
    pending = sa.text("state = 'pending'")
    op.create_index(
        "ix_destination_deliveries_due",
        "destination_deliveries",
        ["destination", "next_attempt_at", "id"],
        postgresql_where=pending,
        sqlite_where=pending,
    )
    op.create_index(
        "ix_destination_deliveries_payment",
        "destination_deliveries",
        ["destination", "provider", "payment_id", "id"],
        postgresql_where=pending,
        sqlite_where=pending,
    )
    op.create_index(
        "ix_destination_deliveries_state_id", "destination_deliveries", ["destination", "state", "id"]
    )
    op.create_index("ix_destination_deliveries_replay", "destination_deliveries", ["replay_id"])
    op.create_table(
        "destination_attempts",
        sa.Column("id", models.BigId, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("attempted_at", models.UTCDateTime(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(32), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("response_body", sa.String(), nullable=True),
    )
    op.create_index("ix_destination_attempts_event", "destination_attempts", ["provider", "event_id", "id"])
    op.create_index("ix_destination_attempts_delivery", "destination_attempts", ["delivery_id"])
    op.create_table(
        "destination_status",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("last_success_at", models.UTCDateTime(), nullable=True),
        sa.Column("last_failure_at", models.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.String(64), nullable=True),
        sa.Column("updated_at", models.UTCDateTime(), nullable=False),
    )
    op.create_table(
        "destination_replays",
        sa.Column("id", models.BigId, primary_key=True, autoincrement=True),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("filter_key", sa.String(64), nullable=False),
        sa.Column("filter", sa.JSON(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("created_at", models.UTCDateTime(), nullable=False),
    )
    op.create_index(
        "ix_destination_replays_filter", "destination_replays", ["destination", "filter_key", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_destination_replays_filter", table_name="destination_replays")
    op.drop_table("destination_replays")
    op.drop_table("destination_status")
    op.drop_index("ix_destination_attempts_delivery", table_name="destination_attempts")
    op.drop_index("ix_destination_attempts_event", table_name="destination_attempts")
    op.drop_table("destination_attempts")
    op.drop_index("ix_destination_deliveries_replay", table_name="destination_deliveries")
    op.drop_index("ix_destination_deliveries_payment", table_name="destination_deliveries")
    op.drop_index("ix_destination_deliveries_state_id", table_name="destination_deliveries")
    op.drop_index("ix_destination_deliveries_due", table_name="destination_deliveries")
    op.drop_table("destination_deliveries")
