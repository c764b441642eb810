"""structlog set-up: JSON lines when stderr is not a terminal, readable text when it is; writes never raise."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import TextIO

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


def configure(level: str = "info", json: bool | None = None, stream: TextIO | None = None) -> None:
    """Configure structlog for a daemon or CLI, writing to `stream` (default stderr);
    `json=None` picks JSON unless the stream is a TTY."""
    out = SafeStream(sys.stderr if stream is None else stream)
    use_json = (not out.isatty()) if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
