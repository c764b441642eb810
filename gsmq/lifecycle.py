"""Daemon lifecycle (after kopf's reactor): signals in one place, named workers started in
order and stopped in reverse, each within a stated timeout.

A daemon's `serve(config, bootstrap, stop)` reads top to bottom::

    async with Lifecycle(stop) as life:
        sink = ...;  life.close("producer", lambda: sink.flush(5.0), stop_timeout=6.0)
        life.thread("replies", read_replies, stop_timeout=2.0)  # read_replies(halt) until halt is set
        life.task("ticker", tick(), stop_timeout=1.0)
        await life.service("grpc", server.start, drain, stop_timeout=5.0)
        return await life.wait()                            # the stop, or the first worker to end
    # leaving the block stops the workers in reverse order: grpc, ticker, replies, producer

`run(main)` runs `main(stop)` on a fresh event loop (uvloop's, `run_loop`): the first
SIGTERM or SIGINT sets `stop` (before anything is logged, so a log line that cannot be
written never keeps a daemon running); a second one exits at once. `daemon_main` is a
console script around both: configuration, logs, the broker, exit codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, TypeVar

import structlog
import uvloop

from gsmq import logs
from gsmq.config import ConfigError
from gsmq.errors import TransportError
from gsmq.version import package_version, version_line

_T = TypeVar("_T")

log = structlog.get_logger()

# A daemon holds millions of long-lived objects (the DPM a region's snapshot and watermarks,
# a simulator its hosts' state): young collections every 100,000 allocations, not 700. With
# Python's defaults (700, 10, 10):
# - the collections of a growing heap held the DPM's event loop for seconds while an input of
#   200,000 hosts was worked in slices (`gs-bench --scenario giant-input`: GetStatus p50
#   3.8-4.1 s, 138-168 ms with 100,000);
# - objects in flight for a few milliseconds were promoted, and a simulator serving a stream
#   per host ran full collections of 60-200 ms that freed nothing, every 10-30 s.
# The cost: up to a young generation of garbage waiting, about 80 MB more RSS after the
# default storm. Full collections keep Python's cadence.
GC_THRESHOLDS = (100_000, 50, 10)


class _Heaps:
    """The `long_lived_heap` blocks running, and Python's thresholds before the first."""

    lock = threading.Lock()
    open = 0
    thresholds = gc.get_threshold()


@contextlib.contextmanager
def long_lived_heap() -> Iterator[None]:
    """`GC_THRESHOLDS` while any such block runs (a test may run a DPM and an agent in its
    process, their blocks ending in either order); when the last one ends, Python's
    thresholds as they were, nothing frozen, and a collection: Kafka clients caught in
    reference cycles keep their broker connections (and an embedded broker's graceful stop
    waiting on them) until one."""
    with _Heaps.lock:
        if not _Heaps.open:
            _Heaps.thresholds = gc.get_threshold()
            gc.set_threshold(*GC_THRESHOLDS)
        _Heaps.open += 1
    try:
        yield
    finally:
        with _Heaps.lock:
            _Heaps.open -= 1
            last = not _Heaps.open
            if last:
                gc.unfreeze()
                gc.set_threshold(*_Heaps.thresholds)
        if last:
            gc.collect()


# Failures of a running daemon (not of its configuration): one line and exit 1.
# RuntimeError covers gsmq.broker.BrokerError (an embedded broker that would not start).
RUNTIME_FAILURES: tuple[type[Exception], ...] = (TransportError, RuntimeError, OSError)


@dataclass(frozen=True)
class _Stop:
    name: str
    action: Callable[[], Awaitable[object]]
    timeout: float


