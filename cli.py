"""Maintenance commands: `python -m cli <command>`, configured by the same environment as the server.

Each command is one function registered in `build_parser()`: add a subparser, point `handler` at it.
"""

import argparse
import sys
from collections.abc import Sequence
from datetime import timedelta

from pydantic import ValidationError
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from config import get_settings
from database import make_engine
from models import Payment
from ops import retention
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
