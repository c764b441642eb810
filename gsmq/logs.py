"""structlog set-up: JSON lines when stderr is not a terminal, readable text when it is;
writes never raise; every line carries the process's fields (service, version, pid, and an
agent's hosts); librdkafka's own lines come through it too (`LibrdkafkaLog`)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, TextIO

import structlog


class SafeStream:
    """A text stream whose writes never raise: a log line that cannot be written is dropped.

    The first failed write (a closed pipe: `dpm-server 2>&1 | head -1`) points the
    stream's file descriptor at /dev/null, so later writes to it, from this process or
    from librdkafka, and the interpreter's flush at exit succeed too.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):
                self._discard()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                self._discard()

    def _discard(self) -> None:
        try:
            fd = self.stream.fileno()
        except (OSError, ValueError):
            return  # no descriptor (closed, or an in-memory stream): nothing more to do
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()  # what stayed buffered goes to /dev/null

    def isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (OSError, ValueError):
            return False


def say(line: str, stream: TextIO | None = None) -> None:
    """Write one line to stderr (or `stream`), even when it is closed: then nothing is written."""
    SafeStream(sys.stderr if stream is None else stream).write(line + "\n")


_FIELDS: dict[str, Any] = {}  # added to every line (`configure`, `add_fields`)


def add_fields(**fields: Any) -> None:
    """Put these fields on every line from now on (an agent's host id, say)."""
    _FIELDS.update(fields)


def _with_fields(logger: Any, method: str, event: Any) -> Any:
    for key, value in _FIELDS.items():
        event.setdefault(key, value)
    return event


def configure(level: str = "info", json: bool | None = None, stream: TextIO | None = None,
              fields: Mapping[str, Any] | None = None) -> None:
    """Configure structlog for a daemon or CLI, writing to `stream` (default stderr);
    `json=None` picks JSON unless the stream is a TTY; `fields` (and the pid) go on every line."""
    _FIELDS.clear()
    if fields:
        _FIELDS.update(fields, pid=os.getpid())
    out = SafeStream(sys.stderr if stream is None else stream)
    use_json = (not out.isatty()) if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _with_fields,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


class LibrdkafkaLog:
    """The `logger` of every Kafka client: librdkafka's lines (served by the client's poll)
    as structlog events `librdkafka` (facility, client, message) at their level, instead of
    raw `%3|...|FAIL|...` lines on stderr. The same facility of the same client repeating
    within `every` seconds is counted, and the next line it logs says how many it held back
    (a broker down makes librdkafka say so several times a second)."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._seen: dict[tuple[int, str, str], tuple[float, int]] = {}  # (level, facility, client) -> (logged at, held back)
        self._lock = threading.Lock()

    def log(self, level: int, fmt: str, *args: Any) -> None:
        facility, client, message = (str(a) for a in args) if len(args) == 3 else ("", "", fmt % args if args else fmt)
        key = (level, facility, client)
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.every:
                self._seen[key] = (seen[0], seen[1] + 1)
                return
            self._seen[key] = (now, 0)
        held = {"repeated": seen[1]} if seen is not None and seen[1] else {}
        structlog.get_logger("librdkafka").log(level, "librdkafka", facility=facility, client=client, message=message, **held)


LIBRDKAFKA = LibrdkafkaLog()
