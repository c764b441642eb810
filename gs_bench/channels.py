"""The channels scenario (issue 13; docs/internals.md, "Channels per VPC"): the same storm
through a DPM with `--path grpc` (every goal state pushed to the simulators' registered
fast paths, a stream per simulated host, as a region of single-host agents has),
`--path mq` (Kafka) and `--path auto` (by each VPC's port count, the DPM's
default bounds: Kafka above 1,000 ports, back to gRPC below 100), per VPC size; then a
mixed region of many small VPCs and a few large ones.

Shape:
- sizes: for each size S of `Suite.channels` (hosts per VPC), a storm of `channels_hosts`
  hosts (S if more) split in VPCs of S hosts (hosts / S VPCs) with `channels_ports_per_host` port
  creates per host, in the region shape of the sweep (`Storm(region=True)`): its subnets
  first (set-up), then the port creates (measured). Hosts and ports are the same at every
  size, so the work per host is fixed; what changes is the VPC size, and with it the
  neighbors a port brings (one per other host of its VPC that has a port).
- mixed region (`channels_mixed` = small VPCs, hosts each, large VPCs, hosts each): set-up,
  not measured: the subnets, and each large VPC's first `PREFILL` ports (the DPM's upper
  bound + 100, in inputs of `PREFILL_BATCH` ports: up to the bound, then, once those are
  all answered, past it), so that auto has moved it to Kafka with nothing in flight;
  then, measured, `MIXED_PORTS_PER_HOST` port creates per host of every VPC, small and
  large interleaved in one storm.
- mixed region at light load (`run_light`): the three clusters stay up after their mixed
  storms; then rounds of port creates on a third of the region's hosts at `LIGHT_RATE`, every path
  in each round, in `LIGHT_SLICE_S` slices that go to the paths in turn: caller send ->
  reply per VPC class. Saturated, the storm measures what each path costs the DPM and the simulator; at
  light load, what a caller waits.
- one cluster (DPM and simulators) per path, three in all, started one after the other
  and kept up to the end; each runs every size's storm in order, then the mixed region,
  each on hosts, VPCs and ports of its own, so that every path sees the same history. On
  grpc and auto the bench waits before each storm until the DPM has registered every
  simulator's fast path.

Figures per (size, path) and per mixed path (`brief`): convergence = first caller send ->
last caller reply (the DPM answers an input once every host it lists applied it, on
either channel: one yardstick for every path); goal states/s over the same span; the
caller's send -> reply percentiles (every path); publish -> applied from the reply topic
(only what went through Kafka: gRPC acks come back on the DPM's stream, never on the reply
topic); bytes: the DPM's `bytes_published` (payloads, once per message, either channel),
`kafka_bytes` (the goal-state records the storm put on Kafka, read back from the broker;
on mq all of `bytes_published`), `grpc_bytes` (the DPM's: payload + headers, once per
host it went to: a VPC's message is pushed to each member host, as to single-host
agents), broker bytes in / out (`scenarios.broker_bytes`); the DPM's
path switches and VPCs on gRPC over the storm and its set-up; and the DPM's straggler
retries in the set-up and in the storm (hosts it found behind and resynced after
`--retry-after`: a stall, never expected)."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

from dpm_server.paths import AUTO, GRPC, MQ, UPPER_PORTS
from gs_bench.measure import percentiles
from gs_bench.runner import Cluster, Env, cluster, push
from gs_bench.scenarios import Storm, host_ranges, pushed
from gsmq.wire import Strategy

T = TypeVar("T")
PATHS = (GRPC, MQ, AUTO)  # the order the paths run in
FIRST_HOST = "10.64.0.1"
PREFILL = UPPER_PORTS + 100  # ports of each large VPC before the mixed storm: past auto's upper bound
PREFILL_BATCH = 100  # ports per set-up input
MIXED_PORTS_PER_HOST = 2
LIGHT_RATE = 50.0  # inputs/s of the light-load rounds: far below every path's maximum
LIGHT_ROUNDS = 3  # measured rounds of the light load, after one warm-up round
LIGHT_EVERY = 3  # a light round takes every LIGHT_EVERY-th of a port create per host: a third of the region's hosts
LIGHT_SLICE_S = 2.0  # a light round goes to the paths in turn in slices of this many seconds of inputs
PORT_BLOCK = 10_000_000  # port numbers of each storm start at a multiple of this


@dataclass(frozen=True)
class Plan:
    """The storms of one cluster: one per size, then the mixed region's small and large VPCs,
    on consecutive host ranges from FIRST_HOST."""

    sizes: list[tuple[int, Storm]]  # (hosts per VPC, its storm)
    small: Storm
    large: Storm

    @property
    def hosts(self) -> int:
        return sum(s.hosts for _, s in self.sizes) + self.small.hosts + self.large.hosts


def plan(sizes: Sequence[int], hosts: int, ports_per_host: int, mixed: tuple[int, int, int, int]) -> Plan:
    """Every storm of the scenario, each on hosts, VPCs and port ids of its own."""
    base = ipaddress.IPv4Address(FIRST_HOST)
    offset = 0
    storms: list[Storm] = []

    def storm(count: int, vpcs: int, ports: int, prefix: str) -> Storm:
        nonlocal offset
        made = Storm(count, vpcs, ports, str(base + offset), first_port=(len(storms) + 1) * PORT_BLOCK, region=True,
                     vpc_prefix=prefix)
        storms.append(made)
        offset += count
        return made

    by_size = [(size, storm(max(hosts, size), max(1, max(hosts, size) // size), max(hosts, size) * ports_per_host, f"s{size}"))
               for size in sizes]
    small_vpcs, small_hosts, large_vpcs, large_hosts = mixed
    per_host = MIXED_PORTS_PER_HOST + LIGHT_ROUNDS + 1  # the storm's, then one per light round (warm-up first)
    small = storm(small_vpcs * small_hosts, small_vpcs, small_vpcs * small_hosts * per_host, "small")
    large = storm(large_vpcs * large_hosts, large_vpcs, large_vpcs * (PREFILL + large_hosts * per_host), "large")
    return Plan(by_size, small, large)


def mixed_ports(shape: Plan, first: int, count: int) -> tuple[range, range]:
    """Port indices of the small and large storms for `count` port creates per host, from
    the host's `first`-th measured one (the large VPCs' prefill comes before)."""
    s, h = shape.small.hosts, shape.large.hosts
    prefill = shape.large.ports - h * (MIXED_PORTS_PER_HOST + LIGHT_ROUNDS + 1)
    return range(s * first, s * (first + count)), range(prefill + h * first, prefill + h * (first + count))


def spread(*lists: Sequence[T]) -> list[T]:
    """The lists merged into one, each in its own order and spread evenly over the whole
    (item i of a list of n sits at (i + 0.5) / n of the way)."""
    keyed = [((i + 0.5) / len(items), k, i) for k, items in enumerate(lists) for i in range(len(items))]
    return [lists[k][i] for _, k, i in sorted(keyed)]


BRIEF = ("path", "hosts", "vpcs", "hosts_per_vpc", "ports", "inputs", "resources", "failures", "goal_states_per_s", "resources_per_s",
         "caller_reply_ms", "publish_to_applied_ms", "cdf_caller_reply_ms", "messages_published", "bytes_published", "grpc_messages",
         "grpc_bytes", "kafka_messages", "kafka_bytes", "acks_received", "ack_bytes", "broker_bytes_in", "broker_bytes_out",
         "bytes_consumed", "bytes_pushed", "agents_dropped", "out_of_order", "stale_messages", "retries", "resyncs_served")


def brief(figures: dict[str, Any]) -> dict[str, Any]:
    """What the channels table keeps of a pushed phase; convergence on the caller's clock."""
    out = {k: figures[k] for k in BRIEF if k in figures}
    out["convergence_s"] = figures["duration_s"]  # first send -> last reply: every host applied every input
    out["kafka_convergence_s"] = figures["convergence_s"] if figures["replies"] else None  # reply topic: Kafka's share only
    return out


