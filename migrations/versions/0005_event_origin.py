"""webhook_events.origin: how an event arrived, "webhook" or "recovery"; recovery_state: each
provider's recovery high-water mark and the lease that keeps one runner at a time.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant server default: existing rows read "webhook" (every row so far was a delivery), and
    # PostgreSQL 11+ adds such a column without rewriting the table.
    with op.batch_alter_table("webhook_events") as batch_op:
        batch_op.add_column(sa.Column("origin", sa.String(16), nullable=False, server_default="webhook"))
    op.create_table(
        "recovery_state",
        sa.Column("provider", sa.String(32), primary_key=True),
        sa.Column("high_water_mark", models.UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", models.UTCDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("recovery_state")
    with op.batch_alter_table("webhook_events") as batch_op:
        batch_op.drop_column("origin")
