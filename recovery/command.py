"""`python -m cli recover`: one recovery run per provider from the terminal, with the writer the
service uses (so events are stored exactly as deliveries are), printing what it found."""

import argparse
import asyncio
import os
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from config import Settings, get_settings
from database import make_engine
from ingest.sinks import make_sinks
from ingest.store import EventWriter
from recovery import state
from recovery.run import Report, run
from recovery.sources import NAMES, build_sources
from recovery.window import lease_seconds, window_start

# How many payments whose state changed are listed by name; the rest are counted.
LISTED_CHANGES = 20


def add_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    command = commands.add_parser(
        "recover",
        help="find and store the events whose webhooks never arrived, from the providers' APIs",
        description="Read the provider's API over a window (from --since, else from the high-water mark "
        "of earlier runs) and store what is missing, as deliveries are stored. Providers without API "
        "credentials are skipped with a line saying so.",
    )
    command.add_argument("--provider", choices=[*NAMES, "all"], default="all")
    command.add_argument("--since", type=_utc_time, help="ISO 8601, e.g. 2026-11-01T00:00:00Z")
    command.add_argument("--until", type=_utc_time, help="ISO 8601 (default: now)")
    command.add_argument("--dry-run", action="store_true", help="read and compare, store nothing")
    command.set_defaults(handler=recover_command)


def _utc_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def recover_command(args: argparse.Namespace) -> int:
    reports = asyncio.run(
        recover_providers(
            get_settings(),
            providers=list(NAMES) if args.provider == "all" else [args.provider],
            since=args.since,
            until=args.until,
            dry_run=args.dry_run,
        )
    )
    for report in reports:
        print(summary(report, dry_run=args.dry_run))
    return 0 if all(r.outcome in ("ok", "skipped") for r in reports) else 1


async def recover_providers(
    settings: Settings,
    *,
    providers: list[str],
    since: datetime | None,
    until: datetime | None,
    dry_run: bool,
    out: TextIO = sys.stderr,
) -> list[Report]:
    engine = make_engine(settings)
    writer = EventWriter(
        make_sinks(engine, settings),
        batch_max=settings.write_batch_max,
        queue_max=settings.write_queue_max,
        timeout=settings.store_timeout_seconds,
    )
    await writer.start()
    owner = f"cli:{socket.gethostname()}:{os.getpid()}"[:64]
    sources = build_sources(settings)
    reports = []
    try:
        for name in providers:
            mark = await asyncio.to_thread(state.high_water_mark, engine, provider=name)
            end = until or datetime.now(UTC)
            start = since or window_start(settings, mark=mark, now=end)
            reports.append(
                await run(
                    source=sources[name],
                    store=writer,
                    engine=engine,
                    since=start,
                    until=end,
                    owner=owner,
                    lease_seconds=lease_seconds(settings),
                    dry_run=dry_run,
                    # From at or before the mark to now leaves no gap behind it: the mark may move.
                    move_mark=mark is None or start <= mark,
                    on_page=_progress(out) if out.isatty() else None,
                )
            )
            if out.isatty():
                out.write("\n")
    finally:
        await writer.stop()
        engine.dispose()
    return reports


def _progress(out: TextIO) -> Callable[[Report], None]:
    def show(report: Report) -> None:
        out.write(f"\r{report.provider}: page {report.pages}, {report.fetched} read, {report.new} new ")
        out.flush()

    return show


def summary(report: Report, *, dry_run: bool = False) -> str:
    if report.outcome in ("skipped", "busy"):
        return report.message
    stored = (
        f"{report.would_store} to store, {report.duplicate} already stored"
        if dry_run
        else f"{report.new} new, {report.duplicate} already stored"
    )
    lines = [
        f"{report.provider}: {report.fetched} read in {report.pages} pages: {stored}, "
        f"{report.unchanged} unchanged, {report.refused} unreadable; "
        f"{len(report.changed)} payments changed state" + (" (dry run: nothing stored)" if dry_run else "")
    ]
    lines += [
        f"  {pid}: {before or '-'} -> {after or '-'}"
        for pid, before, after in report.changed[:LISTED_CHANGES]
    ]
    if len(report.changed) > LISTED_CHANGES:
        lines.append(f"  ... and {len(report.changed) - LISTED_CHANGES} more")
    if report.outcome != "ok":
        lines.append(report.message)
    return "\n".join(lines)
