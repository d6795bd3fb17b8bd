"""`--pin` (bench/run.py, bench/diagnose.py): the server under test on a core of its own, and wrk, the
harness and every PostgreSQL process on another, as where the database and the senders have machines
of their own. A diagnostic of what sharing the two cores costs, applied alike to the ceiling and to
ours; never a setting of the service. SQLite's writer is a process of the server's, so it stays on the
server's core.

Inside `server_apart()`, every `bench.servers.Server` started pins itself to SERVER_CORE (it reads
SERVER_CORE_ENV); PostgreSQL's processes may use every core again when the block ends.
"""

import contextlib
import os
from collections.abc import Iterator

from bench import procfs

SERVER_CORE, OTHERS_CORE = 0, 1
SERVER_CORE_ENV = "BENCH_SERVER_CORE"


def pin(pid: int, core: int | None) -> None:
    """Every thread of `pid` onto `core` (None: every core); threads and processes it starts later
    inherit it."""
    cores = {core} if core is not None else set(range(os.cpu_count() or 1))
    for thread in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(thread), cores)


def postgres_pids() -> list[int]:
    return [pid for pid, name in procfs.names().items() if name == "postgres"]


def server_core() -> int | None:
    """The core a server started now is pinned to (inside `server_apart()`), else None."""
    value = os.environ.get(SERVER_CORE_ENV)
    return int(value) if value else None


@contextlib.contextmanager
def server_apart() -> Iterator[None]:
    """This harness (and so wrk, which it starts) and PostgreSQL's processes (and so the backends its
    postmaster forks later) on OTHERS_CORE; servers started meanwhile on SERVER_CORE."""
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("--pin needs two cores")
    os.environ[SERVER_CORE_ENV] = str(SERVER_CORE)
    pin(os.getpid(), OTHERS_CORE)
    try:
        for pid in postgres_pids():
            with contextlib.suppress(OSError):  # a backend that ended meanwhile
                pin(pid, OTHERS_CORE)
        yield
    finally:
        for pid in postgres_pids():
            with contextlib.suppress(OSError):
                pin(pid, None)
        pin(os.getpid(), None)
        del os.environ[SERVER_CORE_ENV]
