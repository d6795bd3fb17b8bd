"""`python -m cli destinations ...`: the destinations API's reads and actions as commands, against
DATABASE_URL and DESTINATIONS_FILE. A running service's dispatcher sees a pause, resume or replay at its
next poll (DESTINATIONS_POLL_SECONDS).

Every `python -m cli` start imports this module to list the commands, `recover` beside live deliveries
among them: so the destinations file's parser and the operations' SQL are imported by a handler when it
runs, not here (cli.py's convention)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from config import Settings, get_settings
from database import make_engine
from errors import DestinationsFileInvalid
from ops.arguments import utc_time

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from destinations.file import Destination

Handler = Callable[[argparse.Namespace, "Connection", dict[str, "Destination"]], int]


def _declared(settings: Settings) -> dict[str, Destination] | None:
    """DESTINATIONS_FILE's destinations by name; None, having said why, when there are none to use."""
    from destinations import file

    if not settings.destinations_file:
        print("destinations: DESTINATIONS_FILE is not set: no destinations", file=sys.stderr)
        return None
    try:
        return {d.name: d for d in file.load(settings.destinations_file)}
    except DestinationsFileInvalid as exc:
        print(f"destinations: {exc}", file=sys.stderr)
        return None


def _run(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        settings = get_settings()
        if (declared := _declared(settings)) is None:
            return 2
        name = getattr(args, "name", None)
        if name is not None and name not in declared:
            print(f"destinations: no destination named {name!r} in DESTINATIONS_FILE", file=sys.stderr)
            return 2
        engine = make_engine(settings)
        try:
            with engine.begin() as connection:
                return handler(args, connection, declared)
        finally:
            engine.dispose()

    return run


def _when(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S} UTC"


def list_destinations(_: argparse.Namespace, connection: Connection, declared: dict[str, Destination]) -> int:
    from destinations import operations

    for row in operations.overview(connection, list(declared.values())):
        print(
            f"{row['name']:<20} {row['state']:<8} host={row['host']} "
            f"backlog={row['backlog']} dead={row['dead']} "
            f"last_success={_when(row['last_success_at'])} last_failure={_when(row['last_failure_at'])}"
            + (f" ({row['last_error']})" if row["last_error"] else "")
        )
    return 0


def attempts(args: argparse.Namespace, connection: Connection, _: dict[str, Destination]) -> int:
    from destinations import operations

    tried = operations.attempts_of(connection, args.provider, args.event_id)
    if not tried and not operations.event_stored(connection, args.provider, args.event_id):
        print(f"destinations: no event {args.event_id!r} from provider {args.provider!r}", file=sys.stderr)
        return 1
    for row in tried:
        print(_attempt_line(row))
    return 0


def _attempt_line(row: dict[str, Any]) -> str:
    answer = row["status_code"] if row["status_code"] is not None else "-"
    error = f" {row['error']}" if row["error"] else ""
    return (
        f"{row['destination']:<20} #{row['attempt']:<3} {_when(row['attempted_at'])} {row['outcome']:<9} "
        f"status={answer}{error} {row['latency_ms']:.1f} ms"
    )


def dead(args: argparse.Namespace, connection: Connection, _: dict[str, Destination]) -> int:
    from destinations import operations

    rows = operations.dead_page(connection, args.name, after=None, limit=args.limit)
    for row in rows[: args.limit]:
        print(
            f"{row['provider']}:{row['event_id']} payment={row['payment_id'] or '-'} "
            f"attempts={row['attempts']} "
            f"dead_at={_when(row['dead_at'])} last={row['last_error'] or '-'} {row['last_status_code'] or ''}"
        )
    if len(rows) > args.limit:
        print(f"(more than {args.limit}: GET /destinations/{args.name}/dead pages through all)")
    return 0


def replay(args: argparse.Namespace, connection: Connection, declared: dict[str, Destination]) -> int:
    from destinations import operations

    wanted = operations.ReplayFilter(
        since=args.since,
        until=args.until,
        provider=args.provider,
        event_type=args.event_type,
        status=args.status,
        dead_only=args.dead_only,
    )
    outcome = operations.replay(connection, declared[args.name], wanted, now=datetime.now(UTC))
    if outcome.repeated:
        print(
            f"replay {outcome.replay_id} of this filter is still running "
            f"({outcome.queued} events): nothing queued"
        )
    else:
        print(f"replay {outcome.replay_id}: queued {outcome.queued} events for {args.name}")
    return 0


def _pause(paused: bool) -> Handler:
    def run(args: argparse.Namespace, connection: Connection, _: dict[str, Destination]) -> int:
        from destinations import operations

        operations.set_paused(connection, args.name, paused=paused, now=datetime.now(UTC))
        print(f"{args.name}: {'paused' if paused else 'resumed'}")
        return 0

    return run


def run_workers(_: argparse.Namespace) -> int:
    """Deliver to the destinations from this process (the service with DESTINATIONS_IN_PROCESS=false),
    until SIGTERM or Ctrl+C."""
    import asyncio

    from destinations.dispatcher import run_alone

    settings = get_settings()
    if (declared := _declared(settings)) is None:
        return 2
    engine = make_engine(settings)
    try:
        asyncio.run(
            run_alone(engine, list(declared.values()), poll_seconds=settings.destinations_poll_seconds)
        )
    finally:
        engine.dispose()
    return 0


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "destinations",
        help="destinations: state, attempts, dead events, replay, pause, resume",
        description="The destinations of DESTINATIONS_FILE, as the /destinations API shows and changes them.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="action")
    actions.add_parser("list", help="each destination's state and backlog").set_defaults(
        handler=_run(list_destinations)
    )
    command = actions.add_parser("attempts", help="every delivery attempt of one event")
    command.add_argument("provider")
    command.add_argument("event_id")
    command.set_defaults(handler=_run(attempts))
    command = actions.add_parser("dead", help="the events that went dead for a destination")
    command.add_argument("name")
    command.add_argument("--limit", type=int, default=100)
    command.set_defaults(handler=_run(dead))
    command = actions.add_parser("replay", help="queue matching events again for a destination")
    command.add_argument("name")
    command.add_argument("--since", type=utc_time, help="received at or after (UTC when no offset is given)")
    command.add_argument("--until", type=utc_time, help="received before")
    command.add_argument("--provider")
    command.add_argument("--event-type", help="* matches any run of characters")
    command.add_argument("--status")
    command.add_argument("--dead-only", action="store_true", help="only events that went dead")
    command.set_defaults(handler=_run(replay))
    actions.add_parser(
        "run", help="deliver from this process (the service runs with DESTINATIONS_IN_PROCESS=false)"
    ).set_defaults(handler=run_workers)
    for action, paused in (("pause", True), ("resume", False)):
        command = actions.add_parser(action, help=f"{action} deliveries to a destination")
        command.add_argument("name")
        command.set_defaults(handler=_run(_pause(paused)))
