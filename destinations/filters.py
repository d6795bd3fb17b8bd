"""The destinations' filters as the database keeps them (models.DestinationFilter), for the trigger
that owes each new event in the transaction that stores it (models.DESTINATION_TRIGGER_DDL).

Written from DESTINATIONS_FILE at every start, so the trigger owes what the file declares; with several
instances over one database they must share one file. Event-type patterns are translated to the
database's own: `*` matches any run of characters there as in the file (Destination.matches), and every
other character only itself."""

from collections.abc import Sequence
from typing import Final

from sqlalchemy import Connection, delete, text
from sqlalchemy.dialects import postgresql, sqlite

from destinations.file import Destination
from models import DESTINATION_MATCH_SQL, DESTINATION_OWED_COLUMNS, DESTINATION_OWED_VALUES, DestinationFilter

# The cursor of the intake that owed events before the trigger did (migration 0009), in forward_cursor.
LEGACY_INTAKE: Final = "http/destinations"


def pattern(wildcard: str, dialect_name: str) -> str:
    """A file's event-type pattern as LIKE (PostgreSQL, backslash escapes) or GLOB (SQLite: a
    character class holds a literal `?` or `[`) reads it. Both compare case-sensitively."""
    if dialect_name == "postgresql":
        escaped = wildcard.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return escaped.replace("*", "%")
    return "".join({"?": "[?]", "[": "[[]"}.get(character, character) for character in wildcard)


def write(connection: Connection, destinations: Sequence[Destination]) -> None:
    """Make the filters the file's: a destination removed from it is owed nothing more. Upserted rather
    than replaced, so that instances starting together over one database do not collide."""
    dialect = connection.dialect.name
    names = [destination.name for destination in destinations]
    connection.execute(delete(DestinationFilter).where(DestinationFilter.destination.not_in(names)))
    rows = [
        {
            "destination": destination.name,
            "providers": destination.providers,
            "statuses": destination.statuses,
            "event_types": None
            if destination.event_types is None
            else [pattern(each, dialect) for each in destination.event_types],
        }
        for destination in destinations
    ]
    if rows:
        upsert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(DestinationFilter)
        columns = ("providers", "statuses", "event_types")
        connection.execute(
            upsert.on_conflict_do_update(
                index_elements=["destination"], set_={name: upsert.excluded[name] for name in columns}
            ),
            rows,
        )


def catch_up(connection: Connection) -> int:
    """Owe the events the intake had not reached when the trigger took over, then drop its cursor, so
    that forwarding's batches are no longer kept for it; how many rows were owed. Runs after `write`,
    in its transaction. Owing twice is harmless: a delivery is unique per destination and event."""
    dialect = connection.dialect.name
    exists = connection.execute(
        text("SELECT 1 FROM forward_cursor WHERE stream = :stream"), {"stream": LEGACY_INTAKE}
    ).first()
    if exists is None:
        return 0
    if dialect == "postgresql":
        # Every batch after the cursor is committed: creating the trigger waited for the transactions
        # inserting then, and the batches since are owed by the trigger as well.
        after = """
            e.id IN (SELECT listed.id FROM forward_cursor c
                     JOIN forward_batches b ON (b.txid, b.seq) > (c.txid, c.seq)
                     CROSS JOIN LATERAL unnest(b.event_ids) AS listed(id)
                     WHERE c.stream = :stream)
        """
    else:
        after = "e.id > (SELECT event_row_id FROM forward_cursor WHERE stream = :stream)"
    owed = connection.execute(
        text(
            f"""
            INSERT INTO destination_deliveries ({DESTINATION_OWED_COLUMNS})
            SELECT {DESTINATION_OWED_VALUES}
            FROM webhook_events e JOIN destination_filters f ON {DESTINATION_MATCH_SQL[dialect]}
            WHERE {after}
            ORDER BY e.id, f.destination
            ON CONFLICT (destination, event_row_id) DO NOTHING
            """  # noqa: S608 (fixed SQL of this module's and models' own; values are bound)
        ),
        {"stream": LEGACY_INTAKE},
    ).rowcount
    connection.execute(text("DELETE FROM forward_cursor WHERE stream = :stream"), {"stream": LEGACY_INTAKE})
    if dialect == "postgresql":
        # With no cursor left (forwarding to NATS off) the trigger records nothing more; what it did
        # record was kept for the intake alone.
        connection.execute(
            text("DELETE FROM forward_batches WHERE NOT EXISTS (SELECT 1 FROM forward_cursor)")
        )
    return int(owed)
