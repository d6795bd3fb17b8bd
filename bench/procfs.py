"""What the benches read of a process from /proc: its name, its CPU time, and its time spent runnable
but waiting for a CPU. Each raises OSError once the process is gone."""

import contextlib
import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def names() -> dict[int, str]:
    """Every running process's command name (/proc/<pid>/comm), by pid."""
    out: dict[int, str] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):  # gone meanwhile
            out[int(pid)] = Path(f"/proc/{pid}/comm").read_text().strip()
    return out


def cpu_seconds(pid: int) -> float:
    """User + system seconds of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def run_queue_seconds(pid: int) -> float:
    """Seconds `pid` has spent runnable but waiting for a CPU (the second field of schedstat)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
