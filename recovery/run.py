"""One recovery run over one provider's window: read its pages, store what is missing through the same
EventWriter.store() as deliveries, and say what changed.

Stored events are new or duplicates exactly as deliveries are (the unique constraint decides), and the
projection folds them unchanged. The high-water mark moves only after a run has read its whole window,
so a run that stops part-way (a crash, a 401, an outage) is read again from the old mark next time:
events read twice are duplicates, and none is lost.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from errors import CredentialsRefused, ProviderUnavailable, RecoveryError, StorageUnavailable
from payments.events import NormalizedEvent
from recovery import metrics, state
from recovery.pace import Pace
from recovery.source import Page, Source

logger = logging.getLogger("webhooks.recovery")


class Store(Protocol):
    async def store(self, event: NormalizedEvent) -> bool: ...


@dataclass
class Report:
    provider: str
    since: datetime | None = None
    until: datetime | None = None
    outcome: str = "ok"
    message: str = ""
    pages: int = 0
    fetched: int = 0
    new: int = 0
    duplicate: int = 0
    unchanged: int = 0  # observations equal to our state, not stored
    refused: int = 0  # items the adapter could not read
    would_store: int = 0  # --dry-run: not stored yet
    complete: bool = False  # every page of the window was read
    # (payment id, our status before, after) for every payment the run moved.
    changed: list[tuple[str, str | None, str | None]] = field(default_factory=list)


async def recover(
    *,
    source: Source,
    store: Store,
    engine: Engine,
    since: datetime,
    until: datetime,
    max_pages: int,
    dry_run: bool = False,
    after_page: Callable[[Report], Awaitable[None]] | None = None,
    report: Report | None = None,
) -> Report:
    """Read `source`'s window [since, until) page by page and store what is missing, counting into
    `report` as it goes. Raises RecoveryError or StorageUnavailable when it cannot finish; what it
    stored so far stays stored, and `report` says how far it got."""
    report = report or Report(provider=source.name, since=since, until=until)
    pace = Pace(source.settings.recovery_events_per_second)
    pages: Iterator[Page] = source.pages(since=since, until=until)

    def fetch() -> "asyncio.Future[Page | None]":
        # The HTTP client is synchronous (requests): each page is fetched on a thread, the next one
        # while the current one is being stored.
        upcoming = asyncio.ensure_future(asyncio.to_thread(next, pages, None))
        upcoming.add_done_callback(_retrieve)
        return upcoming

    upcoming = fetch()
    # The page stored last, with its payments' states before it: they are read again, to list the
    # payments it changed, in one statement with the next page's states before it.
    last: _Stored | None = None
    try:
        while True:
            page = await upcoming
            if page is None:
                report.complete = True
                break
            if report.pages >= max_pages:
                break  # a page beyond the cap: the window is not complete
            report.pages += 1
            upcoming = fetch()
            ids = {event.payment_id for event in page.events if event.payment_id is not None}
            states = await _states(engine, source.name, ids | (last.ids if last is not None else set()))
            if last is not None:
                last.changes(states, report)
            before = {payment_id: states[payment_id] for payment_id in ids if payment_id in states}
            last = None if dry_run else _Stored(ids, before)
            await _take(
                page, before, report=report, source=source, store=store, engine=engine, dry_run=dry_run
            )
            if after_page is not None:
                await after_page(report)
            # RECOVERY_EVENTS_PER_SECOND; the next page is being fetched meanwhile.
            await asyncio.sleep(pace.wait(len(page.events) + page.refused))
    finally:
        upcoming.cancel()  # stopped early: nobody waits for the page in flight
        if last is not None:
            # Stopped or done: the last page's changes, unless the database cannot say them now.
            with contextlib.suppress(SQLAlchemyError):
                last.changes(await _states(engine, source.name, last.ids), report)
    return report


@dataclass(frozen=True, slots=True)
class _Stored:
    """A page's payments, and our state of each before the page was stored."""

    ids: set[str]
    before: dict[str, str | None]

    def changes(self, after: dict[str, str | None], report: Report) -> None:
        missing = object()
        for payment_id in sorted(self.ids):
            if self.before.get(payment_id, missing) != after.get(payment_id, missing):
                report.changed.append((payment_id, self.before.get(payment_id), after.get(payment_id)))


async def _states(engine: Engine, provider: str, payment_ids: set[str]) -> dict[str, str | None]:
    return await asyncio.to_thread(state.payment_states, engine, provider=provider, payment_ids=payment_ids)


def _retrieve(future: "asyncio.Future[Page | None]") -> None:
    # A page fetched for a run that stopped meanwhile: its error is the stopped run's, already told.
    if not future.cancelled():
        future.exception()


