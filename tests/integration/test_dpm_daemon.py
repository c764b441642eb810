"""`dpm-server` as a process from its console script: serves, stops cleanly on SIGTERM,
waits for an unreachable broker, starts the embedded one, refuses bad configuration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from gsmq.broker import free_port
from gsmq.kafka import ENV_BOOTSTRAP
from gsmq.topics import Topics
from gsmq.v1 import status_pb2, status_pb2_grpc

DPM_SERVER = str(Path(sys.executable).parent / "dpm-server")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without DPM_* / Kafka settings that could leak in, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DPM_", "KAFKA_"))}
    return {**env, **extra}


class Process:
    """A dpm-server child whose JSON log lines are read from a file."""

    def __init__(self, tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
        self.log_path = tmp_path / f"dpm-{len(list(tmp_path.iterdir()))}.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen([DPM_SERVER, "--log-json", "true", *args], stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)

    def events(self) -> list[dict[str, object]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # librdkafka's own lines
        return out

    def event(self, name: str) -> dict[str, object] | None:
        return next((e for e in self.events() if e.get("event") == name), None)

    def wait_for(self, condition: Callable[[], object], what: str, deadline: float = 30.0) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if condition():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"dpm-server exited ({self.proc.returncode}) before {what}:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        raise AssertionError(f"gave up waiting for {what}:\n{self.log_path.read_text()}")

    def terminate(self) -> int:
        """SIGTERM; the exit code (a generous deadline, not a timing claim)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def _spawn(*args: str, **env: str) -> Process:
        started.append(Process(tmp_path, list(args), clean_env(**env)))
        return started[-1]

    yield _spawn
    for process in started:
        process.kill()


def status(address: str) -> status_pb2.DpmStatus:
    with grpc.insecure_channel(address) as channel:
        answer: status_pb2.DpmStatus = status_pb2_grpc.DpmStatusServiceStub(channel).GetStatus(status_pb2.StatusRequest(), timeout=5)
        return answer


def test_the_console_script_serves_status_and_exits_0_on_sigterm(spawn: Callable[..., Process], bootstrap: str, topics: Topics) -> None:
    address = f"127.0.0.1:{free_port()}"
    dpm = spawn("--grpc-address", address, "--topic-prefix", topics.prefix, "--strategy", "unicast-only",
                **{ENV_BOOTSTRAP: bootstrap, "DPM_REPLY_TIMEOUT": "7"})
    dpm.wait_for(lambda: dpm.event("dpm_ready"), "dpm_ready")
    ready = dpm.event("dpm_ready")
    assert ready is not None and ready["grpc_address"] == address and ready["bootstrap"] == bootstrap
    answer = status(address)
    assert answer.strategy == "unicast-only" and answer.requests_pending == 0
    assert dpm.terminate() == 0
    assert dpm.event("dpm_stopped") is not None


def test_an_unreachable_broker_is_waited_for_not_a_crash(spawn: Callable[..., Process], topics: Topics) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    dpm = spawn("--bootstrap", nowhere, "--grpc-address", f"127.0.0.1:{free_port()}", "--topic-prefix", topics.prefix)
    dpm.wait_for(lambda: dpm.event("broker_unreachable"), "a failed attempt")
    assert dpm.proc.poll() is None  # still trying
    assert dpm.terminate() == 0


def test_without_a_bootstrap_server_the_embedded_broker_is_started(spawn: Callable[..., Process], topics: Topics) -> None:
    address = f"127.0.0.1:{free_port()}"
    dpm = spawn("--grpc-address", address, "--topic-prefix", topics.prefix)
    dpm.wait_for(lambda: dpm.event("dpm_ready"), "dpm_ready", deadline=60)
    started = dpm.event("embedded_broker_started")
    assert started is not None and started["bootstrap"] == dpm.event("dpm_ready")["bootstrap"]  # type: ignore[index]
    assert status(address).strategy == "vpc-multicast"
    assert dpm.terminate() == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [(["--reply-timeout", "-1"], "--reply-timeout"), (["--grpc-address", "nonsense"], "--grpc-address"),
     (["--strategy", "bogus"], "invalid choice"), (["--config", "/no/such.toml"], "/no/such.toml"),
     (["--retry-after", "20", "--reply-timeout", "10"], "--retry-after"), (["-X", "novalue"], "key=value"),
     (["--path", "pigeon"], "invalid choice"), (["--path-upper-ports", "10", "--path-lower-ports", "20"], "--path-lower-ports"),
     (["--path-settle-seconds", "-1"], "--path-settle-seconds"), (["--link-timeout", "0"], "--link-timeout"),
     (["--in-flight-seconds", "0"], "--in-flight-seconds"), (["--producers", "0"], "--producers"),
     (["-X", "partitioner=consistent_random"], "--allow-unsafe-kafka-overrides"), (["-X", "acks=1"], "acks")],
)
def test_bad_configuration_is_one_line_and_exit_2(args: list[str], says: str) -> None:
    done = subprocess.run([DPM_SERVER, *args], capture_output=True, text=True, timeout=30, env=clean_env())
    assert done.returncode == 2
    assert says in done.stderr and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_bad_environment_and_file_values_name_where_they_came_from(tmp_path: Path) -> None:
    done = subprocess.run([DPM_SERVER], capture_output=True, text=True, timeout=30, env=clean_env(DPM_MAX_IN_FLIGHT="lots"))
    assert done.returncode == 2 and "$DPM_MAX_IN_FLIGHT" in done.stderr
    config = tmp_path / "dpm.toml"
    config.write_text('strategy = "carrier-pigeon"\n')
    done = subprocess.run([DPM_SERVER, "--config", str(config)], capture_output=True, text=True, timeout=30, env=clean_env())
    assert done.returncode == 2 and "strategy" in done.stderr and "Traceback" not in done.stderr
    config.write_text('grpc_adress = "127.0.0.1:1"\n')  # misspelt: refused, not the default address
    done = subprocess.run([DPM_SERVER, "--config", str(config)], capture_output=True, text=True, timeout=30, env=clean_env())
    assert done.returncode == 2 and "unknown key 'grpc_adress' (did you mean 'grpc_address'?)" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = subprocess.run([DPM_SERVER], capture_output=True, text=True, timeout=30, env=clean_env(DPM_REPLY_TIMOUT="5"))
    assert done.returncode == 2 and "$DPM_REPLY_TIMOUT: unknown setting" in done.stderr


def test_help_explains_every_option() -> None:
    done = subprocess.run([DPM_SERVER, "--help"], capture_output=True, text=True, timeout=30, env=clean_env())
    assert done.returncode == 0
    for option in ("--grpc-address", "--strategy", "--reply-timeout", "--retry-after", "--max-in-flight", "--max-in-flight-hosts",
                   "--in-flight-seconds", "--producers", "--unicast-partitions", "--multicast-partitions", "--reply-partitions",
                   "--topic-prefix", "--log-level", "--bootstrap", "-X"):
        assert option in done.stdout
    for env in ("DPM_GRPC_ADDRESS", "DPM_STRATEGY", "DPM_REPLY_TIMEOUT", ENV_BOOTSTRAP):
        assert env in done.stdout
