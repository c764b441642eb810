"""Daemon lifecycle: one place that turns SIGTERM/SIGINT into a graceful stop.

`run(main)` runs `main(stop)` on a fresh event loop; the first SIGTERM or SIGINT sets
`stop`, and `main` drains, flushes, commits and returns. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger()


def run(main: Callable[[asyncio.Event], Awaitable[int | None]]) -> int:
    """Run `main(stop)` until it returns; its result (None -> 0) is the exit code."""

    async def _wrapper() -> int | None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def _on_signal(sig: signal.Signals) -> None:
            if stop.is_set():
                log.warning("second_signal_exit_now", signal=sig.name)
                os._exit(128 + sig.value)
            log.info("stopping", signal=sig.name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_signal, sig)
        return await main(stop)

    code = asyncio.run(_wrapper())
    return 0 if code is None else int(code)
