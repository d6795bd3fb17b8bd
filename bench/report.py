"""Turns results into the tables people read: medians over repeats, ratios to the ceiling, row checks."""

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.measure import Result

GroupKey = tuple[str, str, str, int, int, str]


@dataclass(frozen=True, slots=True)
class Group:
    """Repeats of one configuration, summarised by their medians (the machine is shared and noisy)."""

    runs: tuple[Result, ...]

    @property
    def first(self) -> Result:
        return self.runs[0]

    def median(self, value: Callable[[Result], float]) -> float:
        return statistics.median(value(run) for run in self.runs)

    @property
    def rps(self) -> float:
        return self.median(lambda run: run.rps)

    @property
    def p50_ms(self) -> float:
        return self.median(lambda run: run.p50_ms)

    @property
    def p99_ms(self) -> float:
        return self.median(lambda run: run.p99_ms)

    @property
    def non2xx(self) -> int:
        return sum(run.non2xx for run in self.runs)

    def rows_text(self) -> str:
        if any(run.rows_added is None or run.unique_sent is None for run in self.runs):
            return "-" if self.first.server == "ceiling" else "n/a"
        added = sum(run.rows_added or 0 for run in self.runs)
        unique = sum(run.unique_sent or 0 for run in self.runs)
        return f"{added:,}/{unique:,}" + ("" if added == unique else " MISMATCH")

    def notes(self) -> str:
        notes: list[str] = []
        if len(self.runs) > 1:
            notes.append(
                f"{len(self.runs)} runs, {min(r.rps for r in self.runs):,.0f}-"
                f"{max(r.rps for r in self.runs):,.0f} req/s"
            )
        for run in self.runs:
            if run.error:
                notes.append("error: " + run.error.strip().splitlines()[0][:120])
            if run.ended_by_deadline:
                notes.append(f"hit wrk's deadline with {run.unanswered} unanswered")
            errors = {kind: count for kind, count in run.socket_errors.items() if count and kind != "status"}
            if errors:
                notes.append("socket errors " + ", ".join(f"{k} {v}" for k, v in errors.items()))
            if run.stopped_on_sigterm is False:
                notes.append("ignored SIGTERM, killed")
        codes = {code for run in self.runs for code in run.statuses if not code.startswith("2")}
        if codes:
            notes.append("statuses " + ", ".join(sorted(codes)))
        return "; ".join(dict.fromkeys(notes))


def group(results: Sequence[Result]) -> dict[GroupKey, Group]:
    grouped: dict[GroupKey, list[Result]] = {}
    for run in results:
        key = (run.scenario, run.server, run.database, run.workers, run.connections, run.label)
        grouped.setdefault(key, []).append(run)
    return {key: Group(tuple(runs)) for key, runs in grouped.items()}


def _ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}x" if base else "-"


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def versus_ceiling(results: Sequence[Result], scenarios: Sequence[str]) -> str:
    """Server x database x workers (x connections), each against the ceiling at the same workers and
    connections, measured in the same scenario (side by side, interleaved). The ceiling's own figure
    stands beside each ratio, so that a faster machine is told apart from a faster receiver, and the
    p99 is also compared round by round: a median can hide one bad round."""
    groups = {key: value for key, value in group(results).items() if key[0] in scenarios}
    ceilings = {(key[0], key[3], key[4]): value for key, value in groups.items() if key[1] == "ceiling"}
    rows = []
    for key, item in groups.items():
        ceiling = ceilings.get((key[0], key[3], key[4]))
        rows.append(
            [
                key[1],
                key[2],
                str(key[3]),
                str(key[4]),
                f"{item.rps:,.0f}",
                f"{ceiling.rps:,.0f}" if ceiling else "-",
                _ratio(item.rps, ceiling.rps if ceiling else None),
                f"{item.p50_ms:.2f}",
                f"{item.p99_ms:.2f}",
                _ratio(item.p99_ms, ceiling.p99_ms if ceiling else None),
                _worst_round_p99(item, ceiling),
                str(item.non2xx),
                item.rows_text(),
                item.notes(),
            ]
        )
    header = [
        "server",
        "database",
        "workers",
        "conns",
        "req/s",
        "ceiling req/s",
        "x ceiling req/s",
        "p50 ms",
        "p99 ms",
        "x ceiling p99",
        "worst round p99 x ceiling",
        "non-2xx",
        "rows stored/unique sent",
        "notes",
    ]
    return markdown(header, rows)