def _storm(c: Cluster, storms: Sequence[Storm], payloads: list[bytes], resources: int,
           setup: Sequence[list[bytes]] = ()) -> dict[str, Any]:
    """Set-up (the storms' subnets, then each of `setup`, answered before the next), then
    `payloads`, measured; the DPM's path switches and the storms' VPCs left on gRPC are
    counted over both."""
    c.wait_registered()  # a fast path dropped earlier registers again within 5 s
    before, started = c.dpm_status(), time.monotonic()
    push(c.address, [m.SerializeToString() for s in storms for m in s.subnets()], c.env.streams)
    for step in setup:
        push(c.address, step, c.env.streams)
    c.replies().settle()
    setup_s, ready = time.monotonic() - started, c.dpm_status()
    figures = brief(pushed(c, storms[0], payloads, resources=resources))
    after = c.dpm_status()
    figures.update(path_switches=after.path_switches - before.path_switches, vpcs=sum(len(s.layout) for s in storms),
                   vpcs_on_grpc=after.vpcs_on_grpc - before.vpcs_on_grpc, agents_registered=after.agents_registered,
                   setup_s=setup_s, setup_retries=ready.retries - before.retries,
                   setup_resyncs=ready.resyncs_served - before.resyncs_served)
    return figures


def _say_point(env: Env, label: str, f: dict[str, Any]) -> None:
    kafka = f["publish_to_applied_ms"]
    applied = f", publish->applied p99 {kafka['p99']:.1f} ms (Kafka)" if kafka["count"] else ""
    dropped = f"; {f['agents_dropped']} fast paths dropped" if f["agents_dropped"] else ""
    if f["setup_retries"] or f["retries"]:  # hosts the DPM found behind and resynced: a stall of --retry-after (30 s)
        dropped += (f"; straggler retries: {f['setup_retries']} in the set-up ({f['setup_s']:.1f} s), "
                    f"{f['retries']} in the storm")
    env.say(f"  {label}: {f['convergence_s']:.2f} s, {f['goal_states_per_s']:.0f} goal states/s, caller p99 "
            f"{f['caller_reply_ms']['p99']:.1f} ms{applied}; {f['kafka_bytes']:,} B on Kafka, {f['grpc_bytes']:,} B on gRPC; "
            f"{f['path_switches']} path switches, {f['vpcs_on_grpc']} of {f['vpcs']} VPCs on gRPC{dropped}")


