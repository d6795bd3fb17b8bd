"""Starts a server under uvicorn, waits until it answers /readyz, measures its memory and stops it."""

import http.client
import os
import signal
import socket
import subprocess
import sys
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from time import monotonic
from types import TracebackType

from bench import cores

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
# The same options for every server: only the application differs between rows of the table.
UVICORN_OPTIONS = ("--loop", "uvloop", "--http", "httptools", "--no-access-log")
READY_DEADLINE_S = 60.0
STOP_DEADLINE_S = 15.0


@dataclass(frozen=True, slots=True)
class ServerSpec:
    name: str  # "ceiling", "naive" or "ours"
    app: str  # uvicorn's module:attribute, imported with the repository root as working directory
    table: str | None  # where it stores events; None for the ceiling, which stores nothing


CEILING = ServerSpec("ceiling", "bench.ceiling_app:app", None)
NAIVE = ServerSpec("naive", "bench.naive_app:app", "naive_events")
OURS = ServerSpec("ours", "main:app", "webhook_events")


class ServerFailed(RuntimeError):
    """The server exited or never became ready; the message carries the end of its log."""


@dataclass(frozen=True, slots=True)
class StopOutcome:
    on_sigterm: bool  # False: it ignored SIGTERM past the deadline and was killed
    seconds: float
    returncode: int | None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def command(spec: ServerSpec, *, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        spec.app,
        "--host",
        HOST,
        "--port",
        str(port),
        *UVICORN_OPTIONS,
        "--workers",
        str(workers),
    ]


class Server:
    def __init__(self, spec: ServerSpec, *, workers: int, env: dict[str, str], log_path: Path) -> None:
        self.spec, self.workers, self.port = spec, workers, free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = log_path
        self.command = command(spec, port=self.port, workers=workers)
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
            )
        if (core := cores.server_core()) is not None:
            cores.pin(self.process.pid, core)  # before it starts SQLite's writer, which inherits it
        self.started_at = monotonic()
        self.stop_outcome: StopOutcome | None = None

    def __enter__(self) -> "Server":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def log_tail(self, chars: int = 1500) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_ready(self, deadline_s: float = READY_DEADLINE_S) -> float:
        """Polls /readyz; the pause between polls is a wait on the process, so an exit shows at once."""
        deadline = self.started_at + deadline_s
        while monotonic() < deadline:
            if _answers_ready(self.port):
                return monotonic() - self.started_at
            try:
                self.process.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            raise ServerFailed(f"{self.spec.name} exited with {self.process.returncode}:\n{self.log_tail()}")
        raise ServerFailed(f"{self.spec.name} not ready after {deadline_s:.0f}s:\n{self.log_tail()}")

    def rss_kib(self) -> dict[int, int]:
        """VmRSS of the uvicorn process and every process below it (workers, SQLite's writer), by pid."""
        return {
            pid: _kib(pid, "status", "VmRSS:") for pid in [self.process.pid, *_descendants(self.process.pid)]
        }

    def pss_kib(self) -> dict[int, int]:
        """Pss, by pid, of the same processes: each page shared between them (the interpreter's own
        files, for one) counts once in the sum, where VmRSS counts it in each."""
        pids = [self.process.pid, *_descendants(self.process.pid)]
        return {pid: _kib(pid, "smaps_rollup", "Pss:") for pid in pids}

    def stop(self) -> StopOutcome:
        if self.stop_outcome is not None:
            return self.stop_outcome
        children = {pid: _start_time(pid) for pid in _descendants(self.process.pid)}
        began = monotonic()
        on_sigterm = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                on_sigterm = False
                self.process.kill()
                self.process.wait()
        for pid, started in children.items():  # a worker left behind would hold the port and the database
            _kill(pid, started)
        self.stop_outcome = StopOutcome(on_sigterm, monotonic() - began, self.process.returncode)
        return self.stop_outcome


def _answers_ready(port: int) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # Field 4 of /proc/<pid>/stat is the parent; the command name before it may hold spaces.
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    pending = [root]
    while pending:
        for child in parents.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _kib(pid: int, file: str, field: str) -> int:
    """A figure in kB from /proc/<pid>/<file>, the line starting with `field`; 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _kill(pid: int, started: str | None) -> None:
    """Kills `pid` only if it is still the process seen earlier (same start time), never a reused id."""
    if started is None or _start_time(pid) != started:
        return
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
