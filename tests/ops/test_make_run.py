"""`make run` stops when told to, as a supervisor or a terminal tells it: SIGTERM or SIGINT to its process
group, SIGTERM to make, to the launcher make started (ops/serve.py) or to uvicorn ends every process,
after the application's shutdown, and removes the metrics directory that `make run` created."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, free_port

# The venv this test runs in, given to make as VENV and marked up to date (-o): nothing is installed.
VENV = sys.prefix
# What a surrounding `make test` exports to its children (a jobserver this make would not reach).
MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "VENV")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgrp: int
    state: str


def read_proc(pid: int) -> Proc | None:
    """A process's parent, group and state from /proc/<pid>/stat; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name, in parentheses, may hold spaces
    return Proc(pid=pid, state=fields[0], ppid=int(fields[1]), pgrp=int(fields[2]))


def processes() -> list[Proc]:
    found = (read_proc(int(entry.name)) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [proc for proc in found if proc is not None]


def still_running(groups: set[int]) -> list[Proc]:
    """The processes of these groups that still run (a zombie has stopped; only its parent's wait is due)."""
    return [proc for proc in processes() if proc.pgrp in groups and proc.state != "Z"]


def only_child(pid: int) -> int:
    children = [proc.pid for proc in processes() if proc.ppid == pid and proc.state != "Z"]
    assert len(children) == 1, f"expected one child of {pid}, found {children}"
    return children[0]


@dataclass
class MakeRun:
    """`make run` in a session of its own, and what it started: make -> launcher -> uvicorn (and its
    workers and writers, in a process group of uvicorn's own)."""

    process: "subprocess.Popen[bytes]"
    log: Path
    url: str
    workers: int = 1
    launcher: int = 0  # these three once the server answers
    uvicorn: int = 0
    directory: Path | None = None  # PROMETHEUS_MULTIPROC_DIR, made only for several workers

    @property
    def make_pid(self) -> int:
        return self.process.pid

    @property
    def groups(self) -> set[int]:
        return {self.make_pid, self.uvicorn}

    def read_log(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_healthy(self, deadline_s: float = 30.0) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"make run exited with {self.process.returncode}:\n{self.read_log()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)  # polling interval while the server boots, not a wait for a race
        pytest.fail(f"/healthz did not answer in {deadline_s} s:\n{self.read_log()}")


@pytest.fixture
def make_run(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeRun]:
    """`make run` with WORKERS=request.param (1 unless parametrized), until it answers on /healthz."""
    workers = getattr(request, "param", 1)
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in MAKE_VARIABLES}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(APP_ENV="development", DATABASE_URL=f"sqlite:///{tmp_path / 'webhooks.db'}")
    command = ["make", "-s", "-C", str(ROOT), "-o", f"{VENV}/.installed", "run", f"VENV={VENV}"]
    command += [f"PORT={port}", f"WORKERS={workers}"]
    log = tmp_path / "make-run.log"
    # A file, not a pipe, for the log: nobody reads a pipe while the test runs.
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    run = MakeRun(process=process, log=log, url=f"http://127.0.0.1:{port}", workers=workers)
    try:
        run.wait_healthy()
        run.launcher = only_child(run.make_pid)
        run.uvicorn = only_child(run.launcher)
        run.directory = metrics_directory(run.uvicorn)
        yield run
    finally:
        # Whatever happened, nothing of this run outlives the test.
        for group in run.groups - {0}:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        process.wait()
        if run.directory is not None:
            shutil.rmtree(run.directory, ignore_errors=True)


def metrics_directory(uvicorn: int) -> Path | None:
    """The directory `make run` made for this run, as uvicorn's environment names it; None without one."""
    environ = Path(f"/proc/{uvicorn}/environ").read_bytes().split(b"\0")
    values = [item.split(b"=", 1)[1] for item in environ if item.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    return Path(os.fsdecode(values[0])) if values else None


@pytest.mark.parametrize(
    ("target", "signum", "make_run"),
    [
        ("group", signal.SIGTERM, 1),  # a supervisor stopping the whole service
        ("group", signal.SIGINT, 1),  # Ctrl-C in the terminal
        ("make", signal.SIGTERM, 1),  # a supervisor that signals only the process it started (docker stop)
        ("launcher", signal.SIGTERM, 1),  # the process make started, which made the metrics directory
        ("launcher", signal.SIGINT, 1),
        ("uvicorn", signal.SIGTERM, 1),  # the server itself
        ("group", signal.SIGINT, 2),  # with workers, uvicorn is a supervisor of worker processes
        ("launcher", signal.SIGTERM, 2),
    ],
    indirect=["make_run"],
)
def test_make_run_stops_cleanly_and_removes_its_metrics_directory(
    make_run: MakeRun, target: str, signum: signal.Signals
) -> None:
    directory = make_run.directory
    # One worker counts in its own memory; several share the directory's files.
    assert (directory is not None and directory.is_dir()) == (make_run.workers > 1)
    pids = {"make": make_run.make_pid, "launcher": make_run.launcher, "uvicorn": make_run.uvicorn}

    if target == "group":
        os.killpg(make_run.make_pid, signum)
    else:
        os.kill(pids[target], signum)

    try:
        make_run.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"make run still runs 10 s after {signum.name} to {target}:\n{make_run.read_log()}")
    deadline = time.monotonic() + 5
    while still_running(make_run.groups) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling interval for the last processes to exit
    assert still_running(make_run.groups) == [], make_run.read_log()
    assert directory is None or not directory.exists(), make_run.read_log()
    # Stopped, not killed: the application's shutdown ran.
    assert "Application shutdown complete" in make_run.read_log()
