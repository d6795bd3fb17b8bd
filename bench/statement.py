"""PostgreSQL's batch statement alone, one connection, no HTTP: what each part of a batch's write costs.

    .venv/bin/python bench/statement.py                         # every variant, alternated, 3 rounds
    .venv/bin/python bench/statement.py --batches 2000 --size 8 --rounds 5

Each variant runs on a fresh database migrated to head, then changed as its name says, all of them
diagnostics (none is a configuration of ours):
- `as deployed`: the schema and settings the service uses;
- `without the forwarding trigger`: migration 0006's statement trigger dropped;
- `without the signed-key index`: the unique index on (signed_key, provider) dropped;
- `synchronous_commit=off`: the commit does not wait for the WAL to reach the disk.
The statement is `ingest.sinks.PostgresSql.write_batch`, sent as the sink sends it (autocommit, one JSON
parameter), with `size` new Razorpay-like events a batch. Prints the mean wall time a batch, which
includes the commit's WAL flush, and the client's CPU a batch.
"""

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the repository's modules import from here

from bench.databases import ensure_postgres, fresh_postgres  # noqa: E402
from config import Settings  # noqa: E402
from database import make_engine  # noqa: E402
from ingest.batch import Batch  # noqa: E402
from ingest.sinks import PostgresSql, batch_parameters  # noqa: E402
from ops import migrate  # noqa: E402
from payments.events import NormalizedEvent  # noqa: E402

VARIANTS: dict[str, Callable[[psycopg.Connection[tuple[object, ...]]], object]] = {
    "as deployed": lambda connection: None,
    "without the forwarding trigger": lambda connection: connection.execute(
        "DROP TRIGGER webhook_events_forward ON webhook_events"
    ),
    "without the signed-key index": lambda connection: connection.execute(
        "DROP INDEX uq_webhook_events_provider_signed_key"
    ),
    "synchronous_commit=off": lambda connection: connection.execute("SET synchronous_commit = off"),
}


def an_event(number: int) -> NormalizedEvent:
    now = datetime.now(UTC)
    entity = f'{{"id":"pay_{number}","amount":100,"currency":"INR","status":"captured"}}'
    body = f'{{"entity":"event","event":"payment.captured","payload":{{"payment":{{"entity":{entity}}}}}}}'
    return NormalizedEvent(
        provider="razorpay",
        event_id=f"evt_{number}",
        id_derived=False,
        event_type="payment.captured",
        payment_id=f"pay_{number}",
        status="captured",
        provider_status="captured",
        amount=100,
        currency="INR",
        occurred_at=now,
        received_at=now,
        raw_body=body.encode() * 4,  # about the size of a real capture's body
        headers={"content-type": "application/json"},
        signed_key=f"{number * 2654435761 % 2**256:064x}",  # spread like a digest, unique
    )


def measure(variant: str, *, batches: int, size: int) -> tuple[float, float]:
    with fresh_postgres() as database:
        settings = Settings(database_url=database.url, razorpay_webhook_secret=["bench_statement_secret"])
        migrate.prepare_schema(settings)
        sql = PostgresSql(make_engine(settings).dialect)
        with psycopg.connect(database.url, autocommit=True) as connection:
            VARIANTS[variant](connection)
            wall, cpu = time.perf_counter(), time.process_time()
            for number in range(batches):
                events = [an_event(number * size + index) for index in range(size)]
                connection.execute(sql.write_batch, batch_parameters(Batch.plan(events))).fetchall()
            return (time.perf_counter() - wall) / batches, (time.process_time() - cpu) / batches


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=1500)
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ensure_postgres()
    for round_number in range(1, args.rounds + 1):
        for variant in VARIANTS:
            wall, cpu = measure(variant, batches=args.batches, size=args.size)
            print(
                f"round {round_number}, {variant}: {wall * 1e3:.3f} ms a batch of {args.size}, "
                f"client CPU {cpu * 1e3:.3f} ms",
                flush=True,
            )


if __name__ == "__main__":
    main()
