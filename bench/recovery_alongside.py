"""A recovery run while live deliveries arrive, measured:
`python -m bench.recovery_alongside [--database postgresql|sqlite] [--runner cli|service] [--rounds N]
[--seconds S] [--pace N] [--no-unpaced]`.

Each round has its own fresh database and its own server (ours, one worker, a Razorpay secret for the
live load, Stripe's recovery settings pointing at the fake) and sends distinct signed Razorpay
deliveries with wrk (32 connections). Rounds alternate: live load alone; live load with an unpaced
recovery of 10,000 events from the fake of Stripe's API (bench/fake_stripe.py, in a process of its own)
started RECOVERY_DELAY_S into it (left out with --no-unpaced); and, with --pace N (0: not run), the same
with RECOVERY_EVENTS_PER_SECOND=N. The recovery runs one of two ways:

- `--runner cli` (the default): `python -m cli recover --provider stripe`, as an operator runs it, in
  its own process with its own writer, against the same database. Its window is from the process's
  start to its exit, and its rate is its rows over that wall time, start-up included.
- `--runner service`: the service's own periodic recovery (RECOVERY_INTERVAL), which stores through the
  service's writer. The fake lists no events until the harness arms it; the next periodic run then
  reads them all. Its window is from that run's first page request to its last stored row. In every
  round of this runner, alone rounds included, the service runs its (empty) periodic recovery.

The live rate compared is stored webhook rows (origin 'webhook', by received_at) per second within the
recovery's window. Alone rounds are read over the same window relative to their wrk start as the
recovery round after them, so both rates are over the same stretch of a run. Every round checks that
10,000 rows with origin 'recovery' were stored; their own span is printed beside the rate.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import payloads, procfs, wrk
from bench.databases import Database, ensure_postgres, fresh
from bench.servers import OURS, ROOT, Server
from tests.recovery.fake_api import STRIPE_KEY

EVENTS = 10_000
SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)
CONNECTIONS = 32
RECOVERY_DELAY_S = 1.5  # recovery starts this far into the live load, so it lies wholly inside it
LIVE_RATE_GUESS = 6_000  # deliveries/s to prepare per second of load; more than one worker answers
SERVICE_INTERVAL_S = 0.5  # RECOVERY_INTERVAL of --runner service: a run starts within this of arming

# Seconds since the Unix epoch of a stored row's received_at, per database.
EPOCH = {
    "postgresql": "extract(epoch from received_at)",
    "sqlite": "(julianday(received_at) - 2440587.5) * 86400.0",
}


@dataclass
class Recovery:
    started: float  # Unix time at the process's start, or of the service's run's first page request
    ended: float  # and at its exit, or of the run's last stored row
    stored: int  # rows with origin 'recovery' afterwards
    span: tuple[float, float]  # the first and last recovered row's received_at
    cpu_s: float | None  # user + system of the recover process and its children (SQLite's writer)
    output: str
    returncode: int

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def rate(self) -> float:
        return self.stored / self.seconds


@dataclass
class Round:
    kind: str  # "alone", "unpaced" or "paced"
    result: wrk.WrkResult
    wrk_started: float  # Unix time just before wrk started
    live: list[float]  # received_at of every stored webhook row, Unix time
    load_before: str
    load_after: str
    recovery: Recovery | None = None
    server_cpu_s: float = 0.0  # user + system of the server's processes over the round
    server_wait_s: float = 0.0  # and their time runnable but waiting for a CPU
    fake_cpu_s: float = 0.0  # and of the fake's process
    notes: list[str] = field(default_factory=list)

    def live_rate(self, offset: float, seconds: float) -> float:
        start = self.wrk_started + offset
        return sum(start <= stamp < start + seconds for stamp in self.live) / seconds


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_seconds(pid: int) -> float:
    """User + system seconds of `pid` so far, 0 once it is gone."""
    try:
        return procfs.cpu_seconds(pid)
    except OSError:
        return 0.0


def tree_cpu_seconds(server: Server) -> float:
    return sum(cpu_seconds(pid) for pid in server.rss_kib())


def run_queue_seconds(pid: int) -> float:
    """Seconds `pid` has spent runnable but waiting for a CPU, 0 once it is gone."""
    try:
        return procfs.run_queue_seconds(pid)
    except OSError:
        return 0.0


def tree_run_queue_seconds(server: Server) -> float:
    return sum(run_queue_seconds(pid) for pid in server.rss_kib())


def rows(database: Database, origin: str) -> list[float]:
    query = f"SELECT {EPOCH[database.kind]} FROM webhook_events WHERE origin = '{origin}'"
    if database.kind == "sqlite":
        import sqlite3
        from contextlib import closing

        with closing(sqlite3.connect(database.url.removeprefix("sqlite:///"))) as connection:
            return sorted(float(row[0]) for row in connection.execute(query))
    import psycopg

    with psycopg.connect(database.url) as connection:
        return sorted(float(row[0]) for row in connection.execute(query.encode()))


def start_fake(*, held: bool = False) -> tuple[subprocess.Popen[str], str]:
    """bench/fake_stripe.py in its own process, and its URL; `held`: it lists nothing until armed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_stripe", str(EVENTS), str(int(SINCE.timestamp()))]
        + (["--held"] if held else []),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def serve_one_run(fake: subprocess.Popen[str]) -> tuple[float | None, float | None]:
    """Arm a held fake and wait for the run it serves to read its last page: that run's first and last
    page requests, Unix time (None when no run finished within the fake's deadline)."""
    assert fake.stdin is not None and fake.stdout is not None
    fake.stdin.write("arm\nwait\n")
    fake.stdin.flush()
    times = json.loads(fake.stdout.readline())
    return times["first"], times["last"]


