"""The README's quickstart, run as it is written: the lines of its code block, one by one,
in a scratch folder, on free ports, against the embedded broker it starts itself. And
`make help` lists every target, as the README says."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gs_bench.cluster import ORPHAN_GUARD
from gsmq.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv the tests run in: what `. .venv/bin/activate` puts on PATH
PORTS = ("9092", "50051", "50061")  # the quickstart's addresses, each replaced by a free port
HOST = "192.168.0.11"
DEADLINE = 60.0


def quickstart_lines() -> list[str]:
    """The commands of the README's quickstart block (continuation lines joined, comments kept)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert found is not None, "no ```sh block in the README's Quickstart"
    joined = found.group(1).replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip()]


def command(line: str) -> str:
    """`line` without its comment (the quickstart's commands hold no '#')."""
    return re.sub(r"\s+#.*$", "", line).strip()


@dataclass
class Job:
    """A line that ended with '&': a process of its own."""

    line: str
    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    def stderr(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")


class Shell:
    """Runs quickstart lines as a user's shell would, with the venv activated, in `cwd`."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DPM_", "ACA_", "GSMQ_KAFKA_LOG"))}
        self.env["PATH"] = f"{BIN}{os.pathsep}{self.env.get('PATH', '')}"
        self.env["VIRTUAL_ENV"] = str(BIN.parent)
        self.jobs: list[Job] = []

    def run(self, cmd: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["bash", "-c", cmd], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{cmd}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}\n{self.logs()}"
        return done

    def background(self, cmd: str) -> Job:
        n = len(self.jobs) + 1
        out, err = self.cwd / f"job{n}.out", self.cwd / f"job{n}.err"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:  # the line's own redirections win
            process = subprocess.Popen([sys.executable, "-c", ORPHAN_GUARD, str(os.getpid()), "/bin/bash", "-c", f"exec {cmd}"],
                                       cwd=self.cwd, env=self.env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
        self.jobs.append(Job(cmd, process, out, err))
        return self.jobs[-1]

    def logs(self) -> str:
        parts = [f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.cwd.glob("*.log"))]
        parts += [f"--- {j.line}\n{j.stdout()[-2000:]}{j.stderr()[-2000:]}" for j in self.jobs]
        return "\n".join(parts)

    def kill_all(self) -> None:
        for job in reversed(self.jobs):
            if job.process.poll() is None:
                job.process.kill()
                job.process.wait()


def wait_until(condition: Any, what: str, shell: Shell) -> None:
    end = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < end, f"gave up waiting for {what}\n{shell.logs()}"
        time.sleep(0.1)


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # the commands name it relative to the clone
    one = Shell(tmp_path)
    try:
        yield one
    finally:
        one.kill_all()


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):(?!=)", (ROOT / "Makefile").read_text(), flags=re.MULTILINE))


def test_the_readmes_quickstart_pushes_a_goal_state_that_the_agent_applies(shell: Shell) -> None:
    ports = {port: str(free_port()) for port in PORTS}
    lines = quickstart_lines()
    pushes: list[dict[str, Any]] = []
    tails: list[Job] = []
    ran: list[str] = []
    for line in lines:
        cmd = command(line)
        for old, new in ports.items():
            cmd = re.sub(rf"\b{old}\b", new, cmd)
        words = cmd.split()
        if words[0] == "make":  # the set-up: the tests run in the venv it made
            assert words[1] in makefile_targets(), line
        elif cmd == ". .venv/bin/activate":
            assert all((BIN / name).exists() for name in ("gsctl", "dpm-server", "aca-agent", "python")), BIN
        elif words[0] == "grpcurl":
            if shutil.which("grpcurl") is None:
                continue  # not installed here; the README says where it comes from
            out = shell.run(cmd).stdout
            assert ("SERVING" in out) if "Health/Check" in cmd else ("alcor.schema.GoalStateProvisioner" in out), out
        elif cmd == "kill $(jobs -p)":
            for tail in tails:  # the second push was answered, so its record is there: the tail prints it
                wait_until(lambda tail=tail: '"revision_number": 2' in tail.stdout(), "the tail to print revision 2", shell)
            for job in reversed(shell.jobs):  # as `kill` does: SIGTERM to each; every one stops cleanly
                job.process.send_signal(signal.SIGTERM)
                assert job.process.wait(timeout=30) == 0, f"{job.line}\n{shell.logs()}"
        elif cmd.endswith("&"):
            job = shell.background(cmd[:-1].strip())
            if words[:2] == ["gsctl", "tail"]:  # as a user does, wait for its note: it reads from the end now
                wait_until(lambda job=job: "gsctl: following" in job.stderr(), "gsctl tail to say where it reads", shell)
                tails.append(job)
        else:
            out = shell.run(cmd).stdout
            if "examples/push_goal_state.py" in cmd:
                pushes.append(json.loads(out))
            elif words[:2] == ["gsctl", "status"]:
                state = json.loads(out)
                assert state["status"]["messages_applied"] >= "1" and set(state["host_states"]) == {HOST}, state
                assert set(state["host_states"][HOST]["port_states"]) == {f"port-{HOST}"}, state
        ran.append(words[0])
    # what the quickstart promises
    assert ran.count("python") == 2 and len(pushes) == 2 and len(tails) == 1, ran
    for reply in pushes:
        statuses = {s["resource_id"]: s["operation_status"] for s in reply["operation_statuses"]}
        assert statuses == {"subnet-1": "SUCCESS", f"port-{HOST}": "SUCCESS"}, reply
    broker = shell.jobs[0]
    assert broker.stdout().splitlines()[0] == f"127.0.0.1:{ports['9092']}"
    printed = [json.loads(x) for x in tails[0].stdout().splitlines()]
    assert printed and {r["key"] for r in printed} == {HOST}, printed  # --key: the host's records only
    revisions = [r["message"]["port_states"][f"port-{HOST}"]["configuration"]["revision_number"]
                 for r in printed if "port_states" in r["message"] and "gs-full" not in r["headers"]]
    assert revisions == [2], printed  # --from end: the second push's record, not the first's (a resync may come too)
    assert (shell.cwd / "dpm.log").stat().st_size > 0 and (shell.cwd / "agent.log").stat().st_size > 0


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_lists_every_target() -> None:
    done = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listed = set(re.findall(r"^make ([a-z][a-z0-9-]*) ", done.stdout, flags=re.MULTILINE))
    assert makefile_targets() - {"help"} <= listed, makefile_targets() - listed
