"""The faults scenario: a storm with one fault in the middle, then what callers were told
set against what the hosts hold and what the DPM keeps.

Each fault runs on a fresh DPM, simulators and topic prefix (`runner.cluster`):
- `dpm-kill`: kill -9 of the DPM halfway through the storm and a restart on the same
  topics and port; callers re-send what went unanswered; then every simulator restarts.
- `broker-pause`: the broker's processes stopped (SIGSTOP) for `pause` seconds (5 s by
  default) halfway, then continued.
- `agents-killed`: the simulator of 10 % of the hosts killed (kill -9) halfway and
  restarted `pause` seconds later, empty.
- `big-vpc-resync`: one VPC of 16,000 ports on 2 hosts; the simulator of one host
  restarted, empty, so its whole state (about 2 MB) comes back in parts.

Figures of each fault (targets: 0, 0, 0):
- `wrong_success`: (host, resource) pairs a caller was answered SUCCESS for that the host
  does not hold once the fault's last step converged (or the deadline passed);
- `hosts_differing`: hosts whose state differs from the desired state, every resource the
  callers listed for them at the revision given (all inputs are answered by then);
- `lost_acknowledged`: pairs answered SUCCESS that the DPM's snapshot no longer holds;
- `converge_s`: from the fault until every host holds its desired state;
- `unanswered_at_fault`: the storm's inputs not answered yet when the fault began (the
  fault hit the storm, not its end).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp
from gs_bench.cluster import Daemon, answers, dpm_status, host_snapshot, host_state, wait_for
from gs_bench.runner import CHANNEL_OPTIONS, Cluster, Env, cluster, push_stream
from gs_bench.scenarios import FAULTS, Storm, host_ranges
from gs_bench.topology import ports_message, tables_of
from gsmq.resources import MAP_FIELD, TYPE_NAME
from gsmq.wire import Strategy

PAUSE_S = 5.0  # how long the broker is stopped, and killed agents stay down (`run_faults`' default)
CONVERGE_DEADLINE_S = 180.0
WINDOW = 64  # inputs a caller's stream has unanswered at most
DPM_ARGS = ("--retry-after", "3", "--reply-timeout", "60")  # a fault's stragglers are retried within the scenario

Pair = tuple[str, str, str]  # (host, type name, resource id)


class Callers:
    """Callers of the DPM that keep every reply and re-send, once the DPM answers again,
    every input that went unanswered because it went away."""

    def __init__(self, c: Cluster, payloads: Sequence[bytes], streams: int) -> None:
        self.c, self.payloads, self.streams = c, payloads, streams
        self.replies: list[gsp.GoalStateOperationReply | None] = [None] * len(payloads)
        self.resent = 0

    def answered(self) -> int:
        return sum(1 for r in self.replies if r is not None)

    def run(self, deadline: float = 600.0) -> None:
        end = time.monotonic() + deadline
        while (todo := [i for i, r in enumerate(self.replies) if r is None]) and time.monotonic() < end:
            if len(todo) < len(self.payloads):
                self.resent += len(todo)
            wait_for(lambda: answers(lambda: dpm_status(self.c.dpm.status_port)), "the DPM to answer", deadline)
            lanes = [threading.Thread(target=self._stream, args=(todo[n :: self.streams],), daemon=True) for n in range(self.streams)]
            for lane in lanes:
                lane.start()
            for lane in lanes:
                lane.join()

    def _stream(self, indices: list[int]) -> None:
        """One stream with these inputs, at most `WINDOW` and an eighth of them unanswered at a
        time: when half the storm is answered, at most an eighth of it is in flight, so the
        fault finds inputs not sent yet. It ends early if the DPM goes away (those inputs
        stay unanswered)."""
        window, ended = threading.Semaphore(min(WINDOW, max(1, len(indices) // 8))), threading.Event()

        def requests() -> Iterator[bytes]:
            for i in indices:
                while not window.acquire(timeout=0.1):
                    if ended.is_set():
                        return
                yield self.payloads[i]

        try:
            with grpc.insecure_channel(self.c.address, options=CHANNEL_OPTIONS) as channel:
                for i, reply in zip(indices, push_stream(channel)(requests(), timeout=600), strict=False):
                    self.replies[i] = reply
                    window.release()
        except grpc.RpcError:
            pass  # the DPM went away: re-sent in the next round
        finally:
            ended.set()

    def run_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="bench-callers", daemon=True)
        thread.start()
        return thread


def listing(payload: bytes) -> dict[str, dict[tuple[str, str], int]]:
    """{host: {(type name, id): revision}} of what an input lists for each host."""
    goal = gs.GoalStateV2.FromString(payload)
    out: dict[str, dict[tuple[str, str], int]] = {}
    for host, refs in goal.host_resources.items():
        for ref in refs.resources:
            state = getattr(goal, MAP_FIELD[ref.type])[ref.id]
            out.setdefault(host, {})[(TYPE_NAME[ref.type], ref.id)] = state.configuration.revision_number
    return out


class Ledger:
    """What the callers asked for and what they were told, from their inputs and replies."""

    def __init__(self) -> None:
        self.desired: dict[str, dict[tuple[str, str], int]] = {}
        self.succeeded: set[Pair] = set()

    def add(self, callers: Callers) -> None:
        for payload, reply in zip(callers.payloads, callers.replies, strict=True):
            listed = listing(payload)
            for host, keys in listed.items():
                self.desired.setdefault(host, {}).update(keys)
            ok = {s.resource_id for s in reply.operation_statuses if s.operation_status == common.SUCCESS} if reply else set()
            self.succeeded.update((host, name, rid) for host, keys in listed.items() for (name, rid) in keys if rid in ok)


def held(tables: dict[str, dict[str, int]]) -> dict[tuple[str, str], int]:
    return {(name, rid): rev for name, ids in tables.items() for rid, rev in ids.items()}


def agent_view(c: Cluster, hosts: Sequence[str]) -> dict[str, dict[tuple[str, str], int]]:
    """What each host holds, from its simulator's status service."""
    return {host: held(tables_of(host_state(c.sim_for(host).status_port, host))) for host in hosts}


