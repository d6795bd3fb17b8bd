"""The events of one transaction, as both databases' writers plan it: no SQLAlchemy here, since SQLite's
writer process (ingest/sqlite_writer.py) runs it too."""

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from payments.events import NormalizedEvent


@dataclass
class Batch:
    """The events of one transaction: each (provider, event_id) once, in key order."""

    events: Sequence[NormalizedEvent]
    unique: list[NormalizedEvent]
    first_index: dict[tuple[str, str], int]

    @classmethod
    def plan(cls, events: Sequence[NormalizedEvent]) -> "Batch":
        first_index: dict[tuple[str, str], int] = {}
        for index, event in enumerate(events):
            first_index.setdefault((event.provider, event.event_id), index)
        # Sorted keys: concurrent writers (other processes) take the unique-index locks in the same
        # order, so they queue behind each other instead of deadlocking.
        keys = sorted(first_index)
        return cls(events=events, unique=[events[first_index[key]] for key in keys], first_index=first_index)

    def outcomes(self, inserted: Collection[tuple[str, str]]) -> list[bool]:
        """Per event, new or not, given the keys the database inserted. Of several deliveries of one
        event in a batch, the first is the new one; the rest are duplicates, as if they had arrived
        just after it."""
        keys = ((event.provider, event.event_id) for event in self.events)
        return [self.first_index[key] == index and key in inserted for index, key in enumerate(keys)]
