"""The relay: publishes every committed event (and each payment status change) to the NATS stream, in
commit order, and moves the durable cursor only after the stream acknowledged them all.

One relay publishes at a time (the outbox's lock); the others wait to take over. Woken by the writer
after each commit, and by a slow poll besides (commits of other instances, a horizon held back by a
long transaction). While NATS is down or refuses messages it retries with a capped backoff and logs
one warning per outage; deliveries are stored and acknowledged meanwhile, and the backlog drains in
order when the stream takes messages again.
"""

import asyncio
import contextlib
import logging
from typing import Final

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import APIError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from config import Settings
from forwarding import states
from forwarding.messages import Message, StateChange, event_message, state_message
from forwarding.metrics import PUBLISHED
from forwarding.outbox import Outbox, Pending
from forwarding.stream import Publisher, StreamMismatch, StreamRefused, connect, ensure_stream

logger = logging.getLogger("webhooks.forward")

BACKOFF_FIRST_SECONDS: Final = 0.25
BACKOFF_CAP_SECONDS: Final = 5.0
# After a partial batch, the next cycle starts at the next commit's wake, or after this at the latest:
# that reads what no wake announces (other processes' commits, `python -m cli relay` which nobody
# wakes, a batch that was held back behind the horizon).
LINGER_SECONDS: Final = 0.01
# A cycle that carried at least this many events (ingest is busy) is followed by FORWARD_GATHER_SECONDS
# without reading, whatever commits wake it, so that the next cycle carries more: each cycle costs a
# read, a transaction moving the cursor and the states, and a wait for acknowledgements, whatever it
# carries, and run back to back under load those took as much of the database and of the service's
# process as the events did (BENCHMARKS.md, "Forwarding to NATS"). At lower rates cycles carry fewer
# events and are not held back.
GATHER_AFTER_EVENTS: Final = 100
STOP_WAIT_SECONDS: Final = 10.0


def failure_reason(exc: BaseException) -> tuple[str, str]:
    """(the outcome label, what the log line says) for a failed publish."""
    if isinstance(exc, StreamMismatch):
        return "refused", str(exc)
    if isinstance(exc, StreamRefused):
        return "refused", f"the stream refused messages: {exc}"
    if isinstance(exc, APIError):
        return "refused", f"the stream refused messages: {exc.description or exc.err_code}"
    if isinstance(exc, TimeoutError):
        return "timeout", "no acknowledgement from the stream in time"
    if isinstance(exc, nats.js.errors.NoStreamResponseError):
        return "unavailable", "no stream answered (JetStream unavailable)"
    if isinstance(exc, SQLAlchemyError):
        return "database", f"database error ({type(exc).__name__})"
    return "unavailable", f"NATS unavailable ({type(exc).__name__})"


