"""Waiting for an operator's stop, for the commands that run until one (`relay`, `destinations run`)."""

import asyncio
import signal


async def until_stopped() -> None:
    """Return at SIGTERM or SIGINT (Ctrl+C), so that the caller stops what it runs cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
