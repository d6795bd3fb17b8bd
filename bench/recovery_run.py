"""One recovery run over 10,000 Stripe events from the local fake of Stripe's API into an empty
database, timed from the first request to the last commit:
`python -m bench.recovery_run [sqlite|postgresql] [seconds of latency a page]`. The fake server runs
in the same process (and on the same cores) as the run, as in the tests."""

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from config import Settings
from database import make_engine
from ingest.sinks import make_sinks
from ingest.store import EventWriter
from models import Event
from ops import migrate
from recovery.run import run
from recovery.stripe import StripeSource
from tests.conftest import scratch_postgres_database
from tests.recovery.fake_api import STRIPE_KEY, FakeProviders, stripe_event

EVENTS = 10_000
SINCE = datetime(2026, 11, 1, tzinfo=UTC)


async def measure(database_url: str, fake: FakeProviders) -> tuple[float, int]:
    migrate.upgrade_to_head(database_url)
    settings = Settings(database_url=database_url, stripe_api_key=STRIPE_KEY, stripe_api_base=fake.url)
    engine = make_engine(settings)
    writer = EventWriter(make_sinks(engine, settings), batch_max=256, queue_max=10_000, timeout=30)
    await writer.start()
    try:
        started = time.perf_counter()
        report = await run(
            source=StripeSource(settings),
            store=writer,
            engine=engine,
            since=SINCE,
            until=SINCE + timedelta(days=1),
            owner="bench",
            lease_seconds=600,
        )
        elapsed = time.perf_counter() - started
        assert report.outcome == "ok" and report.new == EVENTS, report
        with engine.connect() as connection:
            stored = connection.execute(select(func.count()).select_from(Event)).scalar_one()
    finally:
        await writer.stop()
        engine.dispose()
    return elapsed, stored


def main(kind: str, latency: float) -> None:
    with FakeProviders() as fake:
        fake.latency = latency
        start = int(SINCE.timestamp())
        fake.stripe_events.extend(stripe_event(i, created=start + i) for i in range(EVENTS))
        if kind == "sqlite":
            with tempfile.TemporaryDirectory() as directory:
                elapsed, stored = asyncio.run(measure(f"sqlite:///{directory}/bench.db", fake))
        else:
            with scratch_postgres_database("postgresql://root@127.0.0.1:5432/test") as url:
                elapsed, stored = asyncio.run(measure(url, fake))
    rate = stored / elapsed
    page_ms = latency * 1000
    print(f"{kind}, {page_ms:.0f} ms a page: {stored} events in {elapsed:.2f} s = {rate:,.0f} events/s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sqlite", float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