class Relay:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._settings = settings
        self._outbox = Outbox(engine, stream=settings.nats_stream, raw_body=settings.forward_raw_body)
        self._wake = asyncio.Event()
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._publisher: Publisher | None = None
        self._leading = False
        self._outage: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = asyncio.Event()
        # The outbox's one connection serves one call at a time.
        self._turn = asyncio.Lock()

    def wake(self) -> None:
        """After a commit: there may be something to publish."""
        self._wake.set()

    async def start(self) -> None:
        """Create the cursor, and check the stream when NATS answers now: a stream that cannot hold the
        guarantees stops start-up (StreamMismatch). A broker that is down does not: the relay
        publishes once it is back."""
        await asyncio.to_thread(self._outbox.start)
        try:
            await self._connect()
        except StreamMismatch:
            await self._disconnect()
            raise
        except Exception as exc:
            self._outage_begins(exc)
        self._task = asyncio.create_task(self.run(), name="forward-relay")

    async def stop(self) -> None:
        if self._task is not None:
            # Between cycles, not inside one: a cancelled call would leave its thread on the connection.
            self._stopping = True
            self._stopped.set()
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_WAIT_SECONDS)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._disconnect()
        async with self._turn:
            await asyncio.to_thread(self._outbox.close)

    async def run(self) -> None:
        backoff = BACKOFF_FIRST_SECONDS
        while not self._stopping:
            try:
                if not await self._lead():
                    await self._idle(self._settings.forward_poll_seconds)
                    continue
                if self._js is None:
                    await self._connect()
                published = await self.publish_next()
            except Exception as exc:  # every failure is retried: the cursor has not moved
                self._outage_begins(exc)
                if isinstance(exc, SQLAlchemyError):
                    self._leading = False
                    async with self._turn:
                        await asyncio.to_thread(self._outbox.close)
                # Not cut short by commits (they keep coming during an outage): only by stop().
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), backoff)
                backoff = min(backoff * 2, BACKOFF_CAP_SECONDS)
                continue
            backoff = BACKOFF_FIRST_SECONDS
            self._outage_ends()
            if not published:
                await self._idle(self._settings.forward_poll_seconds)
            elif published >= self._settings.forward_batch_max:
                continue  # a full batch: more is waiting
            elif published >= GATHER_AFTER_EVENTS and self._settings.forward_gather_seconds > 0:
                await self._gather(self._settings.forward_gather_seconds)
            else:
                # A commit during this cycle has already set the wake: cycles then run back to back,
                # each carrying what was committed during the one before, rather than adding a fixed
                # pause to every event's wait.
                await self._idle(LINGER_SECONDS)

    async def publish_next(self) -> int:
        """Publish the next events after the cursor and move it; how many events (0: none waiting)."""
        async with self._turn:
            return await self._publish_next()

    async def _publish_next(self) -> int:
        assert self._js is not None
        pending = await asyncio.to_thread(self._outbox.pending, limit=self._settings.forward_batch_max)
        if pending is None:
            return 0
        changes, moved = states.step(pending.events, pending.states)
        messages = self._messages(pending, changes)
        assert self._publisher is not None
        outcomes = await self._publisher.publish(messages, stream=self._settings.nats_stream)
        for kind, count in outcomes.published.items():
            PUBLISHED.labels(kind, "published").inc(count)
        for kind, count in outcomes.duplicate.items():
            PUBLISHED.labels(kind, "duplicate").inc(count)
        for kind, exc in outcomes.failures:
            PUBLISHED.labels(kind, failure_reason(exc)[0]).inc()
        if outcomes.failures:
            raise outcomes.failures[0][1]
        await asyncio.to_thread(self._outbox.advance, pending, moved)
        return len(pending.events)

    def _messages(self, pending: Pending, changes: list[StateChange]) -> list[Message]:
        prefix = self._settings.nats_subject_prefix
        change_of = {change.event.row_id: change for change in changes}
        messages: list[Message] = []
        for event in pending.events:
            messages.append(event_message(event, prefix=prefix))
            if (change := change_of.get(event.row_id)) is not None:
                messages.append(state_message(change, prefix=prefix))
        return messages

    async def _lead(self) -> bool:
        if not self._leading:
            async with self._turn:
                self._leading = await asyncio.to_thread(self._outbox.try_lead)
            if self._leading:
                logger.info("relay: publishing to NATS stream %s", self._settings.nats_stream)
        return self._leading

    async def _idle(self, seconds: float) -> None:
        """Until the next wake (a commit since the last cycle began has set it already), or `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def _gather(self, seconds: float) -> None:
        """`seconds` whatever commits happen meanwhile (only stop() cuts it short): the next cycle reads
        everything they committed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)
        self._wake.clear()

    async def _connect(self) -> None:
        if self._client is None:
            self._client = await connect(self._settings)
        js = self._client.jetstream()
        await ensure_stream(js, settings=self._settings)
        self._js = js
        self._publisher = Publisher(self._client)

    async def _disconnect(self) -> None:
        client, self._client, self._js, self._publisher = self._client, None, None, None
        if client is not None:
            try:
                await client.close()
            except Exception as exc:  # closing a broken connection: nothing left to do
                logger.debug("closing the NATS connection: %s", type(exc).__name__)

    def _outage_begins(self, exc: BaseException) -> None:
        # One line per outage, with its first cause: not one per failed attempt, nor per event.
        if self._outage is None:
            self._outage = failure_reason(exc)[1]
            logger.warning(
                "forwarding paused, events are stored and will be published later: %s", self._outage
            )

    def _outage_ends(self) -> None:
        if self._outage is not None:
            logger.info("forwarding resumed: publishing the backlog")
            self._outage = None
