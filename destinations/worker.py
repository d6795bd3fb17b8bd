"""One destination's delivery loop: picks what is due, POSTs it (at most max_in_flight at once, at most
rate_per_second), and records every attempt with its delivery's next state.

Each destination has its own loop, HTTP client and connection pool, so one that is slow or down holds
only its own events: its backlog grows in the database while the others deliver. A payment's events
go in outbox order (attempts.due). One warning line when the destination starts failing and one when
it recovers, not one per event; the log never holds a secret, a payload or a response body.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from database import write_when_free
from destinations import attempts, metrics, policy, sender, signing
from destinations.attempts import Due, Recorded
from destinations.file import Destination
from forwarding.messages import event_document

logger = logging.getLogger("webhooks.destinations")

DATABASE_BACKOFF_SECONDS = 1.0
# While a destination is failing, one attempt at a time, this far apart at most (backoff_base_seconds
# when shorter): each due event is still tried in turn, but a destination that is down costs little.
PROBE_MAX_SECONDS = 1.0
# Due deliveries read ahead in one query, then sent as slots free up.
READ_AHEAD = 256
# Finished attempts are recorded together, one transaction at most this often (or sooner when
# READ_AHEAD of them wait): on SQLite each is a turn at the one write lock the ingest writer needs too,
# and recording only frees a payment's next event and the claim, never a first send.
RECORD_SECONDS = 0.05
# Failed attempts in a row (no success between) before the destination is logged as failing: one event
# that keeps failing while the others are taken is that event's problem, not the destination's.
FAILING_AFTER = 3


T = TypeVar("T")
# What a read found: whether the destination is paused, what is due now, and when the next is due.
Read = tuple[bool, list[Due], datetime | None]


class RateLimiter:
    """Spaces the starts of requests 1/rate apart (no limit without a rate)."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = 0.0

    async def acquire(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        wait = self._next - now
        self._next = max(now, self._next) + self._interval
        if wait > 0:
            await asyncio.sleep(wait)  # pacing to the configured rate


class Worker:
    def __init__(self, engine: Engine, destination: Destination, *, poll_seconds: float) -> None:
        self.destination = destination
        self._engine = engine
        self._poll_seconds = poll_seconds
        self._key = destination.key
        self._http = sender.client(destination)
        self._limiter = RateLimiter(destination.rate_per_second)
        self._rng = random.Random()  # noqa: S311 (jitter, not a secret)
        self._queue: deque[Due] = deque()  # due, claimed, not yet sent
        self._claimed: set[int] = set()  # queued, being sent, or sent and not yet recorded
        # Delivered or dead, not yet recorded: their payments' next events need not wait for the record.
        self._finished: set[int] = set()
        self._sending = 0
        self._paused_checked_at = 0.0
        self._recorded_at = 0.0  # when the last record started (monotonic)
        self._read_at = 0.0  # no read before this (monotonic): nothing was due, or the destination is paused
        self._paused = False  # as the last read found it
        # Since the read under way began: a wake (a resume, a replay), which makes a "paused" or
        # "nothing due" it finds out of date, and a commit or a finished delivery (a payment's next
        # event may be due), which make a "nothing due" out of date. The next read is then not put off.
        self._woken_since_read = False
        self._owed_since_read = False
        # The database work under way: a record (its task and the attempts it records), and a read.
        self._recording: tuple[asyncio.Task[None], list[Recorded]] | None = None
        self._reading: asyncio.Task[Read] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._results: list[Recorded] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._failing = False
        self._next_probe = 0.0
        self._probe_seconds = min(destination.backoff_base_seconds, PROBE_MAX_SECONDS)
        self._failures_in_a_row = 0
        self._database_down = False

    def wake(self) -> None:
        """There may be new work (a replay, a resume): read what is due now."""
        self._paused = False
        self._read_at = 0.0
        self._woken_since_read = True
        self._wake.set()

    def owed(self) -> None:
        """A commit stored events, which may be owed here: read what is due now, unless the last read
        found the destination paused (a resume wakes it, or it is seen within a poll), so that a paused
        destination costs no read per commit."""
        if not self._paused:
            self._may_be_due()

    def _may_be_due(self) -> None:
        """Something may have become due (events owed, or a payment's earlier event finished): read
        now, and again after a read under way, which may have missed it."""
        self._read_at = 0.0
        self._owed_since_read = True
        self._wake.set()

    async def run(self) -> None:
        """Sends go on while the database work runs beside them, in threads: recording the attempts that
        finished, and reading what is due next, at most one of each at a time."""
        while not self._stopping:
            try:
                self._collect()
                self._start_database_work()
                await self._sleep(await self._send_due())
            except SQLAlchemyError as exc:
                if not self._database_down:
                    logger.warning(
                        "destination %s: database error (%s); retrying",
                        self.destination.name,
                        type(exc).__name__,
                    )
                    self._database_down = True
                await self._sleep(DATABASE_BACKOFF_SECONDS)
            except Exception:  # a fault of ours: logged, and the loop goes on (deliveries stay owed)
                logger.exception("destination %s: unexpected error; retrying", self.destination.name)
                await self._sleep(DATABASE_BACKOFF_SECONDS)

    async def stop(self) -> None:
        """Cancel what is in flight (it stays pending, and is sent again), record what has finished."""
        self._stopping = True
        self._wake.set()
        for task in list(self._sends):
            task.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)
        with contextlib.suppress(SQLAlchemyError):
            await self._flush()
        await self._http.close()

    def _start_database_work(self) -> None:
        """Record what has finished; read what is due when there is room and nothing is queued.

        A read may run while a record is under way: the deliveries being recorded are still claimed,
        so the read skips them, and still pending in the database, so their payments' later events
        wait for them; a recorded outcome lets the next read see those events."""
        if self._stopping:
            return
        now = time.monotonic()
        if (
            self._recording is None
            and self._results
            and (now >= self._recorded_at + RECORD_SECONDS or len(self._results) >= READ_AHEAD)
        ):
            batch, self._results = self._results, []
            self._recorded_at = now
            self._recording = (self._in_thread("record", self._record, batch), batch)
        if (
            self._reading is None
            and self._concurrency() > self._sending
            and now >= self._read_at
            and not (self._failing and self._next_probe > now)
            # The queue holds only what is due now and each payment's earliest: reading ahead does not
            # change the order. A pause is seen within a poll.
            and (not self._queue or now - self._paused_checked_at > self._poll_seconds)
        ):
            limit = max(READ_AHEAD, self.destination.max_in_flight) if not self._queue else 0
            self._woken_since_read = self._owed_since_read = False
            self._reading = self._in_thread(
                "read",
                self._read,
                now=datetime.now(UTC),
                limit=limit,
                claimed=frozenset(self._claimed),
                finished=frozenset(self._finished),
            )

    def _in_thread(self, what: str, work: Callable[..., T], /, *args: Any, **kwargs: Any) -> asyncio.Task[T]:
        task = asyncio.create_task(
            asyncio.to_thread(work, *args, **kwargs), name=f"destination-{self.destination.name}-{what}"
        )
        task.add_done_callback(lambda _: self._wake.set())
        return task

    def _collect(self) -> None:
        """Take in finished database work: deliveries recorded, what was read queued (or the error)."""
        if self._recording is not None and self._recording[0].done():
            task, batch = self._recording
            self._recording = None
            try:
                task.result()
            except BaseException:
                self._results = batch + self._results  # recorded on the next turn
                raise
            self._answered()
            self._recorded(batch)
        if self._reading is not None and self._reading.done():
            reading, self._reading = self._reading, None
            paused, due, next_at = reading.result()
            self._answered()
            self._paused_checked_at = time.monotonic()
            if paused:
                self._unclaim_queue()
                if not self._woken_since_read:
                    self._paused = True
                    self._read_at = time.monotonic() + self._poll_seconds
                return
            self._paused = False
            for item in due:
                if item.delivery_id not in self._claimed:
                    self._claimed.add(item.delivery_id)
                    self._queue.append(item)
            if not due and not self._queue and not (self._woken_since_read or self._owed_since_read):
                # Nothing is due now: read again when the next retry is, within a poll, or when woken.
                wait = self._poll_seconds
                if next_at is not None:
                    wait = min(wait, max(0.0, (next_at - datetime.now(UTC)).total_seconds()))
                self._read_at = time.monotonic() + wait

    def _answered(self) -> None:
        if self._database_down:
            logger.info("destination %s: the database answers again", self.destination.name)
            self._database_down = False

    async def _send_due(self) -> float:
        """Start sends from the queue while there is room; how long the loop may sleep (a finished send
        or piece of database work, and a wake, end the sleep sooner)."""
        if self._failing and (probe_wait := self._next_probe - time.monotonic()) > 0:
            return min(probe_wait, self._poll_seconds)
        name = self.destination.name
        while self._queue and self._sending < self._concurrency() and not self._stopping:
            item = self._queue.popleft()
            await self._limiter.acquire()
            if self._failing:
                self._next_probe = time.monotonic() + self._probe_seconds
            self._sending += 1
            task = asyncio.create_task(self._send(item), name=f"destination-{name}")
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)
        now = time.monotonic()
        wait = self._poll_seconds
        if self._read_at > now:
            wait = min(wait, self._read_at - now)
        if self._results and self._recording is None:
            wait = min(wait, max(0.0, self._recorded_at + RECORD_SECONDS - now))
        return wait

    def _concurrency(self) -> int:
        """max_in_flight, or one probe at a time while the destination is failing: a destination that is
        down costs one attempt per probe interval, not one per owed event."""
        return 1 if self._failing else self.destination.max_in_flight

    def _unclaim_queue(self) -> None:
        while self._queue:
            self._claimed.discard(self._queue.popleft().delivery_id)

    def _record(self, batch: list[Recorded]) -> None:
        with self._engine.connect() as connection:
            write_when_free(connection, lambda: attempts.record(connection, self.destination.name, batch))

    def _read(self, *, now: datetime, limit: int, claimed: frozenset[int], finished: frozenset[int]) -> Read:
        """Whether the destination is paused; up to `limit` due deliveries not `claimed` (none waiting
        for an earlier one that is `finished`), and when the next one is due if none is now.

        In autocommit, with the pause tested in the same statement as what is due: while events are
        due a read is one statement, where a transaction with a separate pause check took four round
        trips to the server, each a wait on a busy machine, and every event stored meanwhile waited
        for the read under way (BENCHMARKS.md, "Destinations")."""
        name = self.destination.name
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            due: list[Due] = []
            purged = 0
            if limit:
                due, purged = attempts.due(
                    connection,
                    self.destination,
                    now=now,
                    limit=limit,
                    claimed=claimed,
                    finished=finished,
                    unless_paused=True,
                )
            if purged:
                metrics.DEAD.labels(name).inc(purged)
            if due:
                return False, due, None
            if attempts.is_paused(connection, name):
                return True, [], None
            if not limit:
                return False, [], None
            return (
                False,
                [],
                attempts.next_due_at(connection, self.destination, claimed=claimed, finished=finished),
            )

    async def _send(self, item: Due) -> None:
        event = item.event
        body = event_document(event)
        msg_id = signing.webhook_id(event.provider, event.event_id)
        attempted_at = datetime.now(UTC)
        headers = signing.headers(
            self._key, msg_id=msg_id, timestamp=int(attempted_at.timestamp()), body=body
        )
        try:
            result = await sender.send(self._http, self.destination, body=body, headers=headers)
        finally:
            self._sending -= 1
        if result.delivered:
            state, next_at = attempts.DELIVERED, None
        else:
            next_at = policy.next_attempt(
                self.destination,
                round_attempts=item.round_attempts + 1,
                queued_at=item.queued_at,
                now=datetime.now(UTC),
                status_code=result.status_code,
                retry_after=result.retry_after,
                rng=self._rng,
            )
            state = attempts.PENDING if next_at is not None else attempts.DEAD
        self._results.append(Recorded(item, attempted_at, result, state, next_at))
        if state != attempts.PENDING and self.destination.ordered:
            # The payment's next event may go now: read it, without waiting for this to be recorded.
            self._finished.add(item.delivery_id)
            self._may_be_due()
        self._wake.set()

    async def _flush(self) -> None:
        """At stop: the database work under way, then what has finished since."""
        under_way: list[asyncio.Task[Any]] = [self._recording[0]] if self._recording is not None else []
        if self._reading is not None:
            under_way.append(self._reading)
        await asyncio.gather(*under_way, return_exceptions=True)
        with contextlib.suppress(SQLAlchemyError):
            self._collect()
        if self._results:
            batch, self._results = self._results, []
            try:
                await asyncio.to_thread(self._record, batch)
            except BaseException:
                self._results = batch + self._results
                raise
            self._recorded(batch)

    def _recorded(self, batch: list[Recorded]) -> None:
        """After the commit: the batch's deliveries may be picked again; count and log them."""
        name = self.destination.name
        for item in batch:
            self._claimed.discard(item.due.delivery_id)
            self._finished.discard(item.due.delivery_id)
            metrics.ATTEMPTS.labels(name, "delivered" if item.result.delivered else item.result.error).inc()
            if item.state == attempts.DEAD:
                metrics.DEAD.labels(name).inc()
        self._log_health(batch)

    def _log_health(self, batch: list[Recorded]) -> None:
        name = self.destination.name
        for item in sorted(batch, key=lambda item: item.attempted_at):
            if item.result.delivered:
                self._failures_in_a_row = 0
                if self._failing:
                    self._failing = False
                    logger.warning(
                        "destination %s (%s) recovered: delivering its backlog", name, self.destination.host
                    )
                continue
            self._failures_in_a_row += 1
            if not self._failing and self._failures_in_a_row >= FAILING_AFTER:
                self._failing = True
                logger.warning(
                    "destination %s (%s) is failing: %s; its events are kept and retried",
                    name,
                    self.destination.host,
                    attempts.describe(item.result),
                )

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()
