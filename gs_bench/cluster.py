"""Run the real daemons as subprocesses from their console scripts (bench and end-to-end tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from alcor.schema import goalstate_pb2
from gsmq import native
from gsmq.broker import free_port
from gsmq.v1 import status_pb2, status_pb2_grpc
from gsmq.wire import Strategy

BIN = Path(sys.executable).parent
# Where the daemons import the packages from: the tree the bench runs from. Their console
# scripts would import the venv's install otherwise, and an editable install points at one
# checkout (a worktree sharing that venv would run the other checkout's daemons).
CODE = (native.ROOT, native.ROOT / "proto")


def daemon_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a daemon: ours, `CODE` first on PYTHONPATH, then `extra`."""
    path = [str(p) for p in CODE]
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), **extra}

# Started instead of the daemon, which it becomes: asks for SIGTERM when the parent dies
# (PR_SET_PDEATHSIG, kept across exec) so a killed bench or test leaves no daemon behind.
# Not a preexec_fn: fork() with gRPC threads running can hang in gRPC's at-fork handler,
# while Popen without preexec_fn uses vfork(), which runs no such handler.
ORPHAN_GUARD = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGTERM)\n"
    "os.getppid() == int(sys.argv[1]) or os._exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def wait_for(condition: Callable[[], bool], what: str, deadline: float = 60.0, every: float = 0.1) -> None:
    """Poll `condition` until true; fail naming `what` after a generous deadline (not a timing claim)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"gave up waiting for {what}")


@dataclass
class Daemon:
    """One daemon subprocess with its gRPC status port."""

    name: str
    args: list[str]
    log: Path
    status_port: int
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> Daemon:
        out = open(self.log, "ab")  # noqa: SIM115 - closed by the child's end
        self.process = subprocess.Popen(
            [sys.executable, "-c", ORPHAN_GUARD, str(os.getpid()), str(BIN / self.args[0]), *self.args[1:]],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=daemon_env(self.env),
        )
        return self

    def signal(self, sig: int) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=30)

    def stop(self) -> None:
        stop_all([self])

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def stop_all(daemons: Sequence[Daemon]) -> None:
    """SIGTERM to every daemon still running, then wait for each (SIGKILL after 15 s): they
    drain side by side."""
    running = [d.process for d in daemons if d.process is not None and d.process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    for process in running:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# The generated *_pb2_grpc stubs are untyped: each answer is annotated where it is read.
def dpm_status(port: int) -> status_pb2.DpmStatus:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        status: status_pb2.DpmStatus = status_pb2_grpc.DpmStatusServiceStub(channel).GetStatus(status_pb2.StatusRequest(), timeout=5)
        return status


def agent_status(port: int) -> status_pb2.AgentStatus:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        status: status_pb2.AgentStatus = status_pb2_grpc.AgentStatusServiceStub(channel).GetStatus(status_pb2.StatusRequest(), timeout=5)
        return status


def host_snapshot(dpm_port: int, host: str) -> goalstate_pb2.GoalStateV2:
    with grpc.insecure_channel(f"127.0.0.1:{dpm_port}") as channel:
        state: goalstate_pb2.GoalStateV2 = status_pb2_grpc.DpmStatusServiceStub(channel).GetHostSnapshot(
            status_pb2.HostId(host_id=host), timeout=5)
        return state


def host_state(agent_port: int, host: str) -> goalstate_pb2.GoalStateV2:
    with grpc.insecure_channel(f"127.0.0.1:{agent_port}") as channel:
        state: goalstate_pb2.GoalStateV2 = status_pb2_grpc.AgentStatusServiceStub(channel).GetHostState(
            status_pb2.HostId(host_id=host), timeout=5)
        return state


def answers(probe: Callable[[], object]) -> bool:
    try:
        probe()
        return True
    except grpc.RpcError:
        return False


def start_dpm(tmp: Path, bootstrap: str, prefix: str, strategy: str = Strategy.VPC_MULTICAST, *extra: str) -> Daemon:
    port = free_port()
    dpm = Daemon(
        "dpm",
        ["dpm-server", "--bootstrap", bootstrap, "--topic-prefix", prefix, "--grpc-address", f"127.0.0.1:{port}",
         "--strategy", strategy, "--log-json", "true", *extra],
        tmp / "dpm.log",
        port,
    ).start()
    wait_for(lambda: answers(lambda: dpm_status(port)) or _died(dpm), "dpm-server to serve gRPC")
    assert dpm.process is not None and dpm.process.poll() is None, dpm.logs()
    return dpm


def start_agent(tmp: Path, bootstrap: str, prefix: str, dpm_port: int, host: str, *extra: str) -> Daemon:
    port = free_port()
    agent = Daemon(
        f"aca-{host}",
        ["aca-agent", "--host-id", host, "--bootstrap", bootstrap, "--topic-prefix", prefix,
         "--dpm-address", f"127.0.0.1:{dpm_port}", "--status-port", str(port), "--log-json", "true", *extra],
        tmp / f"aca-{host}.log",
        port,
    ).start()
    wait_for(lambda: answers(lambda: agent_status(port)) or _died(agent), f"aca-agent {host} to serve status")
    assert agent.process is not None and agent.process.poll() is None, agent.logs()
    return agent


def _died(daemon: Daemon) -> bool:
    return daemon.process is not None and daemon.process.poll() is not None


def start_sim(tmp: Path, bootstrap: str, prefix: str, dpm_port: int, hosts: int, first_host: str, name: str, *extra: str) -> Daemon:
    """`aca-agent sim` standing for `hosts` hosts from `first_host`, once it serves its status."""
    return sim_ready(spawn_sim(tmp, bootstrap, prefix, dpm_port, hosts, first_host, name, *extra), hosts)


def spawn_sim(tmp: Path, bootstrap: str, prefix: str, dpm_port: int, hosts: int, first_host: str, name: str, *extra: str) -> Daemon:
    """`start_sim` without the wait: several simulators start side by side, then `sim_ready` each."""
    port = free_port()
    return Daemon(
        f"sim-{name}",
        ["aca-agent", "sim", "--hosts", str(hosts), "--first-host", first_host, "--name", name, "--bootstrap", bootstrap,
         "--topic-prefix", prefix, "--dpm-address", f"127.0.0.1:{dpm_port}", "--status-port", str(port),
         "--log-json", "true", "--log-level", "warning", *extra],
        tmp / f"sim-{name}.log",
        port,
    ).start()


def sim_ready(sim: Daemon, hosts: int) -> Daemon:
    """`sim` once it serves its status (a simulator of many hosts builds their state first: 2
    minutes plus 1 s per 1,000 hosts)."""
    wait_for(lambda: answers(lambda: agent_status(sim.status_port)) or _died(sim), f"aca-agent {sim.name} to serve status",
             deadline=120 + hosts / 1000)
    assert sim.process is not None and sim.process.poll() is None, sim.logs()
    return sim


def listening_pids(port: int) -> list[int]:
    """The processes of this machine with a TCP socket listening on `port` (Linux /proc)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def broker_pids(bootstrap: str) -> tuple[int, ...]:
    """The processes of this machine listening on the ports of `bootstrap`'s loopback addresses
    (the broker, when it runs here); none for a broker elsewhere."""
    pids: dict[int, None] = {}
    for address in bootstrap.split(","):
        host, _, port = address.strip().split("://")[-1].rpartition(":")
        if host.strip("[]") in LOOPBACK and port.isdigit():
            pids.update(dict.fromkeys(listening_pids(int(port))))
    return tuple(pids)
