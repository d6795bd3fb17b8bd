"""The history's connections on PostgreSQL (psycopg_pool, through `Reader`) are lent first come, first
served: a request that arrives as one is returned does not take it from a request already waiting."""

import asyncio

import pytest

from api.reader import Reader
from database import make_engine
from tests.conftest import make_settings


def test_a_returned_connection_goes_to_the_longest_waiter_not_to_a_newcomer(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's history runs on the loop's one connection: there is no pool")
    engine = make_engine(make_settings(database_url))

    async def run() -> list[str]:
        reader = Reader(engine, threads=1)
        assert reader.pool is not None
        await reader.pool.open(wait=True)
        served: list[str] = []
        try:
            held = await reader.pool.getconn()

            async def request(name: str) -> None:
                async with reader.pool.connection() as _connection:  # type: ignore[union-attr]
                    served.append(name)

            waiting = asyncio.create_task(request("waiting"))
            await asyncio.sleep(0.05)  # it is now waiting for the one connection
            # A new request, already scheduled when the connection comes back: it runs before the
            # waiter wakes up, as a request whose bytes arrived meanwhile does.
            newcomer = asyncio.create_task(request("newcomer"))
            await reader.pool.putconn(held)
            await asyncio.wait_for(asyncio.gather(waiting, newcomer), timeout=5)
        finally:
            await reader.close()
        return served

    try:
        assert asyncio.run(run()) == ["waiting", "newcomer"]
    finally:
        engine.dispose()
