"""`make run`'s launcher: `python -m ops.serve uvicorn main:app ...` runs the command, with a fresh metrics
directory (PROMETHEUS_MULTIPROC_DIR, unless one is given) when it starts several workers, stops it when
told to, and removes the directory.

One worker keeps its counters in its own memory: prometheus-client's multiprocess mode writes every
increment and observation through to a file, which measured as a large share of a delivery's CPU
(BENCHMARKS.md, "make run's metrics"), and a single process has nothing to share.

A shell that runs the command in the foreground runs its traps only once the command has ended, so a
SIGTERM to it alone left uvicorn serving. This process passes SIGINT and SIGTERM on to the command, which
runs in a process group of its own so that each signal reaches it exactly once: uvicorn takes a second
SIGINT as "skip the application's shutdown", and a group-wide Ctrl-C plus one passed on would race into
that. SIGHUP is passed on as SIGTERM (uvicorn's supervisor of workers would restart them on SIGHUP).
make passes a SIGTERM of its own on to this process, and waits for it.
"""

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from types import FrameType

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by ops/metrics.py (not imported: it pulls in the app)
PASSED_ON = {signal.SIGINT: signal.SIGINT, signal.SIGTERM: signal.SIGTERM, signal.SIGHUP: signal.SIGTERM}
PR_SET_PDEATHSIG = 1


def stop_with_parent() -> None:
    """In the child before exec, on Linux: SIGTERM when this launcher dies, even by SIGKILL, so that a
    group-wide SIGKILL from a supervisor leaves no server behind in the other group."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def serve(command: list[str]) -> int:
    """Run `command` until it exits; its exit status, or 128 + the signal that ended it."""
    child: subprocess.Popen[bytes] | None = None
    early: list[signal.Signals] = []  # received before the child existed

    def pass_on(signum: int, _frame: FrameType | None) -> None:
        if child is None:
            early.append(signal.Signals(signum))
        else:
            child.send_signal(PASSED_ON[signal.Signals(signum)])

    for signum in PASSED_ON:  # before the directory exists: no signal may end this process from here on
        signal.signal(signum, pass_on)
    env = dict(os.environ)
    shared = workers(command, env) > 1
    made = None if env.get(MULTIPROC_ENV) or not shared else tempfile.mkdtemp(prefix="webhooks-metrics-")
    if made is not None:
        env[MULTIPROC_ENV] = made
    try:
        # The command is the Makefile's own uvicorn line.
        child = subprocess.Popen(command, env=env, process_group=0, preexec_fn=stop_with_parent)  # noqa: S603
        for signum in early:
            child.send_signal(PASSED_ON[signum])
        status = child.wait()  # resumed after each handler (PEP 475) until the child has exited
        return status if status >= 0 else 128 - status
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def workers(command: list[str], env: dict[str, str]) -> int:
    """How many worker processes uvicorn will start: `--workers N` (or `--workers=N`) in the command,
    else WEB_CONCURRENCY, as uvicorn reads them; 1 when neither says."""
    for index, argument in enumerate(command):
        if argument == "--workers" and index + 1 < len(command):
            value = command[index + 1]
            break
        if argument.startswith("--workers="):
            value = argument.removeprefix("--workers=")
            break
    else:
        value = env.get("WEB_CONCURRENCY", "1")
    return int(value) if value.isdigit() else 1


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:]))
