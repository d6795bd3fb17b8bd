"""`make bench`: ceiling, naive and ours side by side; `make bench QUICK=1` for the two-minute version.

Prints progress, then the tables; writes bench/results/<mode>-<time>.json (and latest-<mode>.json) and,
in full mode, bench/results/throughput_p99.png.
"""

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from time import monotonic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: `bench.*` and the repository's modules import from here

from bench import cores, plan, report, servers, wrk  # noqa: E402
from bench.databases import ensure_postgres  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CHART = RESULTS / "throughput_p99.png"


def tables(run: plan.Plan) -> dict[str, str]:
    out = {"main": report.versus_ceiling(run.results, ["main", "workers"])}
    if any(result.scenario == "sweep" for result in run.results):
        out["sweep"] = report.versus_ceiling(run.results, ["sweep"])
    if any(result.scenario == "flat-ingest" for result in run.results):
        out["flat_ingest"] = report.versus_baseline(run.results, "flat-ingest", "empty")
        out["flat_history"] = report.versus_baseline(
            run.results, "flat-history", f"{plan.STORED_SMALL:,} stored"
        )
    if isinstance(memory := run.extras.get("memory"), dict):
        out["memory"] = report.memory_table(memory)
    return out


def describe(run: plan.Plan, seconds: float) -> dict[str, object]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "mode": run.mode.name,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds),
        "commit": commit.stdout.strip() or None,
        "python": platform.python_version(),
        "cores": len(os.sched_getaffinity(0)),
        "ours_included": run.with_ours,
        "budget": asdict(run.mode.budget),
        "repeats": run.mode.repeats,
        "server_command": servers.command(servers.OURS, port=0, workers=1),
        "wrk_command": wrk.command(
            url="http://127.0.0.1:<port>",
            connections=plan.CONNECTIONS,
            duration_s=math.ceil(run.mode.budget.measure_s) + wrk.DRAIN_GRACE_S,
            prefix="<workdir>/requests-",
            budget_s=run.mode.budget.measure_s,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="main table only, one repeat (under two minutes)"
    )
    parser.add_argument("--without-ours", action="store_true", help="ceiling and naive only")
    parser.add_argument("--keep", action="store_true", help="keep server logs and wrk output")
    parser.add_argument("--parts", help=f"a subset of {','.join(plan.PARTS)} (default: by mode)")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="each server on a core of its own, wrk and PostgreSQL on the other (bench/cores.py)",
    )
    args = parser.parse_args()
    mode = plan.QUICK if args.quick else plan.FULL
    parts = args.parts.split(",") if args.parts else plan.default_parts(mode)
    if unknown := set(parts) - set(plan.PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    with_ours = (ROOT / "main.py").exists() and not args.without_ours
    if not with_ours:
        print("main.py is not in the repository (or --without-ours): measuring ceiling and naive only")
    ensure_postgres()
    began = monotonic()
    (RESULTS / "tmp").mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(dir=RESULTS / "tmp"))
    run = plan.Plan(mode, workdir, with_ours)
    if args.pin:
        run.extras["pinned"] = "each server on a core of its own; wrk and PostgreSQL on the other"
    try:
        with cores.server_apart() if args.pin else contextlib.nullcontext():
            plan.run(run, parts)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    seconds = monotonic() - began
    out = tables(run)
    for title, table in out.items():
        print(f"\n## {title} ({mode.name} mode{', --pin' if args.pin else ''})\n{table}")
    document = {
        "run": describe(run, seconds),
        "tables": out,
        "extras": run.extras,
        "results": [asdict(result) for result in run.results],
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"{mode.name}-{stamp}.json", f"latest-{mode.name}.json"):
        (RESULTS / name).write_text(json.dumps(document, indent=1) + "\n")
    if any(result.scenario == "sweep" for result in run.results):
        from bench import chart

        chart.draw(run.results, CHART, subtitle=f"{mode.name} mode, {stamp}")
        print(f"\nchart: {CHART.relative_to(ROOT)}")
    latest = (RESULTS / f"latest-{mode.name}.json").relative_to(ROOT)
    print(f"\n{mode.name} mode took {seconds:.0f}s; results in {latest}")


if __name__ == "__main__":
    main()
