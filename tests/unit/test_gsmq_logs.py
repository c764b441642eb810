"""gsmq.logs: log lines are JSON events, and a closed stderr never makes a log call raise."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator

import pytest
import structlog

from gsmq import logs


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_events_are_json_lines_at_the_level_asked() -> None:
    out = io.StringIO()
    logs.configure("info", json=True, stream=out)
    structlog.get_logger().debug("hidden")
    structlog.get_logger().info("goal_state_applied", host="h1")
    [line] = out.getvalue().splitlines()
    event = json.loads(line)
    assert (event["event"], event["host"], event["level"]) == ("goal_state_applied", "h1", "info")


def test_a_closed_pipe_drops_the_lines_and_later_writes_still_succeed() -> None:
    read, write = os.pipe()
    os.close(read)  # nobody reads any more: the next write is EPIPE
    stream = os.fdopen(write, "w")
    try:
        logs.configure("info", json=True, stream=stream)
        log = structlog.get_logger()
        log.info("stopping", signal="SIGTERM")  # must not raise BrokenPipeError
        log.warning("still_fine")
        assert os.path.samefile(f"/proc/self/fd/{write}", os.devnull)  # the descriptor now writes nowhere
        stream.write("buffered text\n")
        stream.flush()  # as the interpreter's flush at exit: succeeds
    finally:
        stream.close()


def test_a_closed_stream_drops_the_lines() -> None:
    stream = io.StringIO()
    logs.configure("info", json=True, stream=stream)
    stream.close()
    structlog.get_logger().error("nowhere_to_go")  # ValueError inside, none outside
    logs.say("tool: error: nowhere", stream)


def test_say_writes_one_line() -> None:
    out = io.StringIO()
    logs.say("dpm-server: error: bad", out)
    assert out.getvalue() == "dpm-server: error: bad\n"