class Lifecycle:
    """The workers of one daemon run: started in order, stopped in reverse (see the module's docstring)."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.halt = threading.Event()  # set as soon as `stop` is: blocking start-up steps give up
        self._stops: list[_Stop] = []
        self._relay: asyncio.Task[None] | None = None
        self._first_end: asyncio.Future[tuple[str, BaseException | None]] | None = None

    async def __aenter__(self) -> Lifecycle:
        self._first_end = asyncio.get_running_loop().create_future()
        self._relay = asyncio.create_task(self._pass_stop(), name="lifecycle-stop")
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.halt.set()
        if self._relay is not None:
            self._relay.cancel()
        while self._stops:
            step = self._stops.pop()
            try:
                await asyncio.wait_for(step.action(), step.timeout)
            except TimeoutError:
                log.warning("worker_stop_timed_out", worker=step.name, timeout_s=step.timeout)
            except Exception as error:  # the others still have to stop
                log.exception("worker_stop_failed", worker=step.name, error=str(error))

    async def _pass_stop(self) -> None:
        await self.stop.wait()
        self.halt.set()

    # ---- workers, in the order they start -------------------------------------------

    def thread(self, name: str, target: Callable[[threading.Event], object], *, stop_timeout: float) -> None:
        """Run `target(halt)` on a thread named `name`; at its turn `halt` is set and the
        thread is waited for up to `stop_timeout` seconds."""
        halt = threading.Event()
        done = self._in_thread(name, lambda: target(halt), worker=True)

        async def stop() -> None:
            halt.set()
            await asyncio.shield(done)

        self._stops.append(_Stop(name, stop, stop_timeout))

    def task(self, name: str, coro: Coroutine[Any, Any, object], *, stop_timeout: float) -> None:
        """Run `coro` as a task; at its turn it is cancelled and waited for up to `stop_timeout` seconds."""
        task = asyncio.create_task(coro, name=name)

        def ended(t: asyncio.Task[object]) -> None:
            self._ended(name, None if t.cancelled() else t.exception())

        task.add_done_callback(ended)

        async def stop() -> None:
            task.cancel()
            await asyncio.wait({task})

        self._stops.append(_Stop(name, stop, stop_timeout))

    async def service(self, name: str, start: Callable[[], Awaitable[object]], stop: Callable[[], Awaitable[object]],
                      *, stop_timeout: float) -> None:
        """Await `start()` now and `stop()` at its turn, for up to `stop_timeout` seconds (a gRPC server)."""
        await start()
        self.on_stop(name, stop, stop_timeout=stop_timeout)

    def on_stop(self, name: str, stop: Callable[[], Awaitable[object]], *, stop_timeout: float) -> None:
        """At its turn, await `stop()` for up to `stop_timeout` seconds (something already started)."""
        self._stops.append(_Stop(name, stop, stop_timeout))

    def close(self, name: str, action: Callable[[], object], *, stop_timeout: float) -> None:
        """At its turn, run the blocking `action()` (a flush, a close) for up to `stop_timeout` seconds."""

        async def stop() -> None:
            await asyncio.shield(self._in_thread(name, action, worker=False))

        self._stops.append(_Stop(name, stop, stop_timeout))

    async def wait(self) -> int:
        """Until `stop` is set or a worker ends by itself; the exit code (1: a worker failed)."""
        assert self._first_end is not None, "use Lifecycle as `async with`"
        stopped = asyncio.create_task(self.stop.wait())
        either: set[asyncio.Future[Any]] = {stopped, self._first_end}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if self.stop.is_set() or not self._first_end.done():
            return 0
        name, error = self._first_end.result()
        if error is not None:
            log.error("worker_failed", worker=name, error=str(error), exc_info=error)
            return 1
        log.warning("worker_ended", worker=name)
        return 0

    # ---- plumbing -------------------------------------------------------------------

    def _in_thread(self, name: str, action: Callable[[], object], *, worker: bool) -> asyncio.Future[None]:
        """Run `action` on a daemon thread (never joined at exit); the future resolves when it returns."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finish(error: BaseException | None) -> None:
            if not done.done():
                done.set_result(None)
            if worker:
                self._ended(name, error)

        def body() -> None:
            error: BaseException | None = None
            try:
                action()
            except BaseException as exc:  # noqa: BLE001 - handed to the event loop
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(finish, error)

        threading.Thread(target=body, name=name, daemon=True).start()
        return done

    def _ended(self, name: str, error: BaseException | None) -> None:
        if self._first_end is not None and not self._first_end.done():
            self._first_end.set_result((name, error))


def run(main: Callable[[asyncio.Event], Awaitable[int | None]]) -> int:
    """Run `main(stop)` until it returns, with the signal handlers installed; its result (None -> 0) is the exit code."""

    async def _main() -> int | None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, stop, sig)
        return await main(stop)

    code = run_loop(_main())
    return 0 if code is None else int(code)


def run_loop(main: Coroutine[Any, Any, _T]) -> _T:
    """`asyncio.run` on uvloop's event loop: the daemons and the bench's callers wait on many
    gRPC messages, and each costs its loop a few wake-ups and callbacks, which uvloop serves
    for less CPU than asyncio's own loop."""
    return uvloop.run(main)


def on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    """The first signal sets `stop`, and only then says so; a second exits at once."""
    if stop.is_set():
        try:
            log.warning("second_signal_exit_now", signal=sig.name)
        finally:
            os._exit(128 + sig.value)
    stop.set()
    log.info("stopping", signal=sig.name)


class _Config(Protocol):
    bootstrap: str | None
    log_level: str
    log_json: bool | None


def daemon_main(
    prog: str,
    argv: Sequence[str] | None,
    parse: Callable[[list[str]], Any],
    serve: Callable[[Any, str, asyncio.Event], Awaitable[int | None]],
) -> int:
    """A daemon's console script: configuration, logs, the broker (embedded unless one is
    given), then `serve` until a signal. Exit codes: 0 once stopped; 2 and one line
    `prog: error: ...` for a configuration that cannot be used; 1 and one line for a
    failure of the running daemon (RUNTIME_FAILURES)."""
    from gsmq.broker import embedded_or_external

    args = list(sys.argv[1:] if argv is None else argv)
    if "--version" in args:
        print(version_line(prog))
        return 0
    try:
        config: _Config = parse(args)
    except ConfigError as exc:
        logs.say(f"{prog}: error: {exc}")
        return 2
    logs.configure(config.log_level, config.log_json, fields={"service": prog, "version": package_version()})
    try:
        with embedded_or_external(config.bootstrap) as bootstrap:
            if bootstrap != config.bootstrap:
                log.info("embedded_broker_started", bootstrap=bootstrap)
            return run(lambda stop: serve(config, bootstrap, stop))
    except ConfigError as exc:
        logs.say(f"{prog}: error: {exc}")
        return 2
    except RUNTIME_FAILURES as exc:
        logs.say(f"{prog}: error: {exc}")
        return 1
