"""Runs Debian's wrk with replay.lua over a list of raw requests and reads back what happened."""

import itertools
import json
import math
import os
import selectors
import signal
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic

WRK = "/usr/bin/wrk"
SCRIPT = Path(__file__).with_name("replay.lua")
DRAIN_GRACE_S = 15  # wrk's -d is budget + this: a server that stops answering still ends the run
REQUEST_TIMEOUT = "30s"  # wrk files slower answers as timeouts and drops them from the percentiles
DONE_MARK = b"replay-thread-done"  # replay.lua writes it to stderr when a thread has stopped
_invocations = itertools.count(1)


@dataclass(slots=True)
class WrkResult:
    connections: int
    threads: int
    requests: int  # answered requests, wrk's count
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    statuses: dict[str, int]
    errors: dict[str, int]
    issued: list[int]  # requests written, per wrk thread
    sent_indices: list[int] = field(repr=False)  # which of the given requests went out
    ended_by_deadline: bool  # the server did not answer everything before wrk's -d ran out
    stderr_tail: str = ""

    @property
    def unanswered(self) -> int:
        return sum(self.issued) - self.requests


def _write_thread_files(requests: Sequence[bytes], threads: int, prefix: Path) -> None:
    for thread in range(threads):
        with open(f"{prefix}{thread}.bin", "wb") as out:
            out.writelines(request + b"\0" for request in requests[thread::threads])


def command(*, url: str, connections: int, duration_s: int, prefix: str, budget_s: float) -> list[str]:
    threads = min(2, connections)  # wrk needs a connection per thread; two cores, two threads
    load = ["-t", str(threads), "-c", str(connections), "-d", f"{duration_s}s", "--timeout", REQUEST_TIMEOUT]
    return [WRK, *load, "-s", str(SCRIPT), url, "--", prefix, f"{budget_s:.3f}"]


def run(
    *, url: str, requests: Sequence[bytes], connections: int, budget_s: float, workdir: Path
) -> WrkResult:
    threads = min(2, connections)  # wrk needs a connection per thread; two cores, two threads
    prefix = workdir / "requests-"
    _write_thread_files(requests, threads, prefix)
    duration_s = math.ceil(budget_s) + DRAIN_GRACE_S
    argv = command(
        url=url, connections=connections, duration_s=duration_s, prefix=str(prefix), budget_s=budget_s
    )
    stdout_path = workdir / f"wrk-{next(_invocations)}.out"
    with open(stdout_path, "wb") as stdout:
        process = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE)
        stderr = _wait_for_threads(process, threads, hard_deadline=monotonic() + duration_s + 20)
    text = stdout_path.read_text(errors="replace")
    return _parse(
        text,
        stderr,
        connections=connections,
        threads=threads,
        total=len(requests),
        duration_limit_s=duration_s,
    )


def _wait_for_threads(process: subprocess.Popen[bytes], threads: int, *, hard_deadline: float) -> str:
    """Reads the threads' done lines; when all are in, SIGINT ends wrk's fixed sleep at once.

    Raw os.read, not readline: two lines may arrive in one read, and a line left in a Python buffer
    is invisible to select(), which would leave the run waiting for wrk's full -d.
    """
    assert process.stderr is not None
    descriptor = process.stderr.fileno()
    received = b""
    with selectors.DefaultSelector() as selector:
        selector.register(descriptor, selectors.EVENT_READ)
        while process.poll() is None and monotonic() < hard_deadline:
            if received.count(DONE_MARK) >= threads:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    continue  # the signal came before wrk's handler was installed: send it again
                break
            if selector.select(timeout=0.5):
                chunk = os.read(descriptor, 65536)
                if not chunk:
                    break
                received += chunk
    if process.poll() is None:
        try:
            process.wait(timeout=max(0.0, hard_deadline - monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    received += process.stderr.read()
    process.stderr.close()
    text = received.decode(errors="replace")
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(DONE_MARK.decode()))


def _parse(
    text: str, stderr: str, *, connections: int, threads: int, total: int, duration_limit_s: int
) -> WrkResult:
    line = next((row for row in text.splitlines() if row.startswith("REPLAY-RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result; stdout: {text[-800:]!r} stderr: {stderr[-800:]!r}")
    data = json.loads(line.removeprefix("REPLAY-RESULT "))
    statuses: Counter[str] = Counter()
    for part in data["statuses"]:
        statuses.update(part)
    issued = [min(count, len(range(thread, total, threads))) for thread, count in enumerate(data["issued"])]
    duration_s = data["duration_us"] / 1e6
    return WrkResult(
        connections=connections,
        threads=threads,
        requests=data["requests"],
        duration_s=duration_s,
        rps=data["requests"] / duration_s if duration_s else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        non2xx=data["non2xx"],
        statuses=dict(statuses),
        errors=data["errors"],
        issued=issued,
        sent_indices=[thread + threads * k for thread, count in enumerate(issued) for k in range(count)],
        ended_by_deadline=duration_s >= duration_limit_s - 0.5,
        stderr_tail=stderr[-800:],
    )