def run_channels(env: Env, sizes: Sequence[int], hosts: int, ports_per_host: int, mixed: tuple[int, int, int, int],
                 into: dict[str, Any]) -> dict[str, Any]:
    """The scenario; every figure goes into `into` as soon as it is measured (an interrupted
    run keeps them): `points` (one per size and path), `mixed` (one per path)."""
    shape = plan(sizes, hosts, ports_per_host, mixed)
    small_vpcs, small_hosts, large_vpcs, large_hosts = mixed
    into.update(sizes=list(sizes), hosts=hosts, ports_per_host=ports_per_host, paths=list(PATHS),
                mixed_shape={"small_vpcs": small_vpcs, "small_hosts": small_hosts, "large_vpcs": large_vpcs,
                             "large_hosts": large_hosts, "prefill_ports": PREFILL, "ports_per_host": MIXED_PORTS_PER_HOST,
                             "inputs": (shape.small.hosts + shape.large.hosts) * MIXED_PORTS_PER_HOST})
    points: list[dict[str, Any]] = into.setdefault("points", [])
    runs: list[dict[str, Any]] = into.setdefault("mixed", [])
    ranges = host_ranges(shape.hosts, FIRST_HOST, env.sims)
    small, large = shape.small, shape.large
    small_ports, large_ports = mixed_ports(shape, 0, MIXED_PORTS_PER_HOST)
    with ExitStack() as stack:
        clusters: dict[str, Cluster] = {}
        for path in PATHS:
            env.say(f"channels[--path {path}]: storms of {hosts:,} hosts in VPCs of {', '.join(f'{s:,}' for s in sizes)} hosts, then the "
                    f"mixed region; starting the DPM and {len(ranges)} simulator process(es) for {shape.hosts:,} hosts ...")
            c = clusters[path] = stack.enter_context(
                cluster(env, Strategy.VPC_MULTICAST, ranges, sim_args=["--channel", "unicast"], path=path))
            for size, storm in shape.sizes:
                point = _storm(c, [storm], storm.creates(), storm.total_resources())
                point.update(storm.describe(), hosts_per_vpc=size)
                points.append(point)
                _say_point(env, f"{size:,} hosts per VPC, {storm.ports:,} ports", point)
            prefill, below = large_vpcs * PREFILL, large_vpcs * UPPER_PORTS
            # up to the upper bound, then past it once all that is acked: auto moves the VPC at once, with nothing in flight
            setup = [[large.batch(range(i, min(i + PREFILL_BATCH, end))).SerializeToString() for i in range(start, end, PREFILL_BATCH)]
                     for start, end in ((0, below), (below, prefill))]
            measured = spread([small.encode(i) for i in small_ports], [large.encode(i) for i in large_ports])
            resources = sum(small.resources(i) for i in small_ports) + sum(large.resources(i) for i in large_ports)
            run = _storm(c, [small, large], measured, resources, setup)
            run.update(hosts=small.hosts + large.hosts, ports=len(measured))
            runs.append(run)
            _say_point(env, f"mixed region ({small_vpcs} VPCs of {small_hosts} hosts, {large_vpcs} of {large_hosts:,} hosts)", run)
        into["light"] = run_light(env, shape, clusters)
    return into


