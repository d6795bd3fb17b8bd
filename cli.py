"""Maintenance commands: `python -m cli <command>`, configured by the same environment as the server.

Each command is one function registered in `build_parser()`: add a subparser, point `handler` at it.
A handler imports what only its command uses (forwarding's NATS client, for one): every start of
`python -m cli` pays for what it imports, and `recover` runs beside live deliveries.
"""

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from config import Settings, get_settings
from database import make_engine
from destinations import commands as destinations_commands
from models import Payment
from ops import retention
from ops.arguments import utc_time
from payments import projection
from recovery import command as recovery_command


def rebuild_payments(_: argparse.Namespace) -> int:
    """Recompute the `payments` projection from the events table, in one transaction."""
    engine = make_engine(get_settings())
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # The server's per-statement timeout protects request latency; a rebuild of a large
                # table may take longer, and it only ever holds back writers (they retry).
                connection.execute(text("SET LOCAL statement_timeout = 0"))
            folded = projection.rebuild(connection)
            payments = connection.execute(select(func.count()).select_from(Payment)).scalar_one()
    finally:
        engine.dispose()
    print(f"rebuilt {payments} payments from {folded} events")
    return 0


def purge(args: argparse.Namespace) -> int:
    """Delete (or redact) the events received more than --days ago, in batches (ops/retention.py)."""
    engine = make_engine(get_settings())
    done = 0

    def progress(events: int) -> None:
        nonlocal done
        done = events

    try:
        result = retention.purge(
            engine,
            older_than=timedelta(days=args.days),
            redact=args.redact,
            batch_size=args.batch_size,
            on_batch=progress,
        )
    except SQLAlchemyError as exc:
        # Every finished batch is committed: running the same command again carries on from there.
        print(
            f"purge: database error ({type(exc).__name__}) after {done} events; run it again to finish",
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()
    verb = "redacted" if args.redact else "deleted"
    print(
        f"{verb} {result.events} events received before {result.cutoff:%Y-%m-%d %H:%M:%S} UTC "
        f"({result.batches} batches)"
    )
    return 0


def add_purge_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    command = commands.add_parser(
        "purge",
        help="delete (or redact the raw body of) events older than N days, in batches",
        description="Delete the events received more than --days ago (DATABASE_URL), a batch per "
        "transaction, so deliveries keep being stored meanwhile. --redact keeps each row, so a re-sent event "
        "is still a duplicate, and empties only its raw body. The payments table is left as it is.",
    )
    command.add_argument("--days", type=_at_least_one, required=True, help="keep events younger than this")
    command.add_argument("--redact", action="store_true", help="empty raw_body instead of deleting the row")
    command.add_argument(
        "--batch-size",
        type=_at_least_one,
        default=retention.BATCH_SIZE,
        help="rows per transaction (default %(default)s)",
    )
    command.set_defaults(handler=purge)


def _at_least_one(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {value!r}")
    return int(value)


def _forwarding_settings(command: str) -> Settings | None:
    settings = get_settings()
    if not settings.nats_url:
        print(f"{command}: NATS_URL is not set: forwarding is off", file=sys.stderr)
        return None
    return settings


def relay(_: argparse.Namespace) -> int:
    """Run the relay alone (FORWARD_IN_PROCESS=false on the service), until SIGTERM or Ctrl+C."""
    from forwarding import commands as forwarding_commands
    from forwarding.stream import StreamMismatch

    settings = _forwarding_settings("relay")
    if settings is None:
        return 2
    engine = make_engine(settings)
    try:
        asyncio.run(forwarding_commands.run_relay(engine, settings))
    except StreamMismatch as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    return 0


def forward_status(_: argparse.Namespace) -> int:
    """The backlog, the last published event and who publishes now."""
    from forwarding import outbox

    settings = get_settings()
    engine = make_engine(settings)
    try:
        with engine.connect() as connection:
            status = outbox.status(connection, stream=settings.nats_stream)
            holder = outbox.holder(connection, stream=settings.nats_stream)
    finally:
        engine.dispose()
    if status.cursor is None:
        print(f"stream {settings.nats_stream}: forwarding has never run on this database")
        return 0
    oldest = _when(status.oldest_unpublished)
    updated = _when(status.updated_at)
    print(f"stream:              {settings.nats_stream}")
    print(f"lag:                 {status.lag_events} events (oldest unpublished: {oldest})")
    print(f"published:           {status.events_published} events, cursor moved {updated}")
    print(f"last published row:  {status.cursor.event_row_id}")
    if engine.dialect.name == "postgresql":
        print(f"relay holder:        {holder or 'none (no relay is publishing)'}")
    return 0


def _when(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S} UTC"


def republish(args: argparse.Namespace) -> int:
    """Publish again the events received since --since (optionally one provider's)."""
    from forwarding import commands as forwarding_commands
    from forwarding.stream import StreamMismatch

    settings = _forwarding_settings("republish")
    if settings is None:
        return 2
    engine = make_engine(settings)
    try:
        outcomes = asyncio.run(
            forwarding_commands.republish(engine, settings, since=args.since, provider=args.provider)
        )
    except StreamMismatch as exc:
        print(f"republish: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(
        f"republished {outcomes.published.total()} events "
        f"({outcomes.duplicate.total()} already in the stream's duplicate window)"
    )
    if outcomes.failures:
        print(f"republish: stopped: {type(outcomes.failures[0][1]).__name__}; run it again", file=sys.stderr)
        return 1
    return 0


def add_forwarding_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    commands.add_parser(
        "relay",
        help="publish stored events to NATS (when the service runs with FORWARD_IN_PROCESS=false)",
        description="Run forwarding's relay alone. Several may run: one publishes, the others take over.",
    ).set_defaults(handler=relay)
    commands.add_parser(
        "forward-status", help="forwarding's backlog, last published event and relay holder"
    ).set_defaults(handler=forward_status)
    command = commands.add_parser(
        "republish",
        help="publish stored events to NATS again, with their own message ids",
        description="Publish again the events received since --since (UTC when no offset is given). Within "
        "the stream's duplicate window the stream takes each once; beyond it they are stored again.",
    )
    command.add_argument("--since", type=utc_time, required=True, help="e.g. 2026-12-01 or 2026-12-01T10:00")
    command.add_argument("--provider", help="only this provider's events")
    command.set_defaults(handler=republish)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    rebuild = commands.add_parser(
        "rebuild-payments",
        help="recompute every payment's state from the stored events",
        description="Recompute the payments projection from the events table (DATABASE_URL), in one "
        "transaction. Safe while the service runs: deliveries that arrive meanwhile wait for it (or are "
        "answered 503 and retried by the provider when it outlasts STORE_TIMEOUT_SECONDS).",
    )
    rebuild.set_defaults(handler=rebuild_payments)
    add_purge_command(commands)
    recovery_command.add_command(commands)
    add_forwarding_commands(commands)
    destinations_commands.add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ValidationError as exc:
        # A configuration problem: pydantic's message names the variable.
        print(f"{args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        # The type alone: a driver's message may quote connection details.
        print(f"{args.command}: database error ({type(exc).__name__}); nothing was changed", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