async def _take(
    page: Page,
    before: dict[str, str | None],
    *,
    report: Report,
    source: Source,
    store: Store,
    engine: Engine,
    dry_run: bool,
) -> None:
    """Store what `page` holds that we do not (`before`: our state of its payments)."""
    provider = source.name
    report.fetched += len(page.events) + page.refused
    report.refused += page.refused
    _count(provider, "refused", page.refused)
    events = page.events
    if source.observes:
        # An observation is worth storing only when the provider's state differs from ours (a payment
        # we never saw differs).
        events = [e for e in page.events if e.payment_id not in before or before[e.payment_id] != e.status]
        report.unchanged += len(page.events) - len(events)
        _count(provider, "unchanged", len(page.events) - len(events))
    if dry_run:
        stored = await asyncio.to_thread(
            state.stored_event_ids, engine, provider=provider, event_ids={e.event_id for e in events}
        )
        report.duplicate += sum(e.event_id in stored for e in events)
        report.would_store += sum(e.event_id not in stored for e in events)
        _count(provider, "would_store", sum(e.event_id not in stored for e in events))
        return
    # Stored together, so the writer commits the page as one batch (group commit).
    outcomes = await asyncio.gather(*(store.store(event) for event in events))
    report.new += sum(outcomes)
    report.duplicate += len(outcomes) - sum(outcomes)
    _count(provider, "new", sum(outcomes))
    _count(provider, "duplicate", len(outcomes) - sum(outcomes))


def _count(provider: str, result: str, amount: int) -> None:
    if amount:
        metrics.EVENTS.labels(provider, result).inc(amount)


async def run(
    *,
    source: Source,
    store: Store,
    engine: Engine,
    since: datetime,
    until: datetime,
    owner: str,
    lease_seconds: float,
    dry_run: bool = False,
    move_mark: bool = True,
    on_page: Callable[[Report], None] | None = None,
) -> Report:
    """A run as the CLI and the periodic runner do it: skipped without credentials, one runner per
    provider at a time (the lease, renewed between pages), the high-water mark moved to `until` once
    the whole window is read. Never raises for the provider's or the storage's sake: the report's
    outcome and message say what stopped it."""
    report = Report(provider=source.name, since=since, until=until)
    if not source.configured:
        report.outcome = "skipped"
        report.message = f"{source.name}: skipped, {source.credential_settings} not set"
    elif not dry_run and not await _lease(engine, source.name, owner, lease_seconds):
        report.outcome = "busy"
        report.message = (
            f"{source.name}: skipped, another runner holds the recovery lease (it lapses within "
            f"{lease_seconds:.0f} s if that runner has gone)"
        )
    else:
        report = await _leased_run(
            source=source,
            store=store,
            engine=engine,
            since=since,
            until=until,
            owner=owner,
            lease_seconds=lease_seconds,
            dry_run=dry_run,
            move_mark=move_mark,
            on_page=on_page,
        )
    metrics.RUNS.labels(source.name, report.outcome).inc()
    if report.message:
        log = logger.info if report.outcome in ("ok", "skipped", "busy") else logger.warning
        log("%s", report.message)
    return report


async def _lease(engine: Engine, provider: str, owner: str, seconds: float) -> bool:
    return await asyncio.to_thread(state.take_lease, engine, provider=provider, owner=owner, seconds=seconds)


class LeaseLost(Exception):
    """Another runner holds the provider's lease now (this one stalled past it): stop, mark unmoved."""


# A run's outcome label (recovery_runs_total) by what stopped it.
_STOPPED_BY: dict[type[Exception], str] = {
    CredentialsRefused: "credentials_refused",
    ProviderUnavailable: "provider_unavailable",
    StorageUnavailable: "storage_unavailable",
    LeaseLost: "lease_lost",
    RecoveryError: "failed",
}


async def _leased_run(
    *,
    source: Source,
    store: Store,
    engine: Engine,
    since: datetime,
    until: datetime,
    owner: str,
    lease_seconds: float,
    dry_run: bool,
    move_mark: bool,
    on_page: Callable[[Report], None] | None,
) -> Report:
    renewed = time.monotonic()  # run() took the lease just before

    async def after_page(report: Report) -> None:
        nonlocal renewed
        if on_page is not None:
            on_page(report)
        # Renewed once a quarter of it has passed, not after every page: each renewal is a write
        # transaction that live deliveries' commits queue behind (SQLite has one writer at a time).
        # Three quarters of a lease left still outlast a page's retries (window.lease_seconds).
        if dry_run or time.monotonic() - renewed < lease_seconds / 4:
            return
        if not await _lease(engine, source.name, owner, lease_seconds):
            raise LeaseLost("the recovery lease was taken over by another runner")
        renewed = time.monotonic()

    report = Report(provider=source.name, since=since, until=until)
    try:
        await recover(
            source=source,
            store=store,
            engine=engine,
            since=since,
            until=until,
            max_pages=source.settings.recovery_max_pages,
            dry_run=dry_run,
            after_page=after_page,
            report=report,
        )
        if not report.complete:
            report.outcome = "capped"
            report.message = (
                f"{source.name}: stopped at RECOVERY_MAX_PAGES ({report.pages} pages); the high-water "
                "mark stays where it was: raise the cap or recover a shorter window"
            )
        elif move_mark and not dry_run:
            await asyncio.to_thread(state.advance, engine, provider=source.name, owner=owner, to=until)
    except (RecoveryError, StorageUnavailable, LeaseLost) as exc:
        report.outcome = next(label for kind, label in _STOPPED_BY.items() if isinstance(exc, kind))
        report.message = f"{source.name}: stopped after {report.pages} pages: {exc}"
    finally:
        if not dry_run:
            await asyncio.to_thread(state.release_lease, engine, provider=source.name, owner=owner)
    return report
