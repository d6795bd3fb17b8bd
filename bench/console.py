"""The console's server time with a million stored events: a 1,000-event timeline and the filtered index.

    .venv/bin/python bench/console.py postgresql://root@127.0.0.1:5432/console_bench
    .venv/bin/python bench/console.py sqlite:////tmp/console_bench.db

The database must be empty (or hold this script's own rows from an earlier run: it is filled once). Events
are written by SQL (generate_series / a recursive CTE), received over the last 30 days, 10 per payment,
plus one payment with 1,000. Requests go through the app in-process (TestClient), so the figures are the
server's time plus the test client's own overhead. BENCHMARKS.md has the figures.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from config import Settings
from database import normalise_url
from main import create_app
from ops import migrate

BIG = "pay_big"
SERIES = {
    "postgresql": "SELECT g FROM generate_series(1, :n) AS g",
    "sqlite": "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n) SELECT g FROM s",
}
NOW = {"postgresql": "now()", "sqlite": "strftime('%Y-%m-%d %H:%M:%f', 'now')"}


def seconds_before(kind: str, expression: str) -> str:
    if kind == "postgresql":
        return f"(now() - make_interval(secs => {expression}))"
    return f"strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || ({expression}) || ' seconds')"


def fill(url: str, *, events: int, big: int) -> None:
    migrate.upgrade_to_head(url)
    engine = create_engine(normalise_url(url))
    kind = engine.dialect.name
    with engine.begin() as connection:
        if connection.execute(text("SELECT count(*) FROM webhook_events")).scalar():
            return
        status = "CASE g % 3 WHEN 0 THEN 'authorized' WHEN 1 THEN 'captured' ELSE 'refunded' END"
        event_type = (
            "CASE g % 3 WHEN 0 THEN 'payment.authorized' WHEN 1 THEN 'payment.captured' "
            "ELSE 'refund.processed' END"
        )
        body = '\'{"id":"evt_\' || g || \'","event":"payment.captured"}\''
        blob = f"convert_to({body}, 'UTF8')" if kind == "postgresql" else f"CAST({body} AS BLOB)"
        insert = f"""
            INSERT INTO webhook_events (provider, event_id, id_derived, event_type, payment_id, status,
                provider_status, amount, currency, occurred_at, received_at, raw_body, headers)
            SELECT 'razorpay', 'evt_' || g, {"false" if kind == "postgresql" else 0}, {event_type},
                CASE WHEN g > :n - :big THEN '{BIG}' ELSE 'pay_' || (g / 10) END,
                {status}, {status}, 5000, 'INR',
                {seconds_before(kind, "(:n - g) * 2.6 + 7")}, {seconds_before(kind, "(:n - g) * 2.6")},
                {blob},
                '{{"content-type": "application/json", "x-razorpay-signature": "ab"}}'
            FROM ({SERIES[kind]}) AS series"""
        connection.execute(text(insert), {"n": events, "big": big})
        connection.execute(
            text("""
            INSERT INTO payments (provider, payment_id, status, provider_status, amount, currency,
                first_seen_at, last_event_at, event_count, status_rank, status_occurred_at, status_event_id)
            SELECT provider, payment_id, 'refunded', 'refunded', 5000, 'INR', min(received_at),
                max(occurred_at), count(*), 5, max(occurred_at), max(id)
            FROM webhook_events GROUP BY provider, payment_id""")
        )
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    engine.dispose()


def measure(client: TestClient, path: str, rounds: int) -> tuple[float, float]:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get(path, follow_redirects=False)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code in (200, 303), (path, response.status_code)
    timings.sort()
    return statistics.median(timings), timings[max(0, int(len(timings) * 0.99) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    started = time.monotonic()
    fill(args.database_url, events=args.events, big=args.big)
    print(f"filled in {time.monotonic() - started:.0f} s")
    settings = Settings(
        database_url=args.database_url, razorpay_webhook_secret=["bench_secret"], log_level="WARNING"
    )
    with TestClient(create_app(settings)) as client:
        paths = {
            f"timeline of {args.big} events": f"/console/payments/{BIG}?provider=razorpay",
            "... in arrival order": f"/console/payments/{BIG}?provider=razorpay&order=arrival",
            "index": "/console/",
            "index, provider + status": "/console/?provider=razorpay&status=captured",
            "index, event type + time range": "/console/?event_type=payment.captured"
            "&since=2020-01-01T00:00&until=2100-01-01T00:00",
            "search by payment id": "/console/?q=pay_4242",
            "event detail": "/console/events/razorpay/evt_4242",
        }
        for name, path in paths.items():
            measure(client, path, 5)  # warm-up (the chart's first count included)
            median, p99 = measure(client, path, args.rounds)
            print(f"{name:40} median {median:6.1f} ms   p99 {p99:6.1f} ms")


if __name__ == "__main__":
    main()
