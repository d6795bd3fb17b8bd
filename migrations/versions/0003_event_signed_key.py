"""webhook_events.signed_key: what the signature binds when the event id is not signed, unique per provider.

Razorpay's event id comes from an unsigned header, so a stored body could be replayed under a new id;
PayPal signs only a CRC32 of the body, so a transmission's signature could be reused for another body.
The key (the body's SHA-256 for Razorpay, the transmission id for PayPal) is filled in for the rows
already stored, oldest first: of several rows with one key (replays stored before this revision), only
the first gets it. A redacted Razorpay row has no body left to hash and stays without one.

Revision ID: 0003
Revises: 0002
Create Date: 2025-07-09
"""

import hashlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHUNK = 1_000
# The schema as of this revision, not models.py's, which moves on.
_events = sa.table(
    "webhook_events",
    sa.column("id", sa.BigInteger()),
    sa.column("provider", sa.String()),
    sa.column("raw_body", sa.LargeBinary()),
    sa.column("headers", sa.JSON()),
    sa.column("redacted_at", sa.DateTime()),
    sa.column("signed_key", sa.String()),
)


def upgrade() -> None:
    # Nullable without a default: a catalogue change only, no table rewrite, on both databases.
    with op.batch_alter_table("webhook_events") as batch_op:
        batch_op.add_column(sa.Column("signed_key", sa.String(length=255), nullable=True))
    # The index first: the backfill's "is this key taken?" is then an index lookup.
    op.create_index(
        "uq_webhook_events_provider_signed_key", "webhook_events", ["signed_key", "provider"], unique=True
    )
    if not context.is_offline_mode():  # `--sql` output has no rows to read
        _backfill(op.get_bind())


def _signed_key(provider: str, raw_body: bytes, headers: Any, redacted: bool) -> str | None:
    # As providers/razorpay.py and providers/paypal.py compute it for a new delivery.
    if provider == "razorpay":
        return None if redacted else "sha256:" + hashlib.sha256(bytes(raw_body)).hexdigest()
    value = headers.get("paypal-transmission-id") if isinstance(headers, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 255 else None


def _backfill(connection: sa.Connection) -> None:
    other = _events.alias("other")
    taken = sa.exists().where(other.c.provider == sa.bindparam("p"), other.c.signed_key == sa.bindparam("k"))
    claim = (
        sa.update(_events)
        .where(_events.c.id == sa.bindparam("row_id"), ~taken)
        .values(signed_key=sa.bindparam("k"))
    )
    last = 0
    while True:
        rows = connection.execute(
            sa.select(
                _events.c.id,
                _events.c.provider,
                _events.c.raw_body,
                _events.c.headers,
                _events.c.redacted_at.is_not(None),
            )
            .where(_events.c.id > last, _events.c.provider.in_(("razorpay", "paypal")))
            .order_by(_events.c.id)
            .limit(_CHUNK)
        ).all()
        if not rows:
            return
        last = rows[-1][0]
        # Run in id order: the first row of a key claims it, later ones find it taken.
        claims = [
            {"row_id": row_id, "p": provider, "k": key}
            for row_id, provider, raw_body, headers, redacted in rows
            if (key := _signed_key(provider, raw_body, headers, redacted)) is not None
        ]
        if claims:
            connection.execute(claim, claims)


def downgrade() -> None:
    op.drop_index("uq_webhook_events_provider_signed_key", table_name="webhook_events")
    with op.batch_alter_table("webhook_events") as batch_op:
        batch_op.drop_column("signed_key")