def run_light(env: Env, shape: Plan, clusters: dict[str, Cluster]) -> dict[str, Any]:
    """The mixed region at light load (`LIGHT_RATE` inputs/s), on the three clusters left
    as their mixed storms made them: in each round every path gets every `LIGHT_EVERY`-th of
    one port create per host of the region, small and large VPCs interleaved, in slices of
    `LIGHT_SLICE_S` seconds that go to the paths in turn, the order turning each slice: a
    few seconds of background work on the shared machine (the broker's JIT compiler, say)
    fall on every path alike, not on the one that happened to run then. The first round warms up and is not counted. A small VPC's
    inputs and a large one's go on separate caller streams, so neither's reply waits
    behind the other's. Latency = caller send -> reply."""
    env.say(f"channels: the mixed region at light load, {LIGHT_RATE:g} inputs/s, {LIGHT_ROUNDS} rounds after a warm-up round, "
            f"in {LIGHT_SLICE_S:g}-second slices that go to the paths in turn ...")
    seen: dict[str, dict[str, list[float]]] = {path: {"small": [], "large": []} for path in clusters}
    failures = dict.fromkeys(clusters, 0)  # statuses other than SUCCESS in the measured rounds' replies
    for round_ in range(LIGHT_ROUNDS + 1):
        small_ports, large_ports = (ports[::LIGHT_EVERY] for ports in mixed_ports(shape, MIXED_PORTS_PER_HOST + round_, 1))
        inputs = spread([shape.small.encode(i) for i in small_ports], [shape.large.encode(i) for i in large_ports])
        kinds = spread(["small"] * len(small_ports), ["large"] * len(large_ports))
        size = max(1, int(LIGHT_RATE * LIGHT_SLICE_S))
        for n, at in enumerate(range(0, len(inputs), size)):
            turn = round_ + n
            for path in PATHS[turn % len(PATHS):] + PATHS[:turn % len(PATHS)]:
                c = clusters[path]
                c.wait_registered()
                part = kinds[at:at + size]
                result = push(c.address, inputs[at:at + size], 2, LIGHT_RATE, lanes=[0 if kind == "small" else 1 for kind in part])
                if round_ == 0:
                    continue
                failures[path] += result.failures
                for i, kind in enumerate(part):
                    seen[path][kind].append((result.reply_ns[i] - result.sent_ns[i]) / 1e6)
    out: dict[str, Any] = {"rate": LIGHT_RATE, "rounds": LIGHT_ROUNDS, "paths": {}}
    for path, kinds_seen in seen.items():
        every = kinds_seen["small"] + kinds_seen["large"]
        out["paths"][path] = {kind: percentiles(values) for kind, values in (*kinds_seen.items(), ("all", every))}
        out["paths"][path]["failures"] = failures[path]
        f = out["paths"][path]
        env.say(f"  {path}: caller send->reply p50 / p99 small VPCs {f['small']['p50']:.1f} / {f['small']['p99']:.1f} ms, "
                f"large VPCs {f['large']['p50']:.1f} / {f['large']['p99']:.1f} ms, all {f['all']['p50']:.1f} / {f['all']['p99']:.1f} ms")
    return out
