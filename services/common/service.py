"""What every long-running service process does the same way: run its tasks until a
signal or the first failure, then stop them all."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable


async def run_until_stopped(
    tasks: set[asyncio.Task],
    stop: asyncio.Event,
    log: logging.Logger,
    on_stop: Callable[[], None] | None = None,
) -> int:
    """Wait until `stop` is set or a task ends; then stop every task. 1 if one failed."""
    stopping = asyncio.create_task(stop.wait(), name="stop")
    done, _ = await asyncio.wait(tasks | {stopping}, return_when=asyncio.FIRST_COMPLETED)
    failed = [t for t in done if t is not stopping and t.exception() is not None]
    for task in failed:
        log.error("%s failed; stopping", task.get_name(), exc_info=task.exception())
    stop.set()
    if on_stop is not None:
        on_stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    stopping.cancel()
    return 1 if failed else 0


def run_with_signals(serve: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """asyncio.run(serve(stop)) with SIGINT and SIGTERM setting `stop`."""

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        return await serve(stop)

    return asyncio.run(run())
