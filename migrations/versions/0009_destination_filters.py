"""Destinations: each new event is owed in the transaction that stores it, by a trigger reading the
destinations' filters (models.DESTINATION_TRIGGER_DDL), instead of by an intake reading the outbox.

Creating the trigger waits for the transactions already inserting events, so every event stored after
it is owed by it; the events before it that the intake had not reached yet are owed at the next start
(destinations.filters.catch_up), once the filters are written.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "destination_filters",
        sa.Column("destination", sa.String(64), primary_key=True),
        sa.Column("providers", models.FilterList, nullable=True),
        sa.Column("statuses", models.FilterList, nullable=True),
        sa.Column("event_types", models.FilterList, nullable=True),
    )
    for statement in models.DESTINATION_TRIGGER_DDL[op.get_bind().dialect.name]:
        op.execute(statement)


def downgrade() -> None:
    for statement in models.DESTINATION_TRIGGER_DROP[op.get_bind().dialect.name]:
        op.execute(statement)
    op.drop_table("destination_filters")
