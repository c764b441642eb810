"""Retry with exponential backoff: the one loop that waits out a broker, a DPM or a failed delivery."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import structlog

log = structlog.get_logger()
T = TypeVar("T")


class Halt(Protocol):
    """What a retry waits on: `threading.Event` (set: give up)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass
class Backoff:
    """Delays of `first`, then doubled (`factor`) up to `cap`; `reset()` after a success."""

    first: float = 0.2
    cap: float = 5.0
    factor: float = 2.0
    _next: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._next = self.first

    def delay(self) -> float:
        """The delay to wait now; the following one is `factor` times longer, at most `cap`."""
        now = self._next
        self._next = min(now * self.factor, self.cap)
        return now

    def reset(self) -> None:
        self._next = self.first


def retry(
    step: Callable[[], T],
    halt: Halt,
    event: str,
    /,
    *,
    backoff: Backoff | None = None,
    retry_on: tuple[type[Exception], ...] = (Exception,),
    **fields: Any,
) -> T | None:
    """`step()`'s result, trying again after each failure until it succeeds; None once `halt` is set.

    `step` runs at least once, even when `halt` is already set. Each failure of `retry_on`
    logs the warning `event` (with `error`, `retry_in_s` and `fields`), then waits
    `backoff.delay()` or until `halt`; other exceptions propagate. A success resets
    `backoff`, so a loop that shares one Backoff across calls starts short again. A step
    whose result tells success from a halt returns something other than None.
    """
    backoff = backoff if backoff is not None else Backoff()
    while True:
        try:
            result = step()
        except retry_on as exc:
            if halt.is_set():
                return None
            delay = backoff.delay()
            log.warning(event, error=str(exc), retry_in_s=delay, **fields)
            if halt.wait(delay):
                return None
            continue
        backoff.reset()
        return result
