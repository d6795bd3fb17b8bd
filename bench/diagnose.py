"""Where PostgreSQL ingest's time goes: the ceiling and ours side by side, round by round, with evidence.

    .venv/bin/python bench/diagnose.py                      # 3 rounds of 8 s at 32 connections
    .venv/bin/python bench/diagnose.py --pg-option synchronous_commit=off   # a diagnostic, never our setting
    .venv/bin/python bench/diagnose.py --pin                # the server on a core of its own

Each round runs the ceiling, then ours on a fresh PostgreSQL database, under the same wrk replay as
`make bench` (10% re-sends). While ours runs it samples, every 20 ms, what PostgreSQL's backends of that
database wait on (`pg_stat_activity`), and every 0.25 s the CPU of each process group (ours: uvicorn and
anything below it; PostgreSQL: every `postgres` process; wrk). Around the measured phase it reads
`pg_stat_wal`, `pg_stat_bgwriter` (checkpoints), autovacuum and autoanalyze counts of the tables, and our
own `/metrics` (events per batch, batch write time). `--pg-option` is set on ours' fresh database only
(`ALTER DATABASE ... SET`, which every connection to it starts with, the writer's included), so the
cluster stays durable for everything else.

`--pin` gives the server under test (the ceiling, then ours) a core of its own, and puts wrk, this
harness and PostgreSQL on the other (bench/cores.py).
"""

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: `bench.*` imports from here

from bench import burst, cores, measure, procfs, servers  # noqa: E402
from bench.databases import PG_ADMIN, ensure_postgres, fresh_postgres  # noqa: E402

CONNECTIONS = 32


@dataclass
class Round:
    server: str
    rps: float = 0.0
    p99_ms: float = 0.0
    requests: int = 0
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # cores, by process group
    # and the cores' worth of time its processes were runnable but waiting for a CPU
    run_queue: dict[str, float] = field(default_factory=dict)
    waits: dict[str, float] = field(default_factory=dict)  # backends on average, by state/wait event
    counters: dict[str, float] = field(default_factory=dict)  # WAL, checkpoints, autovacuum, batches


def _groups(server_pid: int) -> dict[int, str]:
    """Every process by pid: 'ours' (the server and what it started), 'postgres', 'wrk' or 'other'."""
    ours = {server_pid, *servers._descendants(server_pid)}
    return {
        pid: "ours" if pid in ours else name if name in ("postgres", "wrk") else "other"
        for pid, name in procfs.names().items()
    }


class Sampler(threading.Thread):
    """CPU by process group and PostgreSQL's wait events, until stopped."""

    def __init__(self, server_pid: int, database: str | None) -> None:
        super().__init__(daemon=True)
        self.server_pid, self.database = server_pid, database
        self.stopped = threading.Event()
        # (CPU seconds, seconds waiting for a CPU) by (pid, group), at the first and the last sample
        self.first: dict[tuple[int, str], tuple[float, float]] = {}
        self.last: dict[tuple[int, str], tuple[float, float]] = {}
        self.waits: Counter[str] = Counter()
        self.samples = 0

    def _cpu(self) -> None:
        for pid, group in _groups(self.server_pid).items():
            try:
                counts = procfs.cpu_seconds(pid), procfs.run_queue_seconds(pid)
            except OSError:
                continue
            self.first.setdefault((pid, group), counts)
            self.last[(pid, group)] = counts

    def run(self) -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            while not self.stopped.is_set():
                if self.samples % 12 == 0:
                    self._cpu()
                if self.database is not None:
                    rows = admin.execute(
                        "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                        "WHERE datname = %s AND backend_type = 'client backend'",
                        (self.database,),
                    ).fetchall()
                    for state, kind, event in rows:
                        self.waits[f"{state} {kind or '-'}:{event or '-'}"] += 1
                self.samples += 1
                self.stopped.wait(0.02)
            self._cpu()

    def cores(self, seconds: float) -> tuple[dict[str, float], dict[str, float]]:
        """By process group: the cores used, and the cores' worth of time spent waiting for one."""
        used: defaultdict[str, float] = defaultdict(float)
        waited: defaultdict[str, float] = defaultdict(float)
        for key, (cpu, queued) in self.last.items():
            used[key[1]] += cpu - self.first[key][0]
            waited[key[1]] += queued - self.first[key][1]
        return (
            {group: cpu / seconds for group, cpu in used.items()},
            {group: queued / seconds for group, queued in waited.items()},
        )

    def mean_waits(self) -> dict[str, float]:
        return {name: count / max(self.samples, 1) for name, count in self.waits.most_common()}


def _server_counters(admin: psycopg.Connection[Any], database: str) -> dict[str, float]:
    wal = admin.execute(
        "SELECT wal_records, wal_fpi, wal_bytes, wal_write, wal_sync FROM pg_stat_wal"
    ).fetchone()
    checkpoints = admin.execute("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter").fetchone()
    names = ("wal_records", "wal_fpi", "wal_bytes", "wal_writes", "wal_syncs")
    out = dict(zip(names, map(float, wal or (0,) * len(names)), strict=True))
    out["checkpoints"] = float(checkpoints[0]) if checkpoints else 0.0
    with psycopg.connect(PG_ADMIN.rsplit("/", 1)[0] + "/" + database, autocommit=True) as own:
        for name, vacuums, analyzes in own.execute(
            "SELECT relname, autovacuum_count, autoanalyze_count FROM pg_stat_user_tables "
            "WHERE relname IN ('webhook_events', 'payments')"
        ):
            out[f"autovacuum {name}"] = float(vacuums)
            out[f"autoanalyze {name}"] = float(analyzes)
    return out


