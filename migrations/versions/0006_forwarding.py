"""Forwarding to NATS: the relay's cursor, the published payment states, and (PostgreSQL) the record of
each statement's new events by transaction, kept by a trigger (models.FORWARD_TRIGGER_DDL).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "forward_batches",
        sa.Column("seq", models.BigId, primary_key=True, autoincrement=True),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("event_ids", models.EventIds, nullable=False),
        sa.Column("recorded_at", models.UTCDateTime(), nullable=False),
    )
    op.create_index("ix_forward_batches_txid_seq", "forward_batches", ["txid", "seq"])
    op.create_table(
        "forward_cursor",
        sa.Column("stream", sa.String(64), primary_key=True),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("event_row_id", sa.BigInteger(), nullable=False),
        sa.Column("events_published", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", models.UTCDateTime(), nullable=False),
    )
    op.create_table(
        "forward_payment_states",
        sa.Column("provider", sa.String(32), primary_key=True),
        sa.Column("payment_id", sa.String(255), primary_key=True),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("status_rank", sa.Integer(), nullable=False),
        sa.Column("status_occurred_at", models.UTCDateTime(), nullable=False),
        sa.Column("status_event_row_id", sa.BigInteger(), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in models.FORWARD_TRIGGER_DDL:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in models.FORWARD_TRIGGER_DROP:
            op.execute(statement)
    op.drop_table("forward_payment_states")
    op.drop_table("forward_cursor")
    op.drop_index("ix_forward_batches_txid_seq", table_name="forward_batches")
    op.drop_table("forward_batches")