def service_recovery_env() -> dict[str, str]:
    """The service's periodic recovery, every SERVICE_INTERVAL_S, with a window reaching back to the
    fake's first event at every run (not from the mark less the default five minutes)."""
    reach = str(int(time.time() - SINCE.timestamp()) + 86_400)
    return {
        "RECOVERY_INTERVAL": str(SERVICE_INTERVAL_S),
        "RECOVERY_LOOKBACK_SECONDS": reach,
        "RECOVERY_OVERLAP_SECONDS": reach,
    }


def recover(env: dict[str, str]) -> tuple[float, float, float, str, int]:
    """`python -m cli recover` over the fake's window; (start, end, CPU seconds, output, exit code)."""
    argv = [
        sys.executable,
        "-m",
        "cli",
        "recover",
        "--provider",
        "stripe",
        "--since",
        SINCE.isoformat(),
        "--until",
        UNTIL.isoformat(),
    ]
    started = time.time()
    process = subprocess.Popen(
        argv, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert process.stdout is not None
    output = process.stdout.read().decode(errors="replace")
    # wait4 reports the process's own usage with that of the children it waited for (SQLite's writer).
    _, status, usage = os.wait4(process.pid, 0)
    ended = time.time()
    process.returncode = os.waitstatus_to_exitcode(status)
    return started, ended, usage.ru_utime + usage.ru_stime, output, process.returncode


def one_round(
    database_kind: str,
    folder: Path,
    *,
    tag: str,
    kind: str,
    runner: str,
    pace: float,
    seconds: float,
    fake: subprocess.Popen[str],
    fake_url: str,
) -> Round:
    with fresh(database_kind, folder, tag) as database:
        env = {
            "DATABASE_URL": database.url,
            "RAZORPAY_WEBHOOK_SECRET": payloads.SECRET,
            "STRIPE_API_KEY": STRIPE_KEY,
            "STRIPE_API_BASE": fake_url,
            "LOG_LEVEL": "WARNING",
        }
        if runner == "service":
            env |= service_recovery_env()
        if kind == "paced":
            env["RECOVERY_EVENTS_PER_SECOND"] = str(pace)
        deliveries = payloads.deliveries(count=int(LIVE_RATE_GUESS * seconds), tag=tag, duplicate_ratio=0.0)
        requests = [payloads.webhook_request(d) for d in deliveries]
        with Server(OURS, workers=1, env=env, log_path=folder / f"{tag}.log") as server:
            server.wait_ready()
            load_before = load_average()
            outcome: list[wrk.WrkResult] = []
            workdir = folder / tag
            workdir.mkdir()

            def load() -> None:
                outcome.append(
                    wrk.run(
                        url=server.url,
                        requests=requests,
                        connections=CONNECTIONS,
                        budget_s=seconds,
                        workdir=workdir,
                    )
                )

            cpu_before, fake_before = tree_cpu_seconds(server), cpu_seconds(fake.pid)
            wait_before = tree_run_queue_seconds(server)
            wrk_started = time.time()
            loader = threading.Thread(target=load)
            loader.start()
            ran = served = None
            if kind != "alone":
                time.sleep(RECOVERY_DELAY_S)  # the live load runs alone first, as when an operator starts
                if runner == "cli":
                    ran = recover(env)
                else:
                    served = serve_one_run(fake)
            loader.join()
            server_cpu = tree_cpu_seconds(server) - cpu_before
            server_wait = tree_run_queue_seconds(server) - wait_before
            fake_cpu = cpu_seconds(fake.pid) - fake_before
            load_after = load_average()
        result = outcome[0]
        recovered = rows(database, "recovery")
        round_ = Round(
            kind=kind,
            result=result,
            wrk_started=wrk_started,
            live=rows(database, "webhook"),
            load_before=load_before,
            load_after=load_after,
            server_cpu_s=server_cpu,
            server_wait_s=server_wait,
            fake_cpu_s=fake_cpu,
        )
        span = (recovered[0], recovered[-1]) if recovered else (0.0, 0.0)
        if ran is not None:
            started, ended, cpu, output, code = ran
            round_.recovery = Recovery(
                started=started,
                ended=ended,
                stored=len(recovered),
                span=span,
                cpu_s=cpu,
                output=output.strip().splitlines()[0] if output.strip() else "",
                returncode=code,
            )
        if served is not None:
            first, last = served
            if first is None or last is None:
                raise RuntimeError(f"{tag}: the service's recovery did not read the fake's last page")
            round_.recovery = Recovery(
                started=first,
                ended=max(span[1], last),
                stored=len(recovered),
                span=span,
                cpu_s=None,  # in the server's
                output="in the service",
                returncode=0,
            )
        if (recovery := round_.recovery) is not None:
            if recovery.ended > wrk_started + seconds:
                round_.notes.append("recovery outlasted the live load's budget")
            if len(recovered) != EVENTS:
                round_.notes.append(f"{len(recovered)} recovered rows, not {EVENTS}")
        return round_


def describe(round_: Round, offset: float, length: float) -> str:
    result = round_.result
    line = (
        f"{round_.kind:>7}: wrk {result.rps:,.0f}/s "
        f"p99 {result.p99_ms:.1f} ms ({result.requests} answered, {result.non2xx} non-2xx); "
        f"live in [{offset:.1f} s, +{length:.1f} s] {round_.live_rate(offset, length):,.0f}/s; "
        f"server CPU {round_.server_cpu_s:.1f} s (waited {round_.server_wait_s:.1f} s for one), "
        f"fake CPU {round_.fake_cpu_s:.1f} s; "
        f"load {round_.load_before} -> {round_.load_after}"
    )
    if (ran := round_.recovery) is not None:
        first, last = ran.span
        line += (
            f"\n  recovery: {ran.stored} stored in {ran.seconds:.2f} s = {ran.rate:,.0f} events/s "
            f"(rows' own span {last - first:.2f} s = {ran.stored / max(last - first, 1e-9):,.0f}/s); "
            + (f"its CPU {ran.cpu_s:.1f} s; " if ran.cpu_s is not None else "")
            + f"exit {ran.returncode}: {ran.output}"
        )
    for note in round_.notes:
        line += f"\n  NOTE: {note}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument(
        "--runner", choices=("cli", "service"), default="cli", help="who runs the recovery (see above)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each kind, alternating")
    parser.add_argument("--seconds", type=float, default=20.0, help="the live load's length")
    parser.add_argument("--pace", type=float, default=0, help="RECOVERY_EVENTS_PER_SECOND of paced rounds")
    parser.add_argument(
        "--unpaced", action=argparse.BooleanOptionalAction, default=True, help="run unpaced rounds too"
    )
    args = parser.parse_args()
    if args.database == "postgresql":
        ensure_postgres()
    kinds = ("alone",) + (("unpaced",) if args.unpaced else ()) + (("paced",) if args.pace > 0 else ())
    if len(kinds) == 1:
        parser.error("nothing to compare: --no-unpaced needs --pace")
    folder = Path(tempfile.mkdtemp(prefix="bench-recovery-alongside-"))
    fake, fake_url = start_fake(held=args.runner == "service")
    cycles: list[dict[str, Round]] = []
    try:
        for number in range(args.rounds):
            cycle: dict[str, Round] = {}
            for kind in kinds:
                tag = f"r{number}{kind[0]}"
                cycle[kind] = one_round(
                    args.database,
                    folder,
                    tag=tag,
                    kind=kind,
                    runner=args.runner,
                    pace=args.pace,
                    seconds=args.seconds,
                    fake=fake,
                    fake_url=fake_url,
                )
                print(f"round {tag} done, load {load_average()}", file=sys.stderr, flush=True)
            cycles.append(cycle)
    finally:
        assert fake.stdin is not None
        fake.stdin.close()
        fake.wait(10)
    print(
        f"{args.database}, {EVENTS} events recovered by the {args.runner} during wrk -c {CONNECTIONS} "
        f"for {args.seconds:.0f} s"
        + (f", paced rounds at RECOVERY_EVENTS_PER_SECOND={args.pace:.0f}" if args.pace > 0 else "")
    )
    for kind in kinds[1:]:
        report(kind, cycles)
    print(f"load average at the end: {load_average()}")


def report(kind: str, cycles: list[dict[str, Round]]) -> None:
    """Each `kind` round against the alone round of its cycle, over the same window of their runs."""
    ratios: list[float] = []
    rates: list[float] = []
    for cycle in cycles:
        alone, along = cycle["alone"], cycle[kind]
        ran = along.recovery
        assert ran is not None
        offset = ran.started - along.wrk_started
        print(describe(alone, offset, ran.seconds))
        print(describe(along, offset, ran.seconds))
        ratios.append(along.live_rate(offset, ran.seconds) / alone.live_rate(offset, ran.seconds))
        rates.append(ran.rate)
        print(f"  live during recovery / alone, same window: {ratios[-1]:.2f}")
    wrk_alone = statistics.median(cycle["alone"].result.rps for cycle in cycles)
    wrk_along = statistics.median(cycle[kind].result.rps for cycle in cycles)
    print(
        f"== {kind}: live ratio median {statistics.median(ratios):.2f} "
        f"({', '.join(f'{r:.2f}' for r in ratios)}); recovery {', '.join(f'{r:,.0f}' for r in rates)} "
        f"events/s; whole wrk runs {wrk_along:,.0f}/s against {wrk_alone:,.0f}/s alone"
    )


if __name__ == "__main__":
    main()
