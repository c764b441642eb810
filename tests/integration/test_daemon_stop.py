"""Both daemons stop on SIGTERM with exit 0 whatever happens to stderr: here it is a pipe
closed by its reader, as in `dpm-server 2>&1 | head -1`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gsmq.broker import free_port
from gsmq.topics import Topics

DEADLINE = 60.0  # generous: a daemon not ready or not gone by then is a failure, not a timing


def _wait_for_event(stream: object, name: str, seen: threading.Event) -> None:
    for line in stream:  # type: ignore[attr-defined]
        try:
            event = json.loads(line)
        except ValueError:
            continue  # librdkafka's own lines
        if isinstance(event, dict) and event.get("event") == name:
            seen.set()
            return


@pytest.mark.parametrize(
    ("script", "args", "ready"),
    [("dpm-server", ["--grpc-address", "127.0.0.1:{port}", "--strategy", "unicast-only"], "dpm_ready"),
     ("aca-agent", ["--host-id", "10.7.0.9", "--channel", "unicast"], "aca_ready")],
    ids=["dpm-server", "aca-agent"],
)
def test_sigterm_stops_the_daemon_with_exit_0_when_stderr_is_a_closed_pipe(
    bootstrap: str, topics: Topics, script: str, args: list[str], ready: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DPM_", "ACA_", "KAFKA_"))}
    argv = [str(Path(sys.executable).parent / script), *(a.format(port=free_port()) for a in args),
            "--bootstrap", bootstrap, "--topic-prefix", topics.prefix, "--log-json", "true"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen = threading.Event()
        reader = threading.Thread(target=_wait_for_event, args=(proc.stderr, ready, seen), daemon=True)
        reader.start()
        assert seen.wait(DEADLINE), f"{script} never logged {ready}"
        reader.join(DEADLINE)
        assert proc.stderr is not None
        proc.stderr.close()  # every later write of the daemon to stderr fails (EPIPE)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
