"""A throwaway PostgreSQL cluster for tests that stop and start the database server itself.

Made with initdb in a temporary folder, listening on 127.0.0.1 on a free port of its own (no Unix
socket), trust authentication, fsync on. Never the machine's shared server: stopping that would break
everyone else's tests. PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres`
system user.
"""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from tests.conftest import free_port
from tests.live import wait_until


def postgres_bindir() -> Path | None:
    """The newest installed server's bin folder (initdb, pg_ctl), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PgCluster:
    def __init__(self, folder: Path, bindir: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.bindir = bindir
        self.port = free_port()
        # The operating-system user the server runs as (None: this one); the database superuser is
        # `postgres` either way, and trust authentication lets the tests connect as it.
        self.user = "postgres" if os.geteuid() == 0 else None
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            check=True,
            timeout=timeout,
            user=self.user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.folder,
        )

    def init(self) -> "PgCluster":
        if self.user is not None:
            shutil.chown(self.folder, user=self.user)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-instructions",
            "-E",
            "UTF8",
        )
        return self

    def start(self) -> "PgCluster":
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='' -c fsync=on"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        assert wait_until(self.accepting, deadline_s=30), "the throwaway PostgreSQL did not start"
        return self

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash of the database server: no checkpoint, clients cut off at once."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def accepting(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False


@contextmanager
def throwaway_cluster() -> Iterator[PgCluster]:
    """initdb + start in a fresh temporary folder; stopped and deleted afterwards, whatever happens."""
    import pytest

    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    folder = Path(tempfile.mkdtemp(prefix="webhooks-pg-"))
    cluster = PgCluster(folder, bindir)
    try:
        yield cluster.init().start()
    finally:
        if (cluster.data / "postmaster.pid").exists():
            subprocess.run(
                [str(bindir / "pg_ctl"), "-D", str(cluster.data), "-m", "immediate", "stop"],
                user=cluster.user,
                timeout=60,
                check=False,
                capture_output=True,
            )
        shutil.rmtree(folder, ignore_errors=True)
