"""`python -m cli recover` alone, as an operator runs it, timed from outside:
`python -m bench.recover_alone [--database postgresql|sqlite] [--rounds N] [--pace N]`.

Each round: a fresh database with the schema applied, then the command over the 10,000 events of the
fake of Stripe's API (bench/fake_stripe.py, a process of its own). Printed: the process's wall time and
CPU (its own and its children's: SQLite's writer), and, from the stored rows' received_at, how long after
the start the first recovered row was stored and how long the process took to exit after the last. The
start is what a run costs beyond storing its events: the interpreter, the imports, the connections.
Run it in two trees in turn to compare them.
"""

import argparse
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.databases import ensure_postgres, fresh
from bench.recovery_alongside import EPOCH, EVENTS, recover, start_fake
from ops import migrate
from tests.recovery.fake_api import STRIPE_KEY


@dataclass(frozen=True, slots=True)
class Run:
    wall_s: float
    cpu_s: float
    first_row_s: float  # from the process's start to the first recovered row's received_at
    exit_s: float  # from the last recovered row's received_at to the process's exit
    rows: int

    def line(self) -> str:
        return (
            f"wall {self.wall_s:.2f} s, CPU {self.cpu_s:.2f} s, first row after {self.first_row_s:.2f} s, "
            f"exit {self.exit_s:.2f} s after the last; {self.rows} rows"
        )


def one_run(kind: str, folder: Path, *, base: str, pace: float, tag: str) -> Run:
    with fresh(kind, folder, tag) as database:
        migrate.upgrade_to_head(database.url)
        env = {
            "DATABASE_URL": database.url,
            "STRIPE_API_KEY": STRIPE_KEY,
            "STRIPE_API_BASE": base,
            "LOG_LEVEL": "WARNING",
            "RECOVERY_EVENTS_PER_SECOND": str(pace),
        }
        started, ended, cpu_s, _, returncode = recover(env)
        assert returncode == 0, returncode
        first, last, rows = (
            database.scalar(f"SELECT min({EPOCH[kind]}) FROM webhook_events"),
            database.scalar(f"SELECT max({EPOCH[kind]}) FROM webhook_events"),
            database.scalar("SELECT count(*) FROM webhook_events"),
        )
    return Run(
        ended - started,
        cpu_s,
        float(first) - started,
        ended - float(last),
        int(rows),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pace", type=float, default=0, help="RECOVERY_EVENTS_PER_SECOND (0: unpaced)")
    args = parser.parse_args()
    if args.database == "postgresql":
        ensure_postgres()
    fake, base = start_fake()
    runs: list[Run] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-recover-") as folder:
            for round_ in range(args.rounds):
                run = one_run(args.database, Path(folder), base=base, pace=args.pace, tag=f"r{round_}")
                assert run.rows == EVENTS, run
                runs.append(run)
                print(f"{args.database}: {run.line()}", flush=True)
    finally:
        assert fake.stdin is not None
        fake.stdin.close()  # the fake exits when its stdin closes
        fake.wait(10)
    print(
        f"{args.database}, median of {len(runs)}: wall {statistics.median(r.wall_s for r in runs):.2f} s, "
        f"CPU {statistics.median(r.cpu_s for r in runs):.2f} s, "
        f"first row after {statistics.median(r.first_row_s for r in runs):.2f} s, "
        f"exit {statistics.median(r.exit_s for r in runs):.2f} s after the last"
    )


if __name__ == "__main__":
    main()
