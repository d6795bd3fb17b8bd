"""One measured run: start a server on a database, warm it up, drive it, stop it, count what it stored."""

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import burst, payloads, wrk
from bench.databases import Database
from bench.servers import Server, ServerFailed, ServerSpec

_run_numbers = itertools.count(1)  # event and payment ids differ between runs that share a database
FIRST_GUESS_RPS = 4_000.0  # sizes the warm-up only; the measured run is sized from the warm-up's rate
# A cold server's first second can be slow (imports, first connections): never size below this rate.
FLOOR_RPS = 2_000.0


@dataclass(frozen=True, slots=True)
class Budget:
    warmup_s: float
    measure_s: float


@dataclass(slots=True)
class Result:
    scenario: str  # which part of the plan: main, sweep, workers, flat-ingest, flat-history, ...
    server: str
    database: str  # "-" for the ceiling, which has none
    workers: int
    connections: int
    label: str = ""  # e.g. "empty" or "1,000,000 stored"
    repeat: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    requests: int = 0  # answered in the measured phase
    duration_s: float = 0.0
    non2xx: int = 0  # warm-up and measured phase together: none may hide
    statuses: dict[str, int] = field(default_factory=dict)
    socket_errors: dict[str, int] = field(default_factory=dict)
    unanswered: int = 0  # written but never answered before wrk gave up
    ended_by_deadline: bool = False
    unique_sent: int | None = None  # distinct events sent, warm-up included
    duplicates_sent: int | None = None
    rows_before: int | None = None
    rows_added: int | None = None
    ready_s: float | None = None
    stopped_on_sigterm: bool | None = None
    stop_s: float | None = None
    rss_mib: float | None = None
    error: str | None = None
    log_tail: str | None = None


API_TOKEN = "bench_token"  # ours' read API as deployed: production refuses to start without tokens


def server_env(database: Database | None) -> dict[str, str]:
    env = {"RAZORPAY_WEBHOOK_SECRET": payloads.SECRET, "APP_ENV": "development", "API_TOKENS": API_TOKEN}
    if database is not None:
        env["DATABASE_URL"] = database.url
    return env


def _record(result: Result, measured: wrk.WrkResult, warm: wrk.WrkResult | None) -> None:
    result.rps, result.p50_ms, result.p99_ms = measured.rps, measured.p50_ms, measured.p99_ms
    result.max_ms = measured.max_ms
    result.requests, result.duration_s = measured.requests, measured.duration_s
    result.unanswered, result.ended_by_deadline = measured.unanswered, measured.ended_by_deadline
    runs = [run for run in (warm, measured) if run is not None]
    result.non2xx = sum(run.non2xx for run in runs)
    for run in runs:
        for status, count in run.statuses.items():
            result.statuses[status] = result.statuses.get(status, 0) + count
        for kind, count in run.errors.items():
            result.socket_errors[kind] = result.socket_errors.get(kind, 0) + count


def _run(
    result: Result,
    spec: ServerSpec,
    database: Database | None,
    workdir: Path,
    drive: Callable[[Server, Result], None],
) -> Result:
    if database is not None and spec.table is not None:
        result.rows_before = database.count_rows(spec.table) or 0
    log_path = workdir / f"{spec.name}-{result.database}-{next(_run_numbers)}.log"
    try:
        with Server(spec, workers=result.workers, env=server_env(database), log_path=log_path) as server:
            result.ready_s = server.wait_ready()
            drive(server, result)
            result.rss_mib = sum(server.rss_kib().values()) / 1024
        outcome = server.stop()
        result.stopped_on_sigterm, result.stop_s = outcome.on_sigterm, outcome.seconds
        if database is not None and spec.table is not None:
            rows = database.count_rows(spec.table)
            result.rows_added = None if rows is None else rows - (result.rows_before or 0)
    except (ServerFailed, RuntimeError) as exc:
        result.error = str(exc)[-2000:]
    if result.error or result.non2xx or result.unanswered:
        result.log_tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else None
    return result


def ingest(
    spec: ServerSpec,
    *,
    database: Database | None,
    workers: int,
    connections: int,
    budget: Budget,
    workdir: Path,
    scenario: str,
    label: str = "",
    repeat: int = 0,
) -> Result:
    result = Result(
        scenario, spec.name, database.kind if database else "-", workers, connections, label, repeat
    )

    def drive(server: Server, result: Result) -> None:
        run = next(_run_numbers)
        warm = burst.ingest(
            url=server.url,
            tag=f"r{run}w",
            connections=connections,
            budget_s=budget.warmup_s,
            count=burst.request_count(expected_rps=FIRST_GUESS_RPS, budget_s=budget.warmup_s),
            workdir=workdir,
        )
        count = burst.request_count(expected_rps=max(warm.result.rps, FLOOR_RPS), budget_s=budget.measure_s)
        measured = burst.ingest(
            url=server.url,
            tag=f"r{run}m",
            count=count,
            connections=connections,
            budget_s=budget.measure_s,
            workdir=workdir,
        )
        _record(result, measured.result, warm.result)
        result.unique_sent = warm.unique_sent + measured.unique_sent
        result.duplicates_sent = warm.duplicates_sent + measured.duplicates_sent

    return _run(result, spec, database, workdir, drive)


def history(
    spec: ServerSpec,
    *,
    database: Database,
    payment_ids: list[str],
    connections: int,
    budget: Budget,
    workdir: Path,
    label: str,
    repeat: int = 0,
) -> Result:
    result = Result("flat-history", spec.name, database.kind, 1, connections, label, repeat)

    def drive(server: Server, result: Result) -> None:
        def replay(budget_s: float, count: int) -> wrk.WrkResult:
            return burst.history(
                headers={"Authorization": f"Bearer {API_TOKEN}"},
                url=server.url,
                payment_ids=payment_ids,
                count=count,
                connections=connections,
                budget_s=budget_s,
                workdir=workdir,
            )

        warm = replay(
            budget.warmup_s, burst.request_count(expected_rps=FIRST_GUESS_RPS, budget_s=budget.warmup_s)
        )
        measured = replay(
            budget.measure_s, burst.request_count(expected_rps=warm.rps, budget_s=budget.measure_s)
        )
        _record(result, measured, warm)

    return _run(result, spec, database, workdir, drive)
