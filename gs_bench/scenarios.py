"""The scenarios and their goal-state generators.

A `Storm` lays out H simulated hosts in V VPCs and P ports over them and encodes each
port create exactly as `gs_bench.topology.port_message` does (port + DHCP for its host, a
neighbor for every other host of the VPC), but from byte templates: a port of a
1,000-host VPC lists 999 hosts, and building those with protobuf calls costs more than
the DPM's work on them. `Suite` holds every size; `SUITES` the named ones.

Each `run_*` starts its own DPM and simulator processes on a fresh topic prefix
(`gs_bench.runner.cluster`), drives the DPM over gRPC like a caller, and returns its figures."""

from __future__ import annotations

import ipaddress
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from confluent_kafka.admin import AdminClient

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from dpm_server.paths import GRPC, MQ
from gs_bench.cluster import agent_status, host_snapshot, host_state, wait_for
from gs_bench.measure import (
    Push,
    agent_delta,
    bytes_between,
    cdf_sample,
    cpu_combined,
    cpu_seconds,
    cpu_used,
    delta,
    end_offsets,
    jit_cores,
    jit_seconds,
    partition_bytes,
    percentiles,
    phase_figures,
    readers,
    region_fetch_bytes,
)
from gs_bench.report import cpu_text
from gs_bench.runner import Cluster, Env, cluster, push
from gs_bench.topology import Port, port_message, subnet_message, tables_of
from gsmq import wire
from gsmq.kafka import KafkaSettings
from gsmq.kafka_admin import partition_count
from gsmq.pbwire import field, varint
from gsmq.wire import Strategy

STRATEGIES = wire.STRATEGIES  # the order the strategies scenario runs them in
FAULTS = ("dpm-kill", "broker-pause", "agents-killed", "big-vpc-resync")  # the faults scenario's (`gs_bench.faults`)
SCENARIOS = ("storm", "churn", "fast-path", "raw", "restart", "strategies", "channels", "faults", "giant-input", "hosts", "vpc-storm",
             "memory", "footprint")


# --------------------------------------------------------------------------- generators


class Listing:
    """`host_resources` entries naming one resource for many hosts, as bytes:
    GoalStateV2.host_resources (field 2) = map entry {key 1: host, value 2: HostResources
    {resources 1: ResourceIdType {type 1, id 2}}}. Per-host prefixes are cached by the
    length of the value, so one listing is a single `bytes.join`."""

    def __init__(self, hosts: list[str]) -> None:
        self.hosts = hosts
        self.index = {host: i for i, host in enumerate(hosts)}
        self._keys = [field(1, host.encode()) for host in hosts]
        self._prefixes: dict[int, list[bytes]] = {}

    def encode(self, rtype: int, rid: str, skip: str | None = None, first: int | None = None) -> bytes:
        """The listing for every host (but `skip`), or for the first `first` hosts only."""
        ref = b"\x08" + varint(rtype) + field(2, rid.encode())
        value = field(2, field(1, ref))
        prefixes = self._prefixes.get(len(value))
        if prefixes is None:
            prefixes = self._prefixes[len(value)] = [b"\x12" + varint(len(k) + len(value)) + k for k in self._keys]
        if first is not None:
            prefixes = prefixes[:first]
        if skip is not None and skip in self.index:
            i = self.index[skip]
            parts = [p for p in (prefixes[:i], prefixes[i + 1 :]) if p]
            return b"".join(value.join(p) + value for p in parts)
        return value.join(prefixes) + value if prefixes else b""


def host_ids(count: int, first: str = "10.1.0.1") -> list[str]:
    """`count` consecutive IPv4 host ids from `first` (as `aca-agent sim --first-host` names them)."""
    base = ipaddress.IPv4Address(first)
    return [str(base + i) for i in range(count)]


def host_ranges(count: int, first: str, parts: int) -> list[tuple[int, str]]:
    """`count` consecutive hosts from `first` split into at most `parts` contiguous ranges of
    near-equal size, as (hosts, first host) for `aca-agent sim --hosts --first-host`."""
    parts = max(1, min(parts, count))
    base = ipaddress.IPv4Address(first)
    out: list[tuple[int, str]] = []
    start = 0
    for i in range(parts):
        size = count // parts + (1 if i < count % parts else 0)
        out.append((size, str(base + start)))
        start += size
    return out


