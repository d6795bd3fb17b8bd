"""Destinations: owing an event costs PostgreSQL less. The replay index holds replayed rows only, and
PostgreSQL's trigger inserts the owed rows without a conflict check (models.DESTINATION_TRIGGER_DDL
says why none can conflict).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REPLAYED = sa.text("replay_id IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_destination_deliveries_replay", table_name="destination_deliveries")
    op.create_index(
        "ix_destination_deliveries_replay",
        "destination_deliveries",
        ["replay_id"],
        postgresql_where=REPLAYED,
        sqlite_where=REPLAYED,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(models.DESTINATION_TRIGGER_DDL["postgresql"][0])  # CREATE OR REPLACE FUNCTION


def downgrade() -> None:
    # The trigger's function stays as it is: without the conflict check it owes the same rows, and
    # 0009's schema is all it needs.
    op.drop_index("ix_destination_deliveries_replay", table_name="destination_deliveries")
    op.create_index("ix_destination_deliveries_replay", "destination_deliveries", ["replay_id"])
