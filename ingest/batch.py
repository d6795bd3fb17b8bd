"""The events of one transaction, as both databases' writers plan it: no SQLAlchemy here, since SQLite's
writer process (ingest/sqlite_writer.py) runs it too."""

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from payments.events import NormalizedEvent

# An event's outcome: True stored by this batch, False stored before (a duplicate), None refused (not
# stored: its signed key is stored with another body, a signature presented again for a forged body).
Outcome = bool | None
SignedKey = tuple[str, str]  # (provider, signed key)
EventKey = tuple[str, str]  # (provider, event_id)
# Only a delivery over HTTP counts in an event's delivery_count: a copy read back by recovery does not.
DELIVERED_ORIGIN = "webhook"


@dataclass
class Batch:
    """The events of one transaction: each (provider, event_id) once, in key order, and each signed key
    once, with the delivery that arrived first."""

    events: Sequence[NormalizedEvent]
    unique: list[NormalizedEvent]
    first_index: dict[EventKey, int]
    # Per event key, the later deliveries in this batch that repeat its first one (`_repeats`): they are
    # counted with it, in the statement that stores or counts the first.
    repeats: dict[EventKey, list[int]] = field(default_factory=dict)

    @classmethod
    def plan(cls, events: Sequence[NormalizedEvent]) -> "Batch":
        first_index: dict[EventKey, int] = {}
        repeats: dict[EventKey, list[int]] = {}
        signed_keys: set[SignedKey] = set()
        for index, event in enumerate(events):
            key = (event.provider, event.event_id)
            first = first_index.setdefault(key, index)
            if first != index and _repeats(events[first], event):
                repeats.setdefault(key, []).append(index)
        # Of two events with one signed key, the database would keep the first in key order, which the
        # sender of the later one could choose: the one that arrived first is written, the later one is
        # settled against it (`unsettled`), as if it had come in the next batch.
        written: list[tuple[str, str]] = []
        for key, index in first_index.items():  # in order of arrival
            event = events[index]
            if event.signed_key is not None:
                if (event.provider, event.signed_key) in signed_keys:
                    continue
                signed_keys.add((event.provider, event.signed_key))
            written.append(key)
        # Sorted keys: concurrent writers (other processes) take the unique-index locks in the same
        # order, so they queue behind each other instead of deadlocking.
        unique = [events[first_index[key]] for key in sorted(written)]
        return cls(events=events, unique=unique, first_index=first_index, repeats=repeats)

    def delivered(self, first: NormalizedEvent) -> tuple[int, datetime | None]:
        """For an event of `unique`: how many deliveries of it this batch counts with it, the first (when
        it came over HTTP) and its repeats, and when the last of them was received."""
        counted = [first] if first.origin == DELIVERED_ORIGIN else []
        if repeats := self.repeats.get((first.provider, first.event_id)):
            counted += (self.events[index] for index in repeats)
        elif counted:  # the usual case: one delivery
            return 1, first.received_at
        return len(counted), max((event.received_at for event in counted), default=None)

    def uncounted(
        self, inserted: Collection[EventKey], counted: Collection[EventKey] = ()
    ) -> list[NormalizedEvent]:
        """The deliveries over HTTP that this batch did not store and the batch statement did not count:
        each an authentic delivery of a stored event unless `outcomes` refuses it, which the statement
        that counts them decides the same way (sinks.count_deliveries). `inserted` are the keys stored,
        each counted with its repeats (`delivered`); `counted` the keys whose stored row the batch
        statement found and counted, first delivery and repeats (PostgreSQL only)."""
        done: set[int] = set()
        for key in (*inserted, *counted):
            done.add(self.first_index[key])
            done.update(self.repeats.get(key, ()))
        return [
            event
            for index, event in enumerate(self.events)
            if event.origin == DELIVERED_ORIGIN and index not in done
        ]

    def unsettled(self, inserted: Collection[tuple[str, str]]) -> list[SignedKey]:
        """The signed keys of the events this batch did not store: whether each is a duplicate or a
        reused signature depends on the body of the row that holds its key (`outcomes`' `holders`)."""
        keys = {
            (event.provider, event.signed_key)
            for index, event in enumerate(self.events)
            if event.signed_key is not None
            and not self._stored(index, event, inserted)
            and not _is_body_digest(event.signed_key, event.raw_body)
        }
        return sorted(keys)

    def outcomes(
        self, inserted: Collection[tuple[str, str]], holders: Mapping[SignedKey, bytes | None]
    ) -> list[Outcome]:
        """Per event, given the (provider, event_id) keys the database inserted and, for the `unsettled`
        signed keys, the body of the row holding each (None when retention emptied it). Of several
        deliveries of one event in a batch, the first is the new one; the rest are duplicates, as if
        they had arrived just after it. An event not stored whose signed key is held by a row with
        another body is refused."""
        outcomes: list[Outcome] = []
        for index, event in enumerate(self.events):
            if self._stored(index, event, inserted):
                outcomes.append(True)
                continue
            held = holders.get((event.provider, event.signed_key)) if event.signed_key is not None else None
            # A holder whose body retention emptied (None) cannot be compared. It is older than the
            # retention period, far past PayPal's replay window, so this is a retry of a Razorpay body
            # (whose key is the body's digest): a duplicate. Nothing is stored either way.
            outcomes.append(None if held is not None and held != event.raw_body else False)
        return outcomes

    def _stored(self, index: int, event: NormalizedEvent, inserted: Collection[tuple[str, str]]) -> bool:
        key = (event.provider, event.event_id)
        return self.first_index[key] == index and key in inserted


def _repeats(first: NormalizedEvent, later: NormalizedEvent) -> bool:
    """Whether `later`, a delivery of the same event key, is the same delivery as `first` once more over
    HTTP, so certainly authentic wherever `first` is counted: no signed key (it cannot be refused), or
    the same signed key with the same body (the row holding the key holds this body)."""
    if later.origin != DELIVERED_ORIGIN or later.signed_key != first.signed_key:
        return False
    return later.signed_key is None or later.raw_body == first.raw_body


def _is_body_digest(signed_key: str, body: bytes) -> bool:
    """Whether the key is the body's own digest (Razorpay's): a row holding an equal key holds an equal
    body, so a delivery that did not store is a duplicate without reading that row back."""
    return signed_key == "sha256:" + hashlib.sha256(body).hexdigest()
