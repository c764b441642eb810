"""gsmq.retry: delays double up to the cap and reset on success; a halt ends the retries."""

from __future__ import annotations

import pytest
import structlog

from gsmq.retry import Backoff, retry


class FakeHalt:
    """A halt whose `wait` passes no time: it records each delay and sets itself after `waits` of them."""

    def __init__(self, waits: int | None = None) -> None:
        self.delays: list[float] = []
        self.waits = waits
        self.set = False

    def is_set(self) -> bool:
        return self.set

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.delays.append(timeout)
        if self.waits is not None and len(self.delays) >= self.waits:
            self.set = True
        return self.set


class Flaky:
    """A step that fails `times` times (ConnectionError), then returns "done"."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise ConnectionError(f"attempt {self.calls}")
        return "done"


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(first=0.2, cap=1.0)
    assert [backoff.delay() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.delay() == 0.2
    assert [Backoff(first=0.0).delay() for _ in range(2)] == [0.0, 0.0]


def test_retry_waits_out_failures_and_logs_each_with_its_delay() -> None:
    halt = FakeHalt()
    with structlog.testing.capture_logs() as logs:
        got = retry(Flaky(3), halt, "broker_unreachable", backoff=Backoff(0.1, cap=0.3), bootstrap="b:1")
    assert got == "done"
    assert halt.delays == [0.1, 0.2, 0.3]
    assert [(e["event"], e["log_level"], e["retry_in_s"], e["error"], e["bootstrap"]) for e in logs] == [
        ("broker_unreachable", "warning", 0.1, "attempt 1", "b:1"),
        ("broker_unreachable", "warning", 0.2, "attempt 2", "b:1"),
        ("broker_unreachable", "warning", 0.3, "attempt 3", "b:1"),
    ]


def test_a_success_resets_a_shared_backoff() -> None:
    halt, backoff = FakeHalt(), Backoff(0.1)
    assert retry(Flaky(2), halt, "e", backoff=backoff) == "done"
    assert retry(Flaky(1), halt, "e", backoff=backoff) == "done"
    assert halt.delays == [0.1, 0.2, 0.1]


def test_a_halt_during_the_wait_gives_up_with_none() -> None:
    halt = FakeHalt(waits=2)
    step = Flaky(10)
    assert retry(step, halt, "e") is None
    assert step.calls == 2 and halt.delays == [0.2, 0.4]


def test_the_step_runs_once_even_when_already_halted() -> None:
    halt = FakeHalt()
    halt.set = True
    assert retry(lambda: "ok", halt, "e") == "ok"
    step = Flaky(1)
    assert retry(step, halt, "e") is None
    assert step.calls == 1 and halt.delays == []


def test_other_exceptions_propagate() -> None:
    def step() -> str:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        retry(step, FakeHalt(), "e", retry_on=(ConnectionError,))
