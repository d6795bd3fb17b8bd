"""webhook_events.delivery_count and last_delivered_at: how many authentic deliveries of each event
arrived over HTTP, and when the last one did.

Existing rows are given what is known of them: a delivered event ("webhook") was delivered at least
once, when it was stored; a recovered one ("recovery") was not delivered at all as far as the table
knows, since duplicates were not counted before this revision.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant server default: PostgreSQL 11+ adds the column without rewriting the table; the
    # backfill below then touches only what differs from it.
    with op.batch_alter_table("webhook_events") as batch_op:
        batch_op.add_column(sa.Column("delivery_count", sa.BigInteger(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("last_delivered_at", models.UTCDateTime(), nullable=True))
    events = sa.table(
        "webhook_events",
        sa.column("origin", sa.String()),
        sa.column("received_at", models.UTCDateTime()),
        sa.column("delivery_count", sa.BigInteger()),
        sa.column("last_delivered_at", models.UTCDateTime()),
    )
    # Column to column: no value crosses the connection, so UTCDateTime's conversions play no part.
    op.execute(
        events.update()
        .where(events.c.origin == "webhook")
        .values(last_delivered_at=events.c.received_at)
    )
    op.execute(events.update().where(events.c.origin != "webhook").values(delivery_count=0))


def downgrade() -> None:
    with op.batch_alter_table("webhook_events") as batch_op:
        batch_op.drop_column("last_delivered_at")
        batch_op.drop_column("delivery_count")
