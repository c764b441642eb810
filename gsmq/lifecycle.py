"""Daemon lifecycle: one place that turns SIGTERM/SIGINT into a graceful stop.

`run(main)` runs `main(stop)` on a fresh event loop; the first SIGTERM or SIGINT sets
`stop`, and `main` drains, flushes, commits and returns. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

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


async def relay(stop: asyncio.Event, halt: threading.Event) -> None:
    """Pass the lifecycle's stop (asyncio) on to worker threads (threading)."""
    await stop.wait()
    halt.set()


class _Config(Protocol):
    bootstrap: str | None
    log_level: str
    log_json: bool | None


def daemon_main(
    prog: str,
    argv: Sequence[str] | None,
    parse: Callable[[list[str]], Any],
    serve: Callable[[Any, str, asyncio.Event], Awaitable[int | None]],
    errors: tuple[type[BaseException], ...],
) -> int:
    """A daemon's console script: configuration (one line and exit 2 when unusable),
    logs, the broker (embedded unless one is given), then `serve` until a signal."""
    from gsmq import logs
    from gsmq.broker import embedded_or_external

    try:
        config: _Config = parse(list(sys.argv[1:] if argv is None else argv))
    except errors as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log_level, config.log_json)
    try:
        with embedded_or_external(config.bootstrap) as bootstrap:
            if bootstrap != config.bootstrap:
                log.info("embedded_broker_started", bootstrap=bootstrap)
            return run(lambda stop: serve(config, bootstrap, stop))
    except errors as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