def _worst_round_p99(item: Group, ceiling: Group | None) -> str:
    """The highest of each round's p99 over the ceiling's p99 in the same round (repeat)."""
    if ceiling is None:
        return "-"
    by_round = {run.repeat: run.p99_ms for run in ceiling.runs if run.p99_ms}
    ratios = [run.p99_ms / by_round[run.repeat] for run in item.runs if run.repeat in by_round]
    return f"{max(ratios):.2f}x" if ratios else "-"


def versus_baseline(results: Sequence[Result], scenario: str, baseline_label: str) -> str:
    """Flat cost: the same server and database with more stored, against the smaller baseline."""
    groups = {key: value for key, value in group(results).items() if key[0] == scenario}
    bases = {key[2]: value for key, value in groups.items() if key[5] == baseline_label}
    rows = []
    for key, item in groups.items():
        base = bases.get(key[2])
        stored = item.first.rows_before
        rows.append(
            [
                key[1],
                key[2],
                key[5],
                f"{stored:,}" if stored is not None else "-",
                f"{item.rps:,.0f}",
                f"{item.p50_ms:.2f}",
                f"{item.p99_ms:.2f}",
                _ratio(item.rps, base.rps if base else None),
                _ratio(item.p99_ms, base.p99_ms if base else None),
                str(item.non2xx),
                item.rows_text(),
                item.notes(),
            ]
        )
    header = [
        "server",
        "database",
        "stored",
        "rows before",
        "req/s",
        "p50 ms",
        "p99 ms",
        f"x {baseline_label} req/s",
        f"x {baseline_label} p99",
        "non-2xx",
        "rows stored/unique sent",
        "notes",
    ]
    return markdown(header, rows)


def _memory_row(sample: dict[str, Any]) -> list[str]:
    rate = f"{sample['rps']:,}" if "rps" in sample else "-"
    p99 = f"{sample['p99_ms']:.1f}" if "p99_ms" in sample else "-"
    pss = f"{sample['pss_mib']:.1f}" if "pss_mib" in sample else "-"
    sent, rss, seconds = f"{sample['events_sent']:,}", f"{sample['rss_mib']:.1f}", f"{sample['seconds']:.0f}"
    return [sent, rss, pss, seconds, rate, p99]


def memory_table(memory: dict[str, Any]) -> str:
    """Memory of ours (all its processes summed) after each chunk of the long ingest."""
    header = ["events sent", "RSS MiB", "PSS MiB", "seconds", "req/s (chunk)", "p99 ms (chunk)"]
    table = markdown(header, [_memory_row(sample) for sample in memory["samples"]])
    ending = "complete" if memory.get("complete") else f"stopped by the {memory['time_cap_s']:.0f}s cap"
    summary = (
        f"ours on {memory['database']}, {memory['connections']} connections, no repeats: {ending}; "
        f"rows stored {memory.get('rows') or 0:,}, non-2xx {memory.get('non2xx') or 0}"
    )
    return f"{summary}\n\n{table}"


def progress_line(run: Result) -> str:
    stored = run.rows_added is not None and run.unique_sent is not None
    rows = f" rows stored/unique sent {run.rows_added}/{run.unique_sent}" if stored else ""
    error = f" ERROR {run.error.strip().splitlines()[0][:100]}" if run.error else ""
    parts = [run.scenario, run.server, run.database, f"w{run.workers}", f"c{run.connections}", run.label]
    return (
        f"  {' '.join(part for part in parts if part)}: {run.rps:,.0f} req/s p50 {run.p50_ms:.2f} ms "
        f"p99 {run.p99_ms:.2f} ms non-2xx {run.non2xx}{rows}{error}"
    )