@dataclass(frozen=True)
class Storm:
    """A port storm: `hosts` simulated hosts dealt round-robin into `vpcs` VPCs, `ports`
    ports dealt round-robin over the VPCs and over each VPC's hosts, so the first round
    gives every host one port (bring-up) and the rest follow evenly."""

    hosts: int
    vpcs: int
    ports: int
    first_host: str = "10.1.0.1"
    first_port: int = 0
    # Region shape: a port's neighbor is listed only for the hosts of its VPC that have a port
    # before it in storm order (Alcor's port manager finds neighbors among a VPC's existing
    # ports); a host's first port brings it the VPC's states from the DPM's snapshot, so this
    # shape is for vpc-multicast. Otherwise every other host of the VPC is listed.
    region: bool = False
    vpc_prefix: str = "vpc"  # VPC ids are <prefix>-0, <prefix>-1, ...: storms on one DPM keep their VPCs apart

    @cached_property
    def host_list(self) -> list[str]:
        return host_ids(self.hosts, self.first_host)

    @cached_property
    def layout(self) -> dict[str, list[str]]:
        """{vpc: its hosts}."""
        vpcs = max(1, min(self.vpcs, self.hosts))
        return {f"{self.vpc_prefix}-{v}": self.host_list[v::vpcs] for v in range(vpcs)}

    @cached_property
    def _vpc_names(self) -> list[str]:
        return list(self.layout)

    @cached_property
    def _listings(self) -> dict[str, Listing]:
        return {vpc: Listing(hosts) for vpc, hosts in self.layout.items()}

    def port(self, i: int) -> Port:
        vpc = self._vpc_names[i % len(self._vpc_names)]
        hosts = self.layout[vpc]
        n = self.first_port + i
        host = hosts[(i // len(self._vpc_names)) % len(hosts)]
        return Port(f"port-{n}", vpc, host, f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}",
                    f"fa:16:3e:{(n >> 16) & 255:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}")

    def follows(self) -> dict[str, list[str]]:
        """{host: the VPCs it follows}: the VPC of each of its ports (a host follows a VPC from
        its first port there). Port i goes to VPC i % V and, within it, to host (i // V) % len."""
        names = self._vpc_names
        out: dict[str, list[str]] = {}
        for v, vpc in enumerate(names):
            ports_here = (self.ports - v + len(names) - 1) // len(names) if self.ports > v else 0
            for host in self.layout[vpc][:ports_here]:
                out.setdefault(host, []).append(vpc)
        return out

    def subnets(self) -> list[gs.GoalStateV2]:
        return [subnet_message(vpc, hosts) for vpc, hosts in self.layout.items() if hosts]

    def _earlier(self, i: int) -> int | None:
        """Region shape, bring-up round: how many hosts of port i's VPC have a port before it
        (they come first in the VPC's host list); None: every other host is listed."""
        round_ = i // len(self._vpc_names)
        return round_ if self.region and round_ < len(self.layout[self.port(i).vpc]) else None

    def encode(self, i: int, revision: int = 1, op: common.OperationType = common.CREATE) -> bytes:
        """Port i's message, byte for byte what `message(i, revision, op)` serializes to."""
        port = self.port(i)
        head = port_message(port, [port.host], revision, op).SerializeToString()
        return head + self._listings[port.vpc].encode(common.NEIGHBOR, f"nb-{port.id}", skip=port.host, first=self._earlier(i))

    def message(self, i: int, revision: int = 1, op: common.OperationType = common.CREATE) -> gs.GoalStateV2:
        port = self.port(i)
        earlier = self._earlier(i)
        hosts = self.layout[port.vpc] if earlier is None else [*self.layout[port.vpc][:earlier], port.host]
        return port_message(port, hosts, revision, op)

    def creates(self) -> list[bytes]:
        return [self.encode(i) for i in range(self.ports)]

    def batch(self, indices: range) -> gs.GoalStateV2:
        """Ports `indices` created by one input: every port's states, and each host listing
        what all of them list for it (as `message(i)` would, one after the other)."""
        goal = gs.GoalStateV2(format_version=1)
        for i in indices:
            one = self.message(i)
            for host, listed in one.host_resources.items():
                goal.host_resources[host].resources.extend(listed.resources)
            one.ClearField("host_resources")
            goal.MergeFrom(one)
        return goal

    def updates(self, count: int, start: int = 0, revision: int = 2) -> tuple[list[bytes], list[int]]:
        """`count` port updates, cycling over the ports from `start` with revisions rising
        per cycle (churn); returns the payloads and each one's port index (its stream lane)."""
        payloads, lanes = [], []
        for k in range(start, start + count):
            i = k % self.ports
            payloads.append(self.encode(i, revision + k // self.ports, common.UPDATE))
            lanes.append(i)
        return payloads, lanes

    def resources(self, i: int) -> int:
        """Host applications port i asks for: port + DHCP on its host, a neighbor on each other host listed."""
        earlier = self._earlier(i)
        return 2 + (len(self.layout[self.port(i).vpc]) - 1 if earlier is None else earlier)

    def total_resources(self) -> int:
        return sum(self.resources(i) for i in range(self.ports))

    def view_resources(self) -> int:
        """Resources in the hosts' views once the storm is applied: a port and its DHCP entry
        on its host; per host and VPC where it has ports, the subnet and the neighbors of
        the ports of the VPC's other hosts."""
        in_vpc: dict[str, int] = {}
        own: dict[tuple[str, str], int] = {}
        for i in range(self.ports):
            port = self.port(i)
            in_vpc[port.vpc] = in_vpc.get(port.vpc, 0) + 1
            own[(port.vpc, port.host)] = own.get((port.vpc, port.host), 0) + 1
        return 2 * self.ports + sum(1 + in_vpc[vpc] - mine for (vpc, _), mine in own.items())

    def describe(self) -> dict[str, int]:
        return {"hosts": self.hosts, "vpcs": len(self.layout), "ports": self.ports,
                "hosts_per_vpc": max(len(h) for h in self.layout.values())}


def resources_in(goal: gs.GoalStateV2) -> int:
    """How many resource applications a message asks for (one per host listing)."""
    return sum(len(r.resources) for r in goal.host_resources.values())


# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Suite:
    """Every size the scenarios use; `gs-bench` options override single fields.

    The default suite takes about 5 minutes on 2 cores: a simulator does the work of every
    host it stands for (a port of a 100-host VPC is 101 applications and 100 replies), so
    its single core bounds what the path can show. `make bench-scale` takes the big sizes."""

    scenarios: tuple[str, ...]
    hosts: int = 1000  # 1 + 2: the main storm, then churn on it (VPCs of hosts / vpcs hosts)
    vpcs: int = 10
    ports: int = 3000
    churn: tuple[float, ...] = (0.1, 0.5, 0.9)  # fractions of the storm's measured goal states/s
    churn_seconds: float = 8.0
    raw_runs: int = 3  # each raw Kafka baseline is run this many times and its best run kept (`baselines.best_run`)
    # The main storm's Kafka path and its gRPC fast path are run this many times in turn, each on new daemons
    # (the first pair with churn); their ratio is the median of the pairs' (one storm swings 1.6x between runs here).
    pair_runs: int = 3
    restart: tuple[int, int, int] = (1000, 10, 2000)  # 3: hosts, VPCs, ports; kill -9 of `restart_fraction`
    restart_fraction: float = 0.1
    strategies: tuple[int, int, int] = (200, 2, 600)  # 4: VPCs of 100 hosts; topic-per-host makes a topic per host
    faults: tuple[int, int, int] = (200, 2, 2000)  # hosts, VPCs, ports of the storm each fault hits (`gs_bench.faults`) ...
    faults_vpc_ports: int = 16000  # ... and the ports of the VPC on 2 hosts whose host is resynced
    fault_kinds: tuple[str, ...] = FAULTS
    faults_pause_s: float = 5.0  # seconds the broker-pause fault stops the broker and agents-killed keeps them down (past --retry-after)
    giant_input: int = 200000  # hosts one input lists while a small caller goes on (`gs_bench.giant`) ...
    giant_window_s: float = 20.0  # ... for this long
    sweep: tuple[int, ...] = (100, 300)  # 5: convergence (and RSS) against hosts, with the main storm's point ...
    sweep_ports_per_host: int = 3
    sweep_hosts_per_vpc: int = 100  # ... in VPCs of this many hosts
    vpc_storms: tuple[tuple[int, int], ...] = ((1000, 300),)  # one VPC: (hosts, ports); 10,000 ports: bench-scale
    memory: tuple[int, ...] = (1000, 10000)  # idle simulators of this many hosts
    footprint: tuple[int, ...] = (1000,)  # DPM and simulator state after a sweep-shaped storm, in memory
    # The channels scenario (`gs_bench.channels`): per size (hosts per VPC), `channels_hosts` hosts in VPCs of that size,
    # `channels_ports_per_host` ports each, pushed with --path grpc, mq and auto; then a mixed region of (small VPCs,
    # hosts each, large VPCs, hosts each). VPCs of 1,000 and 10,000 hosts cost O(hosts^2) in bring-up: bench-scale.
    channels: tuple[int, ...] = (10, 100)
    channels_hosts: int = 500
    channels_ports_per_host: int = 1
    channels_mixed: tuple[int, int, int, int] = (40, 10, 1, 200)  # a large VPC that gRPC's per-host copies make costly
    streams: int = 4  # concurrent caller streams
    warm_up_rounds: int = 4  # at most this many warm-up rounds before the scenarios that use the broker (`warm_up`); 0: none


SUITES: dict[str, Suite] = {
    "default": Suite(scenarios=tuple(s for s in SCENARIOS if s != "giant-input")),  # giant-input: in tiny and scale
    "tiny": Suite(scenarios=SCENARIOS, hosts=20, vpcs=2, ports=40, churn=(0.5,), churn_seconds=1.5, raw_runs=1, pair_runs=1,
                  warm_up_rounds=2, restart=(20, 2, 60), strategies=(10, 1, 20), faults=(20, 2, 400), faults_vpc_ports=2000,
                  faults_pause_s=3.5, giant_input=2000, giant_window_s=2.0,
                  sweep=(10,), sweep_ports_per_host=2, sweep_hosts_per_vpc=10, vpc_storms=((10, 30),), memory=(100,), footprint=(100,),
                  channels=(2, 10), channels_hosts=10, channels_mixed=(4, 2, 1, 4), streams=2),
    # issue 11: a 100,000-port VPC on 1,000 hosts; 100 .. 1,000,000 hosts with a port each, in VPCs of 100
    "scale": Suite(scenarios=("hosts", "vpc-storm", "giant-input", "channels", "memory", "footprint"),
                   sweep=(100, 1000, 10000, 100000, 1000000), sweep_ports_per_host=1, vpc_storms=((1000, 10000), (1000, 100000)),
                   memory=(1000, 10000, 100000, 1000000), footprint=(10000, 100000), channels=(10, 100, 1000, 10000),
                   channels_hosts=10000, channels_mixed=(20, 10, 2, 1000)),
}


# --------------------------------------------------------------------------- scenarios


def pushed(c: Cluster, storm: Storm, payloads: list[bytes], lanes: list[int] | None = None, rate: float | None = None,
           resources: int | None = None) -> dict[str, Any]:
    """Push `payloads` to the DPM and return the phase's figures (the DPM's and simulators' counters
    are read before and after, so a phase counts only its own traffic). On a DPM whose path
    is not mq, the goal-state records the phase put on Kafka are read back from the broker
    (`kafka_messages`, `kafka_bytes`); on mq every message the DPM published went there."""
    replies = c.replies()
    kafka = KafkaSettings.from_env(c.env.bootstrap)
    goal_topics = [c.topics.unicast, c.topics.multicast]
    ends = end_offsets(kafka, goal_topics) if c.path != MQ else None
    dpm_before, agents_before, acks_before = c.dpm_status(), c.agent_statuses(), (replies.acks, replies.ack_bytes)
    pids = c.cpu_pids()
    cpu_before, began = cpu_seconds(pids), time.monotonic()
    result = push(c.address, payloads, c.env.streams, rate, lanes=lanes)
    cpu = cpu_used(cpu_before, cpu_seconds(pids), time.monotonic() - began)  # the push only: settling is the bench's
    replies.settle()
    window = replies.window(result.first_sent_ns, result.last_reply_ns + 1)
    figures = phase_figures(result, window, resources if resources is not None else storm.total_resources(),
                            delta(c.dpm_status(), dpm_before), agent_delta(c.agent_statuses(), agents_before))
    figures["path"], figures["cpu"] = c.path, cpu
    if ends is None:
        figures["kafka_messages"], figures["kafka_bytes"] = figures["messages_published"], figures["bytes_published"]
    else:
        after = end_offsets(kafka, goal_topics)
        figures["kafka_messages"] = sum(after[tp] - ends.get(tp, 0) for tp in after)
        figures["kafka_bytes"] = bytes_between(kafka, ends, after)
    acks, ack_bytes = replies.acks - acks_before[0], replies.ack_bytes - acks_before[1]
    figures.update(broker_bytes(figures["kafka_bytes"], figures["bytes_consumed"], acks, ack_bytes))
    missed = figures["replies_received"] - acks  # on mq every ack the DPM read is on the reply topic
    if c.path == MQ and missed > max(10, figures["replies_received"] // 100):
        # latency and convergence are from the acks read: convergence is bounded by the last reply instead
        figures["acks_missed"] = missed
        figures["convergence_s"] = max(figures["convergence_s"], figures["duration_s"])
        c.env.say(f"  the bench read {acks:,} of the {figures['replies_received']:,} acks the DPM read: latency is from "
                  f"those; convergence is given as first send -> last reply ({figures['convergence_s']:.2f} s)")
    return figures


def broker_bytes(published: int, consumed: int, acks: int, ack_bytes: int) -> dict[str, int]:
    """Payload bytes through the broker (values only, as the daemons count them):
    in = goal states (`published`: the DPM's `bytes_published` on the mq path, else the
    goal-state records read back from the broker; measured) + acks (the reply records'
    bytes, measured by the bench reading the reply topic); out = what the simulators
    fetched (their `bytes_consumed`, measured) + what the DPM's ack reader fetched (derived:
    the reply topic's bytes, read once, since no DPM counter gives it)."""
    return {"acks_received": acks, "ack_bytes": ack_bytes, "broker_bytes_in": published + ack_bytes,
            "broker_bytes_out": consumed + ack_bytes}


def _memory(c: Cluster, storm: Storm, dpm_idle: int, sims_idle: int) -> dict[str, float]:
    """DPM and simulator RSS (after, and grown since before the storm), per host and per resource:
    the DPM's per resource its snapshot holds (`DpmStatus.resources`, each once), the
    simulators' per resource they hold (`AgentStatus.resources`, summed: a VPC's shared
    table counts once per process), and both per resource in a host's view
    (`Storm.view_resources`: what a region's hosts would hold, each its own copy)."""
    statuses = c.agent_statuses()
    sim_rss = sum(a.rss_bytes for a in statuses)
    sim_resources = sum(a.resources for a in statuses)
    dpm_rss = c.dpm_rss()
    dpm_resources = c.dpm_status().resources
    h, views = max(storm.hosts, 1), max(storm.view_resources(), 1)
    return {"sim_rss_bytes": sim_rss, "sim_rss_per_host_bytes": sim_rss / h, "simulators": len(statuses),
            "sim_rss_idle_bytes": sims_idle, "sim_resources": sim_resources,
            "sim_rss_growth_per_host_bytes": (sim_rss - sims_idle) / h,
            "sim_rss_growth_per_resource_bytes": (sim_rss - sims_idle) / max(sim_resources, 1),
            "view_resources": views, "sim_rss_growth_per_view_resource_bytes": (sim_rss - sims_idle) / views,
            "dpm_rss_bytes": dpm_rss, "dpm_rss_idle_bytes": dpm_idle, "dpm_resources": dpm_resources,
            "dpm_rss_per_host_bytes": dpm_rss / h,
            "dpm_rss_growth_per_host_bytes": (dpm_rss - dpm_idle) / h,
            "dpm_rss_growth_per_resource_bytes": (dpm_rss - dpm_idle) / max(dpm_resources, 1),
            "dpm_rss_growth_per_view_resource_bytes": (dpm_rss - dpm_idle) / views}


def region_fanout(c: Cluster, storm: Storm, strategy: str) -> dict[str, Any]:
    """The bytes a region of real hosts would fetch over the scenario, beside what the
    simulators fetched. Every partition's payload bytes are read from the broker after the
    storm (offset 0 to the end: measured); each counts once per host that would read it
    (`measure.readers`: its unicast partition, read whole and filtered by key, or its own
    topic under topic-per-host, and the multicast partitions of the VPCs it follows, from
    the bench's layout). An upper bound by at most the multicast bytes published before a
    host's first port (a real host starts reading its VPC's partition at its join)."""
    t0 = time.monotonic()
    kafka = KafkaSettings.from_env(c.env.bootstrap)
    admin = AdminClient(kafka.admin())
    hosts = storm.host_list
    per_host = strategy == Strategy.TOPIC_PER_HOST
    topics = [c.topics.multicast, *(c.topics.host(h) for h in hosts)] if per_host else [c.topics.unicast, c.topics.multicast]
    sizes = partition_bytes(kafka, topics)
    fetched_by = readers(hosts, storm.follows(),
                         unicast=None if per_host else (c.topics.unicast, partition_count(admin, c.topics.unicast)),
                         multicast=(c.topics.multicast, partition_count(admin, c.topics.multicast)),
                         host_topic=f"{c.topics.prefix}.host.{{}}" if per_host else None)
    region = region_fetch_bytes(sizes, fetched_by)
    sims = sum(a.bytes_consumed for a in c.agent_statuses())
    return {"region_fetch_bytes": region, "sims_fetched_bytes": sims, "topic_bytes": sum(sizes.values()),
            "region_vs_sims_fetch": region / sims if sims else None, "fanout_read_s": time.monotonic() - t0}


WARM_JIT_CORES = 0.1  # the broker counts as warm once its JIT compilers kept fewer cores busy over a warm-up round
WARM_CHURN = (0.1, 0.5)  # each round: the storm, then churn at these fractions of its rate ...
WARM_CHURN_S = 2.0  # ... for this long each (light load takes code paths of its own: small batches, one input a transaction)


def warm_up(env: Env, storm: Storm, rounds: int, clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """`storm` and a short churn, not measured, in rounds until the broker's JIT compilers
    kept fewer than WARM_JIT_CORES busy over a whole round (set-up included), at most
    `rounds`: the scenarios start on a broker done compiling its hot paths. A broker whose
    threads the bench cannot read (elsewhere, or not a JVM) gets one round."""
    done: list[dict[str, float]] = []
    while True:
        env.say(f"warm-up round {len(done) + 1}: the main storm and a short churn, on their own topics, not measured")
        before, began = jit_seconds(env.broker_pids), clock()
        figures = run_storm(env, storm, churn=WARM_CHURN, churn_seconds=WARM_CHURN_S)
        jit = jit_cores(before, jit_seconds(env.broker_pids), clock() - began)
        done.append({"convergence_s": figures["convergence_s"], "jit_cores": jit})
        env.say(f"  the broker's JIT compilers kept {jit:.2f} cores busy over the round")
        if jit < WARM_JIT_CORES or len(done) >= rounds:
            return {**storm.describe(), "convergence_s": done[0]["convergence_s"], "rounds": done}


def run_storm(env: Env, storm: Storm, strategy: str = Strategy.VPC_MULTICAST, churn: tuple[float, ...] = (), churn_seconds: float = 8.0,
              fast_path: bool = False, bring_up_apart: bool = False, path: str = MQ) -> dict[str, Any]:
    """Scenario 1 (and 4, 5): subnets, then every port create, through a DPM with `--path path`
    (mq: the Kafka path; grpc: every goal state pushed to the simulators' registered fast
    paths); optionally churn (scenario 2) at fractions of the storm's rate. `fast_path`: then
    the same storm again on a DPM with `--path grpc` (`grpc_fast_path`: the gRPC fast path
    baseline, a cluster of its own). `bring_up_apart` pushes the first round (every host's
    first port) on its own, so the bytes of the steady state after it can be told apart."""
    sim_args: list[str] = ["--channel", Strategy.TOPIC_PER_HOST.value if strategy == Strategy.TOPIC_PER_HOST else "unicast"]
    ranges = host_ranges(storm.hosts, storm.first_host, env.sims)
    name = f"storm[{strategy}]" if path == MQ else f"storm[{strategy}, --path {path}]"
    env.say(f"{name}: {storm.hosts} hosts, {len(storm.layout)} VPCs, {storm.ports} ports: "
            f"encoding, starting the DPM and {len(ranges)} simulator process(es) ...")
    creates = storm.creates()
    with cluster(env, strategy, ranges, sim_args=sim_args, path=path) as c:
        dpm_idle, sims_idle = c.dpm_rss(), sum(a.rss_bytes for a in c.agent_statuses())
        push(c.address, [m.SerializeToString() for m in storm.subnets()], env.streams)
        c.replies().settle()
        env.say(f"{name}: pushing {len(creates)} port creates on {env.streams} streams ...")
        if bring_up_apart:
            first = min(storm.hosts, storm.ports)
            bring_up = pushed(c, storm, creates[:first], resources=sum(storm.resources(i) for i in range(first)))
            steady = pushed(c, storm, creates[first:], resources=sum(storm.resources(i) for i in range(first, storm.ports)))
            figures = _combine(bring_up, steady)
            figures["bring_up"], figures["steady"] = _brief(bring_up), _brief(steady)
        else:
            figures = pushed(c, storm, creates)
        figures.update(storm.describe(), strategy=strategy, **_memory(c, storm, dpm_idle, sims_idle))
        latency = (f"p99 publish->applied {figures['publish_to_applied_ms']['p99']:.1f} ms" if path == MQ else
                   f"p99 send->reply {figures['caller_reply_ms']['p99']:.1f} ms, {figures['grpc_messages']:,} messages "
                   f"({figures['grpc_bytes']:,} B) on gRPC, {figures['kafka_messages']:,} on Kafka")
        env.say(f"  converged in {figures['convergence_s']:.2f} s, {figures['goal_states_per_s']:.0f} goal states/s, "
                f"{figures['resources_per_s']:.0f} resources/s, {latency}, "
                f"{figures['bytes_published']:,} B published, {figures['acks_received']:,} acks; RSS per host: "
                f"DPM {figures['dpm_rss_per_host_bytes'] / 1024:.1f} KiB, simulators {figures['sim_rss_per_host_bytes'] / 1024:.1f} KiB")
        env.say(f"  CPU while pushing, cores busy: {cpu_text(figures['cpu'])}")
        if churn:
            figures["churn"] = _churn(env, c, storm, figures["goal_states_per_s"], churn, churn_seconds)
        if path == MQ:  # on gRPC nothing is fetched from the broker
            figures["fanout"] = fan = region_fanout(c, storm, strategy)
            ratio = fan["region_vs_sims_fetch"]
            env.say(f"  region fan-out: real hosts would fetch {fan['region_fetch_bytes']:,} B, the simulators fetched "
                    f"{fan['sims_fetched_bytes']:,} B ({ratio:.1f}x) over the scenario" if ratio else "  region fan-out: nothing fetched")
    if fast_path:
        env.say("gRPC fast path: the same storm through a DPM with --path grpc, pushed to the simulators' registered fast paths, "
                "a stream per host ...")
        fast = figures["grpc_fast_path"] = run_storm(env, storm, strategy, path=GRPC)
        env.say(f"  {fast['goal_states_per_s']:.0f} goal states/s, p99 send->reply {fast['caller_reply_ms']['p99']:.1f} ms")
    return figures


def _brief(figures: dict[str, Any]) -> dict[str, Any]:
    keys = ("inputs", "duration_s", "convergence_s", "messages_published", "unicast_messages", "multicast_messages",
            "bytes_published", "bytes_consumed", "goal_states_per_s")
    return {k: figures[k] for k in keys}


def _combine(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """A storm pushed in two phases, counted whole (rates over the sum of the phases' durations)."""
    out = dict(b)
    for k in ("inputs", "resources", "failures", "replies", "messages_published", "unicast_messages", "multicast_messages",
              "bytes_published", "bytes_consumed", "messages_applied", "replies_received", "requests_completed",
              "requests_failed", "retries", "resyncs_served", "acks_received", "ack_bytes", "broker_bytes_in", "broker_bytes_out",
              "kafka_messages", "kafka_bytes", "grpc_messages", "grpc_bytes", "bytes_pushed"):
        out[k] = a[k] + b[k]
    for k in ("duration_s", "convergence_s", "first_send_to_last_applied_s"):
        out[k] = a[k] + b[k]
    out["goal_states_per_s"] = out["inputs"] / out["duration_s"] if out["duration_s"] else 0.0
    out["resources_per_s"] = out["resources"] / out["duration_s"] if out["duration_s"] else 0.0
    out["messages_per_s"] = out["messages_published"] / out["convergence_s"] if out["convergence_s"] else 0.0
    out["avg_message_bytes"] = out["bytes_published"] / max(out["messages_published"], 1)
    out["cpu"] = cpu_combined(a["cpu"], b["cpu"])
    return out


def _churn(env: Env, c: Cluster, storm: Storm, max_rate: float, fractions: tuple[float, ...], seconds: float) -> list[dict[str, Any]]:
    """Scenario 2: port updates offered at fixed rates (fractions of the storm's goal states/s)."""
    phases = []
    start = 0
    for fraction in fractions:
        rate = max(1.0, fraction * max_rate)
        count = max(10, int(rate * seconds))
        payloads, lanes = storm.updates(count, start)
        start += count
        env.say(f"churn at {fraction:.0%} of max: {rate:.0f} goal states/s for {seconds:.0f} s ...")
        figures = pushed(c, storm, payloads, lanes, rate=rate, resources=sum(storm.resources(i % storm.ports) for i in lanes))
        lat = figures["publish_to_applied_ms"]
        phases.append({"fraction": fraction, "offered_per_s": rate, "achieved_per_s": figures["goal_states_per_s"], **figures})
        env.say(f"  publish->applied p50 {lat['p50']:.1f}, p95 {lat['p95']:.1f}, p99 {lat['p99']:.1f}, max {lat['max']:.1f} ms; "
                f"caller p99 {figures['caller_reply_ms']['p99']:.1f} ms")
    return phases


def run_restart(env: Env, storm: Storm, fraction: float = 0.1) -> dict[str, Any]:
    """Scenario 3: the hosts in simulator processes: 1 - fraction of them over `env.sims - 1`
    processes (at least one), `fraction` in one process of its own; kill -9 that one halfway
    through the storm, restart it, time its resync and compare its hosts' state with the
    DPM's snapshot (GetHostState against GetHostSnapshot on a sample), and the others'."""
    hosts = storm.host_list
    split = storm.hosts - max(1, int(storm.hosts * fraction))
    victims = hosts[split:]
    ranges = [*host_ranges(split, hosts[0], env.sims - 1), (len(victims), victims[0])]
    with cluster(env, Strategy.VPC_MULTICAST, ranges, sim_args=["--channel", "unicast"]) as c:
        push(c.address, [m.SerializeToString() for m in storm.subnets()], env.streams)
        creates = storm.creates()
        env.say(f"restart: {storm.hosts} hosts ({split} in {len(ranges) - 1} simulator(s) + {len(victims)} in one), {storm.ports} ports; "
                f"kill -9 of the {len(victims)} halfway ...")
        done: dict[str, Push] = {}
        failed: list[BaseException] = []

        def storm_push() -> None:
            try:
                done["push"] = push(c.address, creates, env.streams)
            except BaseException as exc:  # noqa: BLE001
                failed.append(exc)

        base = c.dpm_status().requests_completed
        pusher = threading.Thread(target=storm_push, daemon=True)
        pushed_at = time.monotonic()
        pusher.start()
        wait_for(lambda: c.dpm_status().requests_completed >= base + len(creates) // 2 or not pusher.is_alive(), "half the storm", 600)
        victim = c.sims.pop()
        victim.signal(signal.SIGKILL)
        killed = time.monotonic()
        killed_ns = time.time_ns()
        sim = c.start_sim(len(victims), victims[0], "s1-restarted", "--channel", "unicast")
        restarted = time.monotonic()
        while pusher.is_alive():
            pusher.join(0.2)
        if failed:
            raise failed[0]
        storm_done = time.monotonic()
        sample = victims[:: max(1, len(victims) // 20)]
        mismatched: list[str] = []

        def converged() -> bool:
            mismatched[:] = [
                h for h in sample if tables_of(host_state(sim.status_port, h)) != tables_of(host_snapshot(c.dpm.status_port, h))
            ]
            return not mismatched

        ok = True
        try:
            wait_for(converged, "restarted hosts to converge", deadline=120, every=0.1)
        except AssertionError:
            ok = False
        resynced = time.monotonic()
        c.replies().settle(0.3, 10)
        # every restarted host's first apply after the kill: its full-state resync (gs-full)
        first_after: dict[str, int] = {}
        victim_set = set(victims)
        for r in c.replies().samples():
            if r.applied_ns >= killed_ns and r.host in victim_set:
                first_after[r.host] = min(first_after.get(r.host, r.applied_ns), r.applied_ns)
        all_back = (max(first_after.values()) - killed_ns) / 1e9 if len(first_after) == len(victims) else None  # since the kill
        # and a sample of the hosts that never went down
        survivors = hosts[: split : max(1, split // 20)]
        survivors_ok = all(tables_of(host_state(c.sim_for(h).status_port, h)) == tables_of(host_snapshot(c.dpm.status_port, h))
                           for h in survivors)
        result = done["push"]
        dpm = c.dpm_status()
        status = agent_status(sim.status_port)
        back = f"{all_back:.2f} s" if all_back is not None else f"not all ({len(first_after)} of {len(victims)})"
        env.say(f"  restarted in {restarted - killed:.2f} s (kill -9 at {killed - pushed_at:.1f} s into the storm); every restarted host "
                f"applied its resync {back} after the kill; matched the snapshot {resynced - storm_done:.2f} s after the storm ended "
                f"({resynced - restarted:.2f} s after restart); snapshot match on {len(sample)} restarted hosts: {ok}, "
                f"on {len(survivors)} others: {survivors_ok}")
        return {"hosts": storm.hosts, "vpcs": len(storm.layout), "killed_hosts": len(victims), "ports": storm.ports,
                "killed_at_s": killed - pushed_at, "restart_s": restarted - killed, "resync_s": all_back,
                "hosts_resynced": len(first_after), "converged_after_restart_s": resynced - restarted,
                "after_storm_s": resynced - storm_done,
                "checked_hosts": len(sample), "matches_snapshot": ok, "mismatched_hosts": mismatched[:10],
                "survivors_checked": len(survivors), "survivors_match_snapshot": survivors_ok,
                "failures": result.failures, "storm_duration_s": result.duration_s, "inputs": result.inputs,
                "caller_reply_ms": percentiles(result.latencies_ms()),
                "retries": dpm.retries, "resyncs_served": dpm.resyncs_served, "restarted_sim_resyncs": status.resyncs}


def run_strategies(env: Env, storm: Storm) -> list[dict[str, Any]]:
    """Scenario 4: the same storm under each strategy; the first round (every host's first
    port, which carries the VPC's states by unicast) is pushed apart from the steady state."""
    return [run_storm(env, storm, strategy, bring_up_apart=True) for strategy in STRATEGIES]


def run_sweep(env: Env, counts: tuple[int, ...], ports_per_host: int, hosts_per_vpc: int) -> Iterator[dict[str, Any]]:
    """Scenario 5: convergence time and simulator RSS against the number of simulated hosts,
    a point as soon as it is measured (an interrupted run keeps those before)."""
    for count in counts:
        storm = Storm(count, max(1, count // hosts_per_vpc), ports_per_host * count, region=True)
        yield sweep_point(run_storm(env, storm))


def sweep_point(storm: dict[str, Any]) -> dict[str, Any]:
    """What the convergence-against-hosts plot and table keep of a storm."""
    keys = ("hosts", "vpcs", "hosts_per_vpc", "ports", "inputs", "resources", "convergence_s", "goal_states_per_s",
            "resources_per_s", "bytes_published", "bytes_consumed", "acks_received", "ack_bytes", "broker_bytes_in",
            "broker_bytes_out", "simulators", "sim_rss_bytes", "sim_rss_per_host_bytes", "sim_rss_growth_per_host_bytes",
            "sim_rss_growth_per_resource_bytes", "sim_rss_growth_per_view_resource_bytes", "view_resources",
            "dpm_rss_bytes", "dpm_rss_per_host_bytes", "dpm_rss_growth_per_host_bytes",
            "dpm_rss_growth_per_resource_bytes",
            "dpm_rss_growth_per_view_resource_bytes", "sim_resources", "dpm_resources", "failures", "publish_to_applied_ms", "fanout",
            "cpu")
    return {k: storm[k] for k in keys if k in storm}


def run_vpc_storm(env: Env, hosts: int, ports: int) -> dict[str, Any]:
    """One VPC of `ports` ports over `hosts` hosts (the target: 100,000 ports on 1,000 hosts <= 30 s)."""
    return run_storm(env, Storm(hosts, 1, ports, region=True))


def run_memory(env: Env, counts: tuple[int, ...]) -> Iterator[dict[str, Any]]:
    """Resident memory of idle simulators per host count (the hosts split over `env.sims`
    processes, summed), and above as many 1-host simulators (a point as soon as it is measured)."""
    base = 0
    for count in (1, *counts):
        ranges = host_ranges(count, "10.1.0.1", env.sims)
        with cluster(env, Strategy.VPC_MULTICAST, ranges, sim_args=["--channel", "unicast"]) as c:
            wait_for(lambda: all(a.rss_bytes > 0 for a in c.agent_statuses()), "simulator RSS")
            rss = sum(a.rss_bytes for a in c.agent_statuses())
        if count == 1:
            base = rss
            continue
        env.say(f"memory: idle simulators of {count:,} hosts ({len(ranges)} processes): {rss / 2**20:.0f} MiB, "
                f"{rss / count / 1024:.2f} KiB per host")
        yield {"hosts": count, "simulators": len(ranges), "rss_bytes": rss, "per_host_bytes": rss / count,
               "above_one_host_per_host_bytes": (rss - base * len(ranges)) / count}


__all__ = ["SCENARIOS", "STRATEGIES", "SUITES", "Storm", "Suite", "cdf_sample", "host_ids", "host_ranges", "resources_in", "warm_up"]
