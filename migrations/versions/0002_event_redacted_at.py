"""webhook_events.redacted_at: when retention emptied an event's raw body (the row itself stays).

Revision ID: 0002
Revises: 0001
Create Date: 2025-07-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable without a default: adding it is a catalogue change only, no table rewrite, on both databases.
    with op.batch_alter_table("webhook_events") as batch_op:
        batch_op.add_column(sa.Column("redacted_at", models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_events") as batch_op:
        batch_op.drop_column("redacted_at")
