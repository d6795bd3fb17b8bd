"""SQLite's writer, in a process of its own.

sqlite3 has no asynchronous driver, so SQLite's batches cannot run on the event loop. On a thread of
the same process they did, and measured, the thread and the event loop mostly took turns on the one
GIL: the process stayed at one core whatever the load (BENCHMARKS.md). A process has a GIL of its own.

The event loop sends each batch, pickled, over a socket pair and awaits the reply, which the writer
process sends only after the commit. The process holds the database's one write connection
(`sinks.SqliteBatches`) and lives as long as its channel: it exits when the app closes the channel,
and when the app dies, since the channel then closes too. It is forked from multiprocessing's fork
server, which has this module (and so SQLAlchemy) imported already: a start costs milliseconds rather
than an interpreter's start-up, and nothing is forked from the app's threads.
"""

import asyncio
import contextlib
import multiprocessing
import pickle
import signal
import socket
import struct
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import BinaryIO, Final

from config import Settings
from database import make_engine
from events import NormalizedEvent
from sinks import SqliteBatches

# A message: its length, then the pickled value. Pickle only ever crosses this private socket pair.
_SIZE: Final = struct.Struct("!I")
_CONTEXT: Final = multiprocessing.get_context("forkserver")
_STOP_WAIT_SECONDS: Final = 10.0  # the process finishes the batch in hand (at most a busy timeout)


class RelayedError(Exception):
    """An error raised in the writer process, relayed by its type's name only: its text could quote a
    row's values, which are payment data."""


class RowRefused(RelayedError):
    """The database refused a row of the batch (the writer retries the batch row by row)."""


class WriterFailed(RelayedError):
    """The batch failed for the database's sake (unreachable, locked, read-only): never a 2xx."""


class SqliteProcessSink:
    """The Sink for SQLite: batches go to the writer process, one at a time. It is started when the sink
    opens, and again by the next write after it is lost."""

    row_errors: tuple[type[Exception], ...] = (RowRefused,)

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._process: BaseProcess | None = None
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        # False from a request's send to its reply: an exchange cut short (the process died, the write
        # was cancelled) leaves a reply unread, so the process is replaced rather than reused.
        self._in_step = False

    @property
    def pid(self) -> int | None:
        """The writer process's id, while there is one."""
        return None if self._process is None else self._process.pid

    async def open(self) -> None:
        # Started with the app: the first deliveries need not wait for it.
        if not self._in_step:
            await self._stop()
            await self._start()

    async def write(self, events: Sequence[NormalizedEvent]) -> list[bool]:
        await self.open()
        assert self._streams is not None
        reader, writer = self._streams
        self._in_step = False
        payload = pickle.dumps(list(events), protocol=pickle.HIGHEST_PROTOCOL)
        writer.write(_SIZE.pack(len(payload)) + payload)
        await writer.drain()
        (size,) = _SIZE.unpack(await reader.readexactly(_SIZE.size))
        outcome, detail = pickle.loads(await reader.readexactly(size))  # noqa: S301 (from our own process)
        self._in_step = True
        if outcome == "stored":
            return list(detail)
        raise (RowRefused if outcome == "refused" else WriterFailed)(detail)

    async def reset(self) -> None:
        # A relayed error leaves the process in step: it has dropped its connection itself.
        if not self._in_step:
            await self._stop()

    async def close(self) -> None:
        await self._stop()

    async def _start(self) -> None:
        _CONTEXT.set_forkserver_preload([__name__])
        ours, theirs = socket.socketpair()
        process = _CONTEXT.Process(target=serve, args=(theirs, self._settings), name="sqlite-writer")
        # Daemonic: should the app exit without closing the sink, multiprocessing stops the process at
        # exit instead of waiting for it.
        process.daemon = True
        try:
            # Blocking, and the first start in a process also starts the fork server (about 0.6 s).
            await asyncio.to_thread(process.start)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the process has its own copy
        self._process = process
        self._streams = await asyncio.open_unix_connection(sock=ours)
        self._in_step = True

    async def _stop(self) -> None:
        streams, process = self._streams, self._process
        self._streams, self._process, self._in_step = None, None, False
        if streams is not None:
            _, writer = streams
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if process is not None:
            await asyncio.to_thread(process.join, _STOP_WAIT_SECONDS)
            if process.exitcode is None:
                process.kill()
                await asyncio.to_thread(process.join)


def serve(channel: socket.socket, settings: Settings) -> None:
    """The writer process's loop: a batch in, its outcomes out after the commit, until the channel
    closes."""
    state = _State()
    # Ctrl+C reaches the whole process group: the app stops, and closes the channel, by itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, state.on_terminate)
    batches = SqliteBatches(make_engine(settings))
    incoming = channel.makefile("rb")
    with contextlib.suppress(SystemExit, ConnectionError, EOFError):
        while not state.stopping:
            events = pickle.loads(_read_message(incoming))  # noqa: S301 (from the app, over a private socket pair)
            state.busy = True
            try:
                reply: tuple[str, object] = ("stored", batches.write(events))
            except batches.row_errors as exc:
                batches.reset()
                reply = ("refused", type(exc).__name__)
            except Exception as exc:
                batches.reset()
                reply = ("failed", type(exc).__name__)
            payload = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
            channel.sendall(_SIZE.pack(len(payload)) + payload)
            state.busy = False
    batches.reset()


def _read_message(incoming: BinaryIO) -> bytes:
    header = incoming.read(_SIZE.size)
    if len(header) < _SIZE.size:
        raise EOFError  # the app closed the channel, or died
    (size,) = _SIZE.unpack(header)
    payload = incoming.read(size)
    if len(payload) < size:
        raise EOFError
    return payload


class _State:
    """SIGTERM (a supervisor stopping the service, or multiprocessing at the app's exit) ends the
    process between batches, never inside one: a batch in hand is committed and answered first."""

    def __init__(self) -> None:
        self.busy = False
        self.stopping = False

    def on_terminate(self, _signum: int, _frame: FrameType | None) -> None:
        if not self.busy:
            raise SystemExit(0)
        self.stopping = True
