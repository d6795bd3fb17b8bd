"""The sweep as a picture: throughput and p99 against concurrency, ceiling beside ours."""

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display here; and a file is what BENCHMARKS.md needs

import matplotlib.pyplot as plt

from bench.measure import Result
from bench.report import group

SERIES = (
    ("ceiling", "-", "ceiling (no storage)"),
    ("ours", "sqlite", "ours, SQLite"),
    ("ours", "postgresql", "ours, PostgreSQL"),
)


def draw(results: Sequence[Result], path: Path, *, subtitle: str) -> None:
    groups = group([run for run in results if run.scenario == "sweep" and not run.error])
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    ticks: set[int] = set()
    for server, database, name in SERIES:
        points = sorted(
            ((key[4], item) for key, item in groups.items() if key[1] == server and key[2] == database),
            key=lambda point: point[0],
        )
        connections = [count for count, _ in points]
        ticks.update(connections)
        throughput.plot(connections, [item.rps for _, item in points], marker="o", label=name)
        latency.plot(connections, [item.p99_ms for _, item in points], marker="o", label=name)
    for axes, title, unit in ((throughput, "Throughput", "requests/s"), (latency, "p99 latency", "ms")):
        axes.set_xscale("log", base=2)
        axes.set_xticks(sorted(ticks), labels=[str(tick) for tick in sorted(ticks)])
        axes.set_xlabel("concurrent connections (wrk -c)")
        axes.set_ylabel(unit)
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    latency.set_yscale("log")
    throughput.set_ylim(bottom=0)
    figure.suptitle(f"POST /webhooks/razorpay, 1 uvicorn worker, 10% duplicates ({subtitle})")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
