"""gsmq.lifecycle: workers stop in reverse order within their timeouts, the first worker to
end stops the rest, the stop flag is set before anything is logged, and exit codes."""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import structlog
import uvloop

from gsmq import lifecycle
from gsmq.config import ConfigError
from gsmq.errors import TransportError
from gsmq.lifecycle import Lifecycle


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


async def test_workers_start_in_order_and_stop_in_reverse() -> None:
    order: list[str] = []
    stop = asyncio.Event()

    def reader(halt: threading.Event) -> None:
        halt.wait()
        order.append("reader")

    async def ticker() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            order.append("ticker")

    async def started() -> None:
        order.append("server started")

    async def drained() -> None:
        order.append("server")

    async with Lifecycle(stop) as life:
        life.close("producer", lambda: order.append("producer"), stop_timeout=5.0)
        life.thread("reader", reader, stop_timeout=5.0)
        life.task("ticker", ticker(), stop_timeout=5.0)
        await life.service("server", started, drained, stop_timeout=5.0)
        stop.set()
        assert await life.wait() == 0
        assert life.halt.is_set()  # start-up steps see the stop at once
        assert order == ["server started"]  # nothing stops before the block is left
    assert order == ["server started", "server", "ticker", "reader", "producer"]


async def test_a_worker_that_does_not_stop_in_time_does_not_hold_the_others() -> None:
    release = threading.Event()
    closed: list[str] = []
    with structlog.testing.capture_logs() as logs:
        async with Lifecycle(asyncio.Event()) as life:
            life.close("first", lambda: closed.append("first"), stop_timeout=5.0)
            life.close("stuck", lambda: release.wait(30), stop_timeout=0.05)
    release.set()
    assert closed == ["first"]
    assert [e for e in logs if e["event"] == "worker_stop_timed_out"] == [
        {"event": "worker_stop_timed_out", "worker": "stuck", "timeout_s": 0.05, "log_level": "warning"}]


async def test_the_first_worker_to_fail_ends_the_wait_with_exit_code_1() -> None:
    stopped: list[str] = []

    def crashes(halt: threading.Event) -> None:
        raise KeyError("bug")

    def waits(halt: threading.Event) -> None:
        halt.wait()
        stopped.append("waits")

    with structlog.testing.capture_logs() as logs:
        async with Lifecycle(asyncio.Event()) as life:
            life.thread("waits", waits, stop_timeout=5.0)
            life.thread("crashes", crashes, stop_timeout=5.0)
            assert await life.wait() == 1
    assert stopped == ["waits"]
    [failed] = [e for e in logs if e["event"] == "worker_failed"]
    assert failed["worker"] == "crashes" and "bug" in failed["error"]


async def test_a_stop_signal_sets_the_flag_even_when_the_log_line_cannot_be_written(monkeypatch: pytest.MonkeyPatch) -> None:
    class BrokenLog:
        def info(self, *args: object, **kwargs: object) -> None:
            raise BrokenPipeError("stderr is closed")

        warning = info

    exits: list[int] = []

    def fake_exit(code: int) -> None:
        exits.append(code)

    monkeypatch.setattr(lifecycle, "log", BrokenLog())
    monkeypatch.setattr("gsmq.lifecycle.os._exit", fake_exit)
    stop = asyncio.Event()
    with pytest.raises(BrokenPipeError):
        lifecycle.on_signal(stop, signal.SIGTERM)
    assert stop.is_set()
    with pytest.raises(BrokenPipeError):
        lifecycle.on_signal(stop, signal.SIGTERM)  # the second one exits at once, whatever the log does
    assert exits == [128 + signal.SIGTERM.value]


@dataclass(frozen=True)
class Config:
    bootstrap: str | None = "127.0.0.1:1"  # given: no embedded broker is started
    log_level: str = "info"
    log_json: bool | None = True


def test_a_bad_configuration_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    def parse(argv: list[str]) -> Config:
        raise ConfigError("--size: must be a positive integer")

    async def serve(config: Config, bootstrap: str, stop: asyncio.Event) -> int:
        raise AssertionError("not reached")

    assert lifecycle.daemon_main("tool", [], parse, serve) == 2
    assert capsys.readouterr().err == "tool: error: --size: must be a positive integer\n"


@pytest.mark.parametrize("failure", [TransportError("creating topics: Broker: Topic authorization failed"),
                                     RuntimeError("embedded broker exited at start (code 1)")])
def test_a_runtime_failure_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str], failure: Exception) -> None:
    async def serve(config: Config, bootstrap: str, stop: asyncio.Event) -> int:
        raise failure

    assert lifecycle.daemon_main("tool", [], lambda argv: Config(), serve) == 1
    err = capsys.readouterr().err
    assert err.endswith(f"tool: error: {failure}\n") and "Traceback" not in err


def test_serve_result_is_the_exit_code() -> None:
    async def serve(config: Config, bootstrap: str, stop: asyncio.Event) -> int:
        assert bootstrap == "127.0.0.1:1"
        return 0

    assert lifecycle.daemon_main("tool", [], lambda argv: Config(), serve) == 0


def test_a_daemon_serves_on_uvloops_event_loop() -> None:
    async def serve(config: Config, bootstrap: str, stop: asyncio.Event) -> int:
        return 0 if isinstance(asyncio.get_running_loop(), uvloop.Loop) else 3

    assert lifecycle.daemon_main("tool", [], lambda argv: Config(), serve) == 0


def test_run_loop_gives_the_coroutines_result_and_raises_its_error() -> None:
    async def value() -> int:
        await asyncio.sleep(0)
        return 7

    async def failing() -> None:
        raise TransportError("broker down")

    assert lifecycle.run_loop(value()) == 7
    with pytest.raises(TransportError, match="broker down"):
        lifecycle.run_loop(failing())


def test_a_long_lived_heap_collects_young_objects_less_often_and_gives_back_pythons_settings_even_on_error() -> None:
    before = gc.get_threshold()
    assert before != lifecycle.GC_THRESHOLDS
    seen: list[tuple[int, int, int]] = []

    def daemon() -> None:
        with lifecycle.long_lived_heap():
            seen.append(gc.get_threshold())
            gc.freeze()  # as the DPM does once its snapshot is replayed
            raise RuntimeError("the daemon failed")

    with pytest.raises(RuntimeError):
        daemon()
    assert seen == [lifecycle.GC_THRESHOLDS]
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_overlapping_long_lived_heaps_keep_the_thresholds_until_the_last_one_ends() -> None:
    before = gc.get_threshold()
    dpm, agent = lifecycle.long_lived_heap(), lifecycle.long_lived_heap()
    dpm.__enter__()
    agent.__enter__()
    dpm.__exit__(None, None, None)  # the first to start ends first: the agent still runs
    assert gc.get_threshold() == lifecycle.GC_THRESHOLDS
    agent.__exit__(None, None, None)
    assert gc.get_threshold() == before
