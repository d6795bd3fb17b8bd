"""What `make bench` measures and in which order. Repeats are interleaved (ceiling, then the others,
then the ceiling again) so that a noisy neighbour on this shared machine hits all rows alike."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic

from bench import measure, prefill, report, rss
from bench.databases import Database, fresh
from bench.measure import Budget, Result
from bench.servers import CEILING, NAIVE, OURS, Server, ServerSpec

DATABASES = ("sqlite", "postgresql")
CONNECTIONS = 32
SWEEP = (1, 8, 32, 64, 128)
STORED_LARGE = 1_000_000
STORED_SMALL = 1_000


@dataclass(frozen=True, slots=True)
class Mode:
    name: str
    budget: Budget
    repeats: int
    full: bool
    rss_time_cap_s: float = 0.0


QUICK = Mode("quick", Budget(warmup_s=1, measure_s=6), repeats=1, full=False)
FULL = Mode("full", Budget(warmup_s=2, measure_s=10), repeats=3, full=True, rss_time_cap_s=900)


@dataclass
class Plan:
    mode: Mode
    workdir: Path
    with_ours: bool
    results: list[Result] = field(default_factory=list)
    extras: dict[str, object] = field(default_factory=dict)
    started: float = field(default_factory=monotonic)

    def say(self, text: str) -> None:
        print(f"[{monotonic() - self.started:6.0f}s] {text}", flush=True)

    def keep(self, result: Result) -> Result:
        self.results.append(result)
        print(report.progress_line(result), flush=True)
        return result

    def ingest(
        self,
        spec: ServerSpec,
        kind: str | None,
        *,
        scenario: str,
        workers: int = 1,
        connections: int = CONNECTIONS,
        repeat: int = 0,
        database: Database | None = None,
        label: str = "",
    ) -> Result:
        """One run; a fresh database of `kind` unless `database` is given (the ceiling needs none)."""

        def on(target: Database | None) -> Result:
            return self.keep(
                measure.ingest(
                    spec,
                    database=target,
                    workers=workers,
                    connections=connections,
                    budget=self.mode.budget,
                    workdir=self.workdir,
                    scenario=scenario,
                    label=label,
                    repeat=repeat,
                )
            )

        if kind is None or database is not None:
            return on(database)
        with fresh(kind, self.workdir, f"{scenario}-{spec.name}-{repeat}") as fresh_database:
            return on(fresh_database)

    def servers(self) -> list[ServerSpec]:
        return [OURS] if self.with_ours else []


def main_table(
    plan: Plan, *, workers: int = 1, scenario: str = "main", kinds: tuple[str, ...] = DATABASES
) -> None:
    plan.say(f"{scenario}: ceiling vs ours at {CONNECTIONS} connections, {workers} worker(s)")
    for repeat in range(plan.mode.repeats):
        plan.ingest(CEILING, None, scenario=scenario, workers=workers, repeat=repeat)
        for spec in plan.servers():
            for kind in kinds:
                plan.ingest(spec, kind, scenario=scenario, workers=workers, repeat=repeat)
        if repeat == 0 and workers == 1:  # a reference point, not a contender: once is enough
            for kind in kinds:
                plan.ingest(NAIVE, kind, scenario=scenario, workers=workers, repeat=repeat)


def sweep(plan: Plan) -> None:
    plan.say(f"sweep: connections {SWEEP}")
    for connections in SWEEP:
        plan.ingest(CEILING, None, scenario="sweep", connections=connections)
        for spec in plan.servers():
            for kind in DATABASES:
                plan.ingest(spec, kind, scenario="sweep", connections=connections)


def _create_schema(database: Database, workdir: Path) -> None:
    """Ours creates its own schema on start-up; starting it once is the faithful way to get it."""
    env = measure.server_env(database)
    with Server(OURS, workers=1, env=env, log_path=workdir / f"schema-{database.kind}.log") as server:
        server.wait_ready()


def flat_cost(plan: Plan, kind: str) -> None:
    plan.say(f"flat cost on {kind}: prefill {STORED_LARGE:,} and {STORED_SMALL:,} events")
    with fresh(kind, plan.workdir, "large") as large, fresh(kind, plan.workdir, "small") as small:
        ids: dict[str, list[str]] = {}
        for database, count, name in ((large, STORED_LARGE, "large"), (small, STORED_SMALL, "small")):
            _create_schema(database, plan.workdir)
            began = monotonic()
            ids[name] = prefill.prefill(database, events=count, tag=f"p{name[0]}")
            plan.extras[f"prefill_{kind}_{name}_s"] = round(monotonic() - began, 1)
            plan.say(f"  prefilled {count:,} events into {kind} in {monotonic() - began:.0f}s")
        large_label, small_label = f"{STORED_LARGE:,} stored", f"{STORED_SMALL:,} stored"
        for repeat in range(plan.mode.repeats):
            plan.ingest(OURS, kind, scenario="flat-ingest", repeat=repeat, label="empty")
            plan.ingest(OURS, kind, scenario="flat-ingest", repeat=repeat, database=large, label=large_label)
        for repeat in range(plan.mode.repeats):
            for database, name, label in ((small, "small", small_label), (large, "large", large_label)):
                plan.keep(
                    measure.history(
                        OURS,
                        database=database,
                        payment_ids=ids[name],
                        connections=CONNECTIONS,
                        budget=plan.mode.budget,
                        workdir=plan.workdir,
                        label=label,
                        repeat=repeat,
                    )
                )


def flat_costs(plan: Plan) -> None:
    for kind in DATABASES:
        flat_cost(plan, kind)


def memory(plan: Plan) -> None:
    """RSS after a million events through ours, on the database where ours ingested faster in the main
    table (SQLite when the main table was not run)."""
    rates = {
        kind: [
            r.rps for r in plan.results if r.scenario == "main" and r.server == "ours" and r.database == kind
        ]
        for kind in DATABASES
    }
    kind = max(DATABASES, key=lambda name: max(rates[name], default=0.0))
    plan.say(
        f"memory: {STORED_LARGE:,} events through ours on {kind} (capped at {plan.mode.rss_time_cap_s:.0f}s)"
    )
    plan.extras["memory"] = rss.rss_after_ingest(
        kind, events=STORED_LARGE, time_cap_s=plan.mode.rss_time_cap_s, workdir=plan.workdir, say=plan.say
    )


PARTS: dict[str, Callable[[Plan], None]] = {
    "main": main_table,
    "workers": lambda plan: main_table(plan, workers=2, scenario="workers", kinds=("postgresql",)),
    "sweep": sweep,
    "flat": flat_costs,
    "memory": memory,
}
NEEDS_OURS = ("flat", "memory")


def default_parts(mode: Mode) -> list[str]:
    return list(PARTS) if mode.full else ["main"]


def run(plan: Plan, parts: list[str]) -> None:
    for name in parts:
        if name in NEEDS_OURS and not plan.with_ours:
            plan.say(f"{name}: skipped, it measures ours only")
            continue
        PARTS[name](plan)
