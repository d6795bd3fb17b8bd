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
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from destinations import attempts, metrics, policy, sender, signing
from destinations.attempts import Due, Recorded
from destinations.file import Destination
from forwarding.messages import event_message

logger = logging.getLogger("webhooks.destinations")

DATABASE_BACKOFF_SECONDS = 1.0
# While a destination is failing, one attempt at a time, this far apart at most (backoff_base_seconds
# when shorter): each due event is still tried in turn, but a destination that is down costs little.
PROBE_MAX_SECONDS = 1.0
# Due deliveries read ahead in one query, then sent as slots free up.
READ_AHEAD = 256
# How long finished attempts may wait for the others in flight before they are recorded together.
LINGER_SECONDS = 0.005
# Failed attempts in a row (no success between) before the destination is logged as failing: one event
# that keeps failing while the others are taken is that event's problem, not the destination's.
FAILING_AFTER = 3


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
        self._sending = 0
        self._paused_checked_at = 0.0
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
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                if self._results and self._sending and len(self._results) < self._sending:
                    # Let the sends still in flight finish too: one transaction records them together.
                    await asyncio.sleep(LINGER_SECONDS)
                await self._turn()
                if self._database_down:
                    logger.info("destination %s: the database answers again", self.destination.name)
                    self._database_down = False
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

    async def _turn(self) -> None:
        """Record the attempts that have finished and, when there is room, read what is due next: both in
        one transaction on one connection, one thread hop. Then start sends while there is room."""
        name = self.destination.name
        concurrency = self._concurrency()
        room = concurrency - self._sending
        probe_wait = self._next_probe - time.monotonic() if self._failing else 0.0
        # The queue holds only what is due now and each payment's earliest: reading ahead does not
        # change the order. A pause is seen within a poll.
        read = (
            room > 0
            and probe_wait <= 0
            and (not self._queue or time.monotonic() - self._paused_checked_at > self._poll_seconds)
        )
        batch, self._results = self._results, []
        next_at: datetime | None = None
        if batch or read:
            ahead = max(READ_AHEAD, self.destination.max_in_flight) if read and not self._queue else 0
            try:
                paused, due, next_at = await asyncio.to_thread(
                    self._exchange, batch, read=read, now=datetime.now(UTC), limit=ahead
                )
            except BaseException:
                self._results = batch + self._results  # recorded on the next turn
                raise
            self._recorded(batch)
            if read:
                self._paused_checked_at = time.monotonic()
                if paused:
                    self._unclaim_queue()
                    await self._sleep(self._poll_seconds)
                    return
                for item in due:
                    self._claimed.add(item.delivery_id)
                    self._queue.append(item)
        if room <= 0:
            await self._sleep(self._poll_seconds)  # woken when a send finishes
            return
        if probe_wait > 0:
            await self._sleep(probe_wait)
            return
        started = 0
        while self._queue and self._sending < concurrency and not self._stopping:
            item = self._queue.popleft()
            await self._limiter.acquire()
            if self._failing:
                self._next_probe = time.monotonic() + self._probe_seconds
            self._sending += 1
            task = asyncio.create_task(self._send(item), name=f"destination-{name}")
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)
            started += 1
        if not self._queue and started < room and not self._results:
            wait = self._poll_seconds
            if next_at is not None:
                wait = min(wait, max(0.0, (next_at - datetime.now(UTC)).total_seconds()))
            await self._sleep(wait)

    def _concurrency(self) -> int:
        """max_in_flight, or one probe at a time while the destination is failing: a destination that is
        down costs one attempt per probe interval, not one per owed event."""
        return 1 if self._failing else self.destination.max_in_flight

    def _unclaim_queue(self) -> None:
        while self._queue:
            self._claimed.discard(self._queue.popleft().delivery_id)

    def _exchange(
        self, batch: list[Recorded], *, read: bool, now: datetime, limit: int
    ) -> tuple[bool, list[Due], datetime | None]:
        """Record `batch`; then, when `read`, whether the destination is paused and up to `limit` due
        deliveries (and when the next one is due, if none is now). One transaction: the attempts just
        recorded as delivered already let their payments' next events through."""
        purged = 0
        with self._engine.begin() as connection:
            attempts.record(connection, self.destination.name, batch)
            if not read or attempts.is_paused(connection, self.destination.name):
                return read, [], None
            if not limit:
                return False, [], None
            due, purged = attempts.due(
                connection, self.destination, now=now, limit=limit, claimed=self._claimed
            )
            next_at = None
            if not due:
                next_at = attempts.next_due_at(connection, self.destination, claimed=self._claimed)
        if purged:
            metrics.DEAD.labels(self.destination.name).inc(purged)
        return False, due, next_at

    async def _send(self, item: Due) -> None:
        event = item.event
        body = event_message(event, prefix="payments").payload
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
        self._wake.set()

    async def _flush(self) -> None:
        """Record the finished attempts (at stop, with nothing read after them)."""
        if self._results:
            batch, self._results = self._results, []
            try:
                await asyncio.to_thread(self._exchange, batch, read=False, now=datetime.now(UTC), limit=0)
            except BaseException:
                self._results = batch + self._results
                raise
            self._recorded(batch)

    def _recorded(self, batch: list[Recorded]) -> None:
        """After the commit: the batch's deliveries may be picked again; count and log them."""
        name = self.destination.name
        for item in batch:
            self._claimed.discard(item.due.delivery_id)
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