def _batch_counters(url: str) -> dict[str, float]:
    text = requests.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {measure.API_TOKEN}"}, timeout=5
    ).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("webhook_batch_events", "webhook_batch_write_seconds"):
            for sample in family.samples:
                key = sample.name + (f"<={sample.labels['le']}" if "le" in sample.labels else "")
                out[key] = out.get(key, 0.0) + sample.value
    return out


def _difference(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def run_once(spec: servers.ServerSpec, workdir: Path, seconds: float, options: list[str]) -> Round:
    result = Round(spec.name)
    with fresh_postgres() if spec.table else _no_database() as database:
        if database is not None and options:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                for option in options:
                    setting, value = option.split("=", 1)
                    admin.execute(
                        sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                            sql.Identifier(database.url.rsplit("/", 1)[1]),
                            sql.Identifier(setting),
                            sql.Literal(value),
                        )
                    )
        server_env = measure.server_env(database)
        with servers.Server(spec, workers=1, env=server_env, log_path=workdir / f"{spec.name}.log") as server:
            server.wait_ready()
            burst.ingest(
                url=server.url,
                tag=f"d{time.monotonic_ns()}w",
                count=4_000,
                connections=CONNECTIONS,
                budget_s=1.0,
                workdir=workdir,
            )
            name = database.url.rsplit("/", 1)[1] if database else None
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                before = _server_counters(admin, name) if name else {}
                batches_before = _batch_counters(server.url) if name else {}
                sampler = Sampler(server.process.pid, name)
                sampler.start()
                began = time.monotonic()
                load = burst.ingest(
                    url=server.url,
                    tag=f"d{time.monotonic_ns()}m",
                    count=int(12_000 * seconds),
                    connections=CONNECTIONS,
                    budget_s=seconds,
                    workdir=workdir,
                )
                result.seconds = time.monotonic() - began
                sampler.stopped.set()
                sampler.join()
                if name:
                    result.counters = _difference(_server_counters(admin, name), before)
                    result.counters.update(_difference(_batch_counters(server.url), batches_before))
        result.rps, result.p99_ms, result.requests = load.result.rps, load.result.p99_ms, load.result.requests
        (result.cpu, result.run_queue), result.waits = sampler.cores(result.seconds), sampler.mean_waits()
    return result


class _no_database:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _quantile(counters: dict[str, float], name: str, q: float) -> str:
    buckets = sorted(
        (float(key.split("<=")[1]), value)
        for key, value in counters.items()
        if key.startswith(f"{name}_bucket<=")
    )
    total = buckets[-1][1] if buckets else 0.0
    for bound, count in buckets:
        if total and count >= q * total:
            return f"<= {bound:g}"
    return "-"


def report(ceiling: Round, ours: Round, index: int) -> None:
    print(
        f"\n## round {index}: ceiling {ceiling.rps:,.0f} req/s p99 {ceiling.p99_ms:.1f} ms; "
        f"ours {ours.rps:,.0f} req/s ({ours.rps / ceiling.rps:.2f}x) p99 {ours.p99_ms:.1f} ms "
        f"({ours.p99_ms / ceiling.p99_ms:.2f}x)"
    )
    per = max(ours.requests, 1)
    for label, run in (("ceiling", ceiling), ("ours", ours)):
        cpu = ", ".join(
            f"{group} {cores:.2f} cores ({cores * run.seconds / max(run.requests, 1) * 1e6:.0f} us/req, "
            f"{run.run_queue.get(group, 0.0):.2f} waiting for one)"
            for group, cores in sorted(run.cpu.items(), key=lambda item: -item[1])
            if cores >= 0.01
        )
        print(f"- CPU, {label}: {cpu}")
    print(
        "- PostgreSQL backends of ours, on average: "
        + ", ".join(f"{name} {value:.2f}" for name, value in list(ours.waits.items())[:6])
    )
    c = ours.counters
    if c:
        batches = c.get("webhook_batch_events_count", 0.0)
        size = c.get("webhook_batch_events_sum", 0.0) / max(batches, 1)
        print(
            f"- batches: {batches:,.0f}, {size:.1f} events "
            f"each on average; write+commit median {_quantile(c, 'webhook_batch_write_seconds', 0.5)} s, "
            f"p99 {_quantile(c, 'webhook_batch_write_seconds', 0.99)} s"
        )
        print(
            f"- WAL: {c['wal_bytes'] / per:,.0f} bytes and {c['wal_records'] / per:.1f} records a request, "
            f"{c['wal_fpi']:,.0f} full-page images, {c['wal_syncs']:,.0f} syncs "
            f"({c['wal_syncs'] / max(batches, 1):.2f} a batch); checkpoints {c['checkpoints']:.0f}; "
            + ", ".join(f"{key} {value:.0f}" for key, value in c.items() if key.startswith("auto"))
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--pg-option",
        action="append",
        default=[],
        help="a PostgreSQL setting for ours' database only, e.g. synchronous_commit=off",
    )
    parser.add_argument("--pin", action="store_true", help="the server on a core of its own (see above)")
    args = parser.parse_args()
    ensure_postgres()
    workdir = Path(tempfile.mkdtemp(prefix="diagnose-"))
    with cores.server_apart() if args.pin else contextlib.nullcontext():
        for index in range(1, args.rounds + 1):
            ceiling = run_once(servers.CEILING, workdir, args.seconds, [])
            ours = run_once(servers.OURS, workdir, args.seconds, args.pg_option)
            report(ceiling, ours, index)


if __name__ == "__main__":
    main()