def differing(c: Cluster, ledger: Ledger) -> list[str]:
    view = agent_view(c, sorted(ledger.desired))
    return [host for host, want in ledger.desired.items() if view[host] != want]


def converge(c: Cluster, ledger: Ledger, since: float) -> float | None:
    """Seconds from `since` until every host holds its desired state (None: not by the deadline)."""
    try:
        wait_for(lambda: not differing(c, ledger), "every host to hold its desired state", CONVERGE_DEADLINE_S, every=0.5)
    except AssertionError:
        return None
    return time.monotonic() - since


def judge(c: Cluster, ledger: Ledger, name: str, converged: float | None, **extra: Any) -> dict[str, Any]:
    hosts = sorted(ledger.desired)
    view = agent_view(c, hosts)
    snapshot = {host: held(tables_of(host_snapshot(c.dpm.status_port, host))) for host in hosts}
    wrong = [p for p in ledger.succeeded if (p[1], p[2]) not in view.get(p[0], {})]
    lost = [p for p in ledger.succeeded if (p[1], p[2]) not in snapshot.get(p[0], {})]
    differ = [h for h in hosts if view[h] != ledger.desired[h]]
    return {"fault": name, "hosts": len(hosts), "acknowledged_pairs": len(ledger.succeeded), "wrong_success": len(wrong),
            "hosts_differing": len(differ), "lost_acknowledged": len(lost), "converge_s": converged,
            "examples": [list(p) for p in (wrong or lost)[:5]] + differ[:5], **extra}


def restart(c: Cluster, sim: Daemon, sig: int = signal.SIGTERM, down: float = 0.0) -> Daemon:
    """Stop (`sig`: SIGTERM, or SIGKILL) a simulator and, `down` seconds later, start it
    again, empty, for the same hosts."""
    first, count = c.served.pop(sim.name)
    c.sims.remove(sim)
    if sig == signal.SIGKILL:
        sim.signal(sig)
    else:
        sim.stop()
    time.sleep(down)
    return c.start_sim(count, str(ipaddress.IPv4Address(first)), f"{sim.name.removeprefix('sim-')}r")


def storm_with(c: Cluster, env: Env, storm: Storm, fault: Callable[[], dict[str, Any]]) -> tuple[Ledger, float, dict[str, Any]]:
    """The storm's subnets, then its ports with `fault()` run when half are answered; every
    input answered in the end (re-sent as needed). (ledger, when the fault began, its figures)."""
    ledger = Ledger()
    subnets = Callers(c, [m.SerializeToString() for m in storm.subnets()], env.streams)
    subnets.run()
    ledger.add(subnets)
    ports = Callers(c, storm.creates(), env.streams)
    thread = ports.run_in_background()
    wait_for(lambda: ports.answered() >= len(ports.payloads) // 2 or not thread.is_alive(), "half the storm", 600, every=0.005)
    began = time.monotonic()
    unanswered = len(ports.payloads) - ports.answered()
    figures = fault()
    figures["unanswered_at_fault"] = unanswered
    thread.join()
    figures["inputs_resent"] = ports.resent
    ledger.add(ports)
    return ledger, began, figures


def run_faults(env: Env, storm: Storm, big_vpc_ports: int, chosen: Sequence[str] = FAULTS,
               pause: float = PAUSE_S) -> list[dict[str, Any]]:
    """Each fault in turn; a row of figures for each. `pause`: seconds the broker stays stopped
    and killed agents stay down."""
    out = []
    for name in chosen:
        env.say(f"fault {name}: {storm.hosts} hosts, {storm.ports} ports" if name != "big-vpc-resync"
                else f"fault {name}: one VPC of {big_vpc_ports:,} ports on 2 hosts")
        row = RUNS[name](env, storm, big_vpc_ports, pause)
        env.say(f"  wrong SUCCESS {row['wrong_success']}, hosts differing {row['hosts_differing']}, "
                f"lost acknowledged {row['lost_acknowledged']}, converged {_s(row['converge_s'])} after the fault")
        out.append(row)
    return out


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


def _dpm_kill(env: Env, storm: Storm, _: int, __: float) -> dict[str, Any]:
    with cluster(env, Strategy.VPC_MULTICAST, host_ranges(storm.hosts, storm.first_host, env.sims), *DPM_ARGS) as c:
        def kill() -> dict[str, Any]:
            old = c.dpm
            old.signal(signal.SIGKILL)
            c.dpm = Daemon(old.name, old.args, old.log, old.status_port).start()
            wait_for(lambda: answers(lambda: dpm_status(c.dpm.status_port)), "the restarted DPM to serve", 120)
            return {}

        ledger, began, figures = storm_with(c, env, storm, kill)
        for sim in list(c.sims):
            restart(c, sim)
        return judge(c, ledger, "dpm-kill", converge(c, ledger, began), **figures)


def _broker_pause(env: Env, storm: Storm, _: int, pause_s: float) -> dict[str, Any]:
    pids = env.broker_pids
    if not pids:
        return {"fault": "broker-pause", "skipped": "the broker has no process on this machine", "wrong_success": None,
                "hosts_differing": None, "lost_acknowledged": None, "converge_s": None}
    with cluster(env, Strategy.VPC_MULTICAST, host_ranges(storm.hosts, storm.first_host, env.sims), *DPM_ARGS) as c:
        def pause() -> dict[str, Any]:
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(pause_s)
            finally:
                for pid in pids:
                    os.kill(pid, signal.SIGCONT)
            return {"paused_s": pause_s}

        ledger, began, figures = storm_with(c, env, storm, pause)
        return judge(c, ledger, "broker-pause", converge(c, ledger, began), **figures)


def _agents_killed(env: Env, storm: Storm, _: int, down_s: float) -> dict[str, Any]:
    split = storm.hosts - max(1, storm.hosts // 10)
    hosts = storm.host_list
    ranges = [*host_ranges(split, hosts[0], max(1, env.sims - 1)), (storm.hosts - split, hosts[split])]
    with cluster(env, Strategy.VPC_MULTICAST, ranges, *DPM_ARGS) as c:
        def kill() -> dict[str, Any]:
            restart(c, c.sims[-1], signal.SIGKILL, down_s)
            return {"killed_hosts": storm.hosts - split, "down_s": down_s}

        ledger, began, figures = storm_with(c, env, storm, kill)
        return judge(c, ledger, "agents-killed", converge(c, ledger, began), **figures)


def _big_vpc_resync(env: Env, storm: Storm, ports: int, _: float) -> dict[str, Any]:
    big = Storm(2, 1, ports, first_host=storm.first_host)
    a, b = big.host_list
    with cluster(env, Strategy.VPC_MULTICAST, [(1, a), (1, b)], *DPM_ARGS) as c:
        per_input = 200
        payloads = [m.SerializeToString() for m in big.subnets()]
        payloads += [ports_message([big.port(i) for i in range(k, min(k + per_input, ports))], big.host_list).SerializeToString()
                     for k in range(0, ports, per_input)]
        callers = Callers(c, payloads, 1)
        callers.run()
        ledger = Ledger()
        ledger.add(callers)
        began = time.monotonic()
        restart(c, c.sims[-1])
        converged = converge(c, ledger, began)
        return judge(c, ledger, "big-vpc-resync", converged, ports=ports, state_bytes=host_state(c.sim_for(b).status_port, b).ByteSize())


RUNS: dict[str, Callable[[Env, Storm, int, float], dict[str, Any]]] = {
    "dpm-kill": _dpm_kill, "broker-pause": _broker_pause, "agents-killed": _agents_killed, "big-vpc-resync": _big_vpc_resync}
