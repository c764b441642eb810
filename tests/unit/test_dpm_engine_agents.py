"""The DPM engine with real ACAs in memory: `Engine` publishing to a `MemoryBus`, one
`aca_agent` consumer + `Applier` per host reading it (unicast partitions, multicast
partitions as it follows VPCs, resync requests served by the engine), replies pumped
back into the ack tracker. No Kafka, no gRPC, no clocks: `settle()` runs every party
until nothing moves.

The property checked throughout: once settled, every host's data plane (applied and
pending) equals the DPM snapshot's view of that host, every caller got its reply, and a
resync changes nothing."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aca_agent.acks import Progress
from aca_agent.applier import Applier
from aca_agent.dataplane import MemoryDataPlane
from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp
from dpm_server.ackwire import fields_of
from dpm_server.changelog import replay
from dpm_server.inputs import Input, merge
from dpm_server.snapshot import Snapshot
from dpm_server.testing import dhcp, goal, memory_engine, neighbor, port, published, security_group, subnet
from gs_bench.memory_cluster import MemoryCluster
from gs_bench.topology import Port, port_message, subnet_message
from gsmq import wire
from gsmq.resources import TYPE_NAME, iter_states
from gsmq.transport import Envelope

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"
HOSTS = [A, B, C]
STRATEGIES = list(wire.STRATEGIES)
Tables = dict[str, dict[str, int]]


class Cluster(MemoryCluster):
    """An engine and one in-memory agent per host (or one simulator), over one MemoryBus."""

    def __init__(self, strategy: str, hosts: Iterable[str] = HOSTS, timeout: float = 10.0, retry_after: float | None = None,
                 sim: bool = False, durable: bool = False) -> None:
        super().__init__(strategy, hosts, timeout, retry_after, sim, durable)

    def settle(self, rounds: int = 200) -> None:
        super().settle(rounds)
        assert self.refused == []

    def agent_tables(self, host: str) -> Tables:
        """What the host's agent holds: its data plane plus its pending states, as {type: {id: revision}}."""
        out = tables_of(self.appliers[host].host_state(host))
        for (rtype, rid), state in self.appliers[host].pending_states(host).items():
            out.setdefault(TYPE_NAME[rtype], {})[rid] = state.configuration.revision_number
        return out

    def dpm_tables(self, host: str) -> Tables:
        return tables_of(self.eng.host_goal_state(host))

    def assert_converged(self) -> None:
        for host in self.hosts:
            assert self.agent_tables(host) == self.dpm_tables(host), f"host {host} differs from the DPM's snapshot"


def tables_of(message: gs.GoalStateV2) -> Tables:
    out: Tables = {}
    for rtype, rid, state in iter_states(message):
        out.setdefault(TYPE_NAME[rtype], {})[rid] = state.configuration.revision_number
    return out


def statuses(reply: gsp.GoalStateOperationReply) -> dict[str, int]:
    return {s.resource_id: s.operation_status for s in reply.operation_statuses}


# ---- a caller that knows the topology, like Alcor's DPM callers -----------------------


@dataclass
class Caller:
    """Builds the messages of a network change and keeps every resource's latest revision.
    It lists for a port's host the port, its DHCP entry, the VPC's subnet and (first port
    of the host in the VPC) the VPC's neighbors and security groups; a port's neighbor for
    the VPC's other hosts; a security group for the VPC's hosts."""

    ports: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # port -> (vpc, host, index)
    rev: dict[str, int] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)  # security group -> vpc
    count: int = 0

    def next_rev(self, rid: str) -> int:
        self.rev[rid] = self.rev.get(rid, 0) + 1
        return self.rev[rid]

    def vpc_hosts(self, vpc: str) -> set[str]:
        return {host for v, host, _ in self.ports.values() if v == vpc}

    def subnet_item(self, vpc: str) -> Any:
        rid = f"subnet-{vpc}"
        if rid not in self.rev:
            self.rev[rid] = 1
        return subnet(vpc, rev=self.rev[rid])

    def port_items(self, pid: str, op: int) -> list[Any]:
        vpc, host, i = self.ports[pid]
        rev = self.next_rev(pid)
        ip = f"10.{i // 200}.{i % 200}.9"
        return [port(pid, vpc, host, ip, rev, op), dhcp(f"dhcp-{pid}", vpc, ip, rev, op), neighbor(f"nb-{pid}", vpc, host, ip, rev, op)]

    def add_port(self, vpc: str, host: str) -> gs.GoalStateV2:
        self.count += 1
        pid = f"p{self.count}"
        joining = host not in self.vpc_hosts(vpc)
        others = self.vpc_hosts(vpc) - {host}
        self.ports[pid] = (vpc, host, self.count)
        items = [self.subnet_item(vpc), *self.port_items(pid, common.CREATE)]
        listed: dict[str, list[str]] = {host: [f"subnet-{vpc}", pid, f"dhcp-{pid}"]}
        for other in others:
            listed.setdefault(other, []).append(f"nb-{pid}")
        if joining:  # what the host needs of the VPC besides its own port
            for qid, (v, qhost, i) in self.ports.items():
                if v == vpc and qhost != host:
                    vip = f"10.{i // 200}.{i % 200}.9"
                    items.append(neighbor(f"nb-{qid}", v, qhost, vip, self.rev[qid]))
                    listed[host].append(f"nb-{qid}")
            for sg, v in self.groups.items():
                if v == vpc:
                    items.append(security_group(sg, vpc, self.rev[sg]))
                    listed[host].append(sg)
        return goal(items, listed)

    def update_port(self, pid: str, op: int = common.UPDATE) -> gs.GoalStateV2:
        vpc, host, _ = self.ports[pid]
        items = self.port_items(pid, op)
        listed: dict[str, list[str]] = {host: [pid, f"dhcp-{pid}"]}
        for other in self.vpc_hosts(vpc) - {host}:
            listed.setdefault(other, []).append(f"nb-{pid}")
        if op == common.DELETE:
            del self.ports[pid]
        return goal(items, listed)

    def group(self, sg: str, vpc: str, op: int = common.CREATE) -> gs.GoalStateV2:
        rev = self.next_rev(sg)
        if op == common.DELETE:
            self.groups.pop(sg, None)
        else:
            self.groups[sg] = vpc
        return goal([security_group(sg, vpc, rev, op)], {host: [sg] for host in self.vpc_hosts(vpc)})


# ---- scenarios ----------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_callers_are_answered_once_every_agent_applied_and_agents_match_the_snapshot(strategy: str) -> None:
    cluster, caller = Cluster(strategy), Caller()
    replies: list[gsp.GoalStateOperationReply] = []
    for i, host in enumerate([A, B, C, A]):
        cluster.eng.submit(caller.add_port("vpc-1", host), replies.append)
        assert len(replies) == i  # nothing answered before the agents ran
        cluster.settle()
        assert len(replies) == i + 1
    cluster.eng.submit(caller.group("sg-1", "vpc-1"), replies.append)
    cluster.settle()
    assert len(replies) == 5 and cluster.eng.tracker.pending == {}
    assert all(set(statuses(r).values()) == {common.SUCCESS} for r in replies), [statuses(r) for r in replies]
    cluster.assert_converged()
    assert set(cluster.agent_tables(A)["PORT"]) == {"p1", "p4"} and set(cluster.agent_tables(B)["NEIGHBOR"]) == {"nb-p1", "nb-p3", "nb-p4"}
    assert cluster.agent_tables(C)["SECURITYGROUP"] == {"sg-1": 1}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_restarted_agent_converges_to_the_snapshot_through_its_resync(strategy: str) -> None:
    cluster, caller = Cluster(strategy), Caller()
    for host in HOSTS:
        cluster.eng.submit(caller.add_port("vpc-1", host), lambda r: None)
    cluster.eng.submit(caller.group("sg-1", "vpc-1"), lambda r: None)
    cluster.settle()
    resyncs = cluster.eng.resyncs
    cluster.add_agent(B)  # a new process: empty data plane; it asks for its state
    cluster.settle()
    assert cluster.eng.resyncs == resyncs + 1
    assert cluster.agent_tables(B) == cluster.dpm_tables(B) != {}
    cluster.assert_converged()


def test_leaving_a_vpc_empties_the_host_on_both_sides() -> None:
    cluster, caller = Cluster("vpc-multicast"), Caller()
    for host in HOSTS:
        cluster.eng.submit(caller.add_port("vpc-1", host), lambda r: None)
    cluster.eng.submit(caller.group("sg-1", "vpc-1"), lambda r: None)
    cluster.settle()
    replies: list[gsp.GoalStateOperationReply] = []
    cluster.eng.submit(caller.update_port("p1", common.DELETE), replies.append)  # A's only port
    cluster.settle()
    (reply,) = replies
    assert set(statuses(reply).values()) == {common.SUCCESS}
    assert cluster.agent_tables(A) == cluster.dpm_tables(A) == {}
    assert cluster.appliers[A].followed(A) == set()
    cluster.assert_converged()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_straggler_retried_after_a_later_change_gets_the_current_state(strategy: str) -> None:
    # B is down while its new port is created and deleted again; the create is retried
    # after the delete was published. A copy of the create would bring the port back on B.
    cluster, caller = Cluster(strategy, timeout=1000.0, retry_after=50.0), Caller()
    cluster.eng.tracker.clock = lambda: time.monotonic() - 100.0  # B's last replies are 100 s old
    for host in HOSTS:
        cluster.eng.submit(caller.add_port("vpc-1", host), lambda r: None)
    cluster.settle()
    cluster.eng.tracker.clock = time.monotonic
    cluster.silent.add(B)
    replies: list[gsp.GoalStateOperationReply] = []
    cluster.eng.submit(caller.add_port("vpc-1", B), replies.append)
    cluster.settle()  # A and C apply their neighbor
    (created,) = cluster.eng.tracker.pending.values()
    created.started -= 100.0  # old enough to be retried; the delete below is not
    cluster.eng.submit(caller.update_port("p4", common.DELETE), replies.append)
    cluster.settle()
    retries = cluster.eng.tracker.retries
    cluster.eng.tracker.tick()
    assert cluster.eng.tracker.retries == retries + 1
    cluster.silent.discard(B)
    cluster.settle()
    assert len(replies) == 2 and cluster.eng.tracker.pending == {}
    assert "p4" not in cluster.agent_tables(B).get("PORT", {})
    cluster.assert_converged()


# ---- random histories ---------------------------------------------------------------

VPCS = ["vpc-1", "vpc-2"]
Op = tuple[str, int, int]  # (kind, a, b): interpreted against the caller's current topology
ops = st.lists(
    st.tuples(st.sampled_from(["add", "add", "update", "delete", "group", "ungroup", "stale", "stale-delete", "restart"]),
              st.integers(0, 5), st.integers(0, 5)),
    min_size=1, max_size=12,
)


def assert_latest(cluster: Cluster, caller: Caller) -> None:
    """The snapshot holds the caller's latest revision of every live port and group, and nothing deleted."""
    live = {(common.PORT, pid): caller.rev[pid] for pid in caller.ports}
    live.update({(common.SECURITYGROUP, sg): caller.rev[sg] for sg in caller.groups})
    held = {key: stored.state.configuration.revision_number for key, stored in cluster.eng.snapshot.resources.items()
            if key[0] in (common.PORT, common.SECURITYGROUP)}
    assert held == live


def indexes(snapshot: Snapshot) -> dict[str, Any]:
    """Every index of a snapshot, empty entries left out."""
    def clean(index: dict[Any, Any]) -> dict[Any, Any]:
        return {k: v for k, v in index.items() if v}

    return {"resources": {k: (s.piece, s.ref, s.vpc, s.located) for k, s in snapshot.resources.items()},
            "listed": clean(snapshot.listed), "holders": clean(snapshot.holders), "vpc_wide": clean(snapshot.vpc_wide),
            "host_ports": {h: clean(p) for h, p in snapshot.host_ports.items() if clean(p)}, "members": clean(snapshot.members),
            "addresses": clean(snapshot.addresses)}


def assert_rebuilt_from_the_changelog(cluster: Cluster) -> None:
    """A DPM replaying the changelog the engine wrote holds the engine's snapshot, index by index."""
    rebuilt = Snapshot(cluster.strategy)
    assert replay(cluster.bus.source("restarted-dpm"), cluster.topics.changelog, 2, rebuilt) is not None
    assert indexes(rebuilt) == indexes(cluster.eng.snapshot)


def build(caller: Caller, op: Op) -> gs.GoalStateV2 | str | None:
    """The message of one random step (None: nothing to do; a host id: restart its agent)."""
    kind, a, b = op
    existing = sorted(caller.ports)
    if kind == "add":
        return caller.add_port(VPCS[a % 2], HOSTS[b % 3])
    if kind == "restart":
        return HOSTS[a % 3]
    if kind in ("group", "ungroup"):
        sg = f"sg-{a % 2}"
        if kind == "ungroup" and sg not in caller.groups:
            return None
        return caller.group(sg, caller.groups.get(sg, VPCS[b % 2]), common.DELETE if kind == "ungroup" else common.CREATE)
    if not existing:
        return None
    pid = existing[a % len(existing)]
    if kind in ("stale", "stale-delete"):  # a state older than the latest one (a late retry by the caller)
        if caller.rev[pid] < 2:
            return None
        kept = caller.ports[pid]
        message = caller.update_port(pid, common.DELETE if kind == "stale-delete" else common.UPDATE)
        caller.ports[pid] = kept
        caller.rev[pid] -= 1  # the next step reuses this revision: stays monotonic for real changes
        for _, rid, state in iter_states(message):
            if rid in (pid, f"dhcp-{pid}", f"nb-{pid}"):
                state.configuration.revision_number -= 2
        return message
    return caller.update_port(pid, common.DELETE if kind == "delete" else common.UPDATE)


@pytest.mark.parametrize("sim", [False, True], ids=["agent-per-host", "one-simulator"])
@pytest.mark.parametrize("strategy", STRATEGIES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(history=ops, batched=st.booleans())
def test_any_history_leaves_every_agent_equal_to_the_snapshot(strategy: str, sim: bool, history: list[Op], batched: bool) -> None:
    """Through the changelog, as the daemon runs: a DPM rebuilt from it holds the same snapshot."""
    cluster, caller = Cluster(strategy, sim=sim, durable=True), Caller()
    answered: list[gsp.GoalStateOperationReply] = []
    sent = 0
    batch: list[tuple[gs.GoalStateV2, Any]] = []
    for op in history:
        message = build(caller, op)
        if message is None:
            continue
        if isinstance(message, str):
            cluster.add_agent(message)
        elif batched:
            batch.append((message, answered.append))
            sent += 1
            continue
        else:
            cluster.eng.submit(message, answered.append)
            sent += 1
        cluster.settle()
        cluster.assert_converged()
    if batch:
        cluster.eng.submit_many(batch)
    cluster.settle()
    assert len(answered) == sent and cluster.eng.tracker.pending == {}
    assert all(s.operation_status != common.FAILURE for r in answered for s in r.operation_statuses)
    cluster.assert_converged()
    assert_latest(cluster, caller)
    assert_rebuilt_from_the_changelog(cluster)
    for host in HOSTS:  # a resync of a converged host changes nothing
        before = cluster.agent_tables(host)
        cluster.eng.resync(host)
        cluster.settle()
        assert cluster.agent_tables(host) == before


# ---- the plan against bare appliers, step by step (no consumer in between) -----------------


def bench_ports(vpc: str = "vpc-1") -> list[Port]:
    return [Port(f"p{i}", vpc, host, f"10.1.0.{i}", f"fa:16:3e:00:00:{i:02x}") for i, host in enumerate(HOSTS)]


def test_requests_complete_when_every_host_replied_through_real_appliers() -> None:
    eng, bus, topics = memory_engine()
    agents = {host: Applier(MemoryDataPlane(), [host]) for host in HOSTS}
    replies: list[gsp.GoalStateOperationReply] = []
    eng.submit(subnet_message("vpc-1", HOSTS), replies.append)
    for p in bench_ports():
        eng.submit(port_message(p, HOSTS), replies.append)
    assert replies == []  # nobody has applied anything yet
    for message in published(bus, topics.unicast):
        progress = Progress()
        result = agents[message.key].apply_unicast(message.key, gs.GoalStateV2.FromString(message.value), message.headers)
        assert result is not None
        progress.add(result)
        eng.on_acks([fields_of(a) for a in progress.acks(agents[message.key])])
    assert len(replies) < 4  # the multicast neighbors are still to be applied
    for message in published(bus, topics.multicast):
        goal_state = gs.GoalStateV2.FromString(message.value)
        for agent in agents.values():
            progress = Progress()
            for result in agent.apply_multicast(message.key, goal_state, message.headers, message.partition, message.offset):
                progress.add(result)
            eng.on_acks([fields_of(a) for a in progress.acks(agent)])
    assert len(replies) == 4
    assert all(s.operation_status == common.SUCCESS for r in replies for s in r.operation_statuses)


def region_storm() -> tuple[list[Envelope], list[Envelope], list[str], str]:
    """Two VPCs of six hosts built port by port as the region storm does (a port's neighbor
    listed to the hosts with a port before it, each host joining with the VPC's states),
    then neighbors updated and deleted and more hosts joining: unicast and multicast
    messages in publishing order each, the hosts, the multicast topic."""
    eng, bus, topics = memory_engine()
    hosts = {vpc: [f"10.{v}.0.{i}" for i in range(6)] for v, vpc in enumerate(["vpc-a", "vpc-b"])}
    ports = {vpc: [Port(f"p-{vpc}-{i}", vpc, h, f"10.1.0.{i}", f"fa:16:3e:00:0{v}:{i:02x}") for i, h in enumerate(vh)]
             for v, (vpc, vh) in enumerate(hosts.items())}
    for vpc, vh in hosts.items():
        eng.submit(subnet_message(vpc, []), lambda _: None)
        for i, p in enumerate(ports[vpc][:4]):
            eng.submit(port_message(p, vh[:i]), lambda _: None)
    for vpc, vh in hosts.items():
        eng.submit(port_message(ports[vpc][1], vh[:4], revision=2), lambda _: None)
        eng.submit(port_message(ports[vpc][2], vh[:4], revision=3, op=common.DELETE), lambda _: None)
        for i, p in enumerate(ports[vpc][4:], start=4):
            eng.submit(port_message(p, vh[:i]), lambda _: None)
    unicast, multicast = published(bus, topics.unicast), published(bus, topics.multicast)
    for stream in (unicast, multicast):
        stream.sort(key=lambda m: int(m.headers[wire.SENT_NS]))
    return unicast, multicast, [h for vh in hosts.values() for h in vh], topics.multicast


@pytest.mark.parametrize("seed", range(6))
def test_a_simulator_taking_joins_known_pieces_applies_as_one_parsing_every_bundle(seed: int) -> None:
    """Joins read from their bytes (`raw`): the states a VPC's table has seen in an earlier
    bundle are taken from it unparsed. Whatever the interleaving of host and VPC messages,
    every result and every host's view equal those of a simulator parsing every bundle."""
    unicast, multicast, hosts, mc_topic = region_storm()
    order = random.Random(seed).sample([0] * len(unicast) + [1] * len(multicast), len(unicast) + len(multicast))
    reading, parsing = Applier(MemoryDataPlane(), hosts), Applier(MemoryDataPlane(), hosts)
    streams = [iter(unicast), iter(multicast)]
    for which in order:
        m = next(streams[which])
        goal_state = gs.GoalStateV2.FromString(m.value)
        if m.topic == mc_topic:
            got = [reading.apply_multicast(m.key, goal_state, m.headers, m.partition, m.offset),
                   parsing.apply_multicast(m.key, gs.GoalStateV2.FromString(m.value), m.headers, m.partition, m.offset)]
        else:
            got = [[r] for r in (reading.apply_unicast(m.key, goal_state, m.headers, m.value),
                                 parsing.apply_unicast(m.key, gs.GoalStateV2.FromString(m.value), m.headers)) if r is not None]
        mine, theirs = ([(r.host, r.seq, r.vpc, sorted((s.resource_id, s.resource_type, s.operation_type, s.status)
                                                        for s in r.statuses)) for r in results] for results in got)
        assert mine == theirs
    for host in hosts:
        assert reading.host_state(host) == parsing.host_state(host)
        assert reading.pending_states(host) == parsing.pending_states(host)
    assert parsing.counters.bundle_states_known == 0
    assert reading.counters.bundle_states_known > 0
    assert {vpc: len(t.known) > 0 for vpc, t in reading.tables.items()} == {"vpc-a": True, "vpc-b": True}


def test_a_tables_known_pieces_are_forgotten_once_they_outgrow_it() -> None:
    """A neighbor updated again and again leaves each revision's bytes known until they pass
    twice the table's states plus 64: then the table starts over."""
    applier = Applier(MemoryDataPlane(), [A, B])
    head = {wire.EPOCH: "1.e"}
    follow = wire.encode_follow({"vpc-1": wire.FollowPosition(0, 0, 0)})
    sizes = []
    for rev in range(1, 80):
        bundle = goal([subnet("vpc-1"), neighbor("nb-1", "vpc-1", C, "10.1.0.9", rev=rev),
                       port(f"p-{rev}", "vpc-1", A, "10.1.0.1", rev=1)], {A: ["subnet-vpc-1", "nb-1", f"p-{rev}"]})
        raw = bundle.SerializeToString()
        applier.apply_unicast(A, gs.GoalStateV2.FromString(raw), {**head, wire.SEQ: str(rev), wire.FOLLOW: follow}, raw)
        sizes.append(len(applier.tables["vpc-1"].known))
    assert applier.table(A, common.NEIGHBOR)["nb-1"].configuration.revision_number == 79
    assert max(sizes) <= 2 * 2 + 64 + 1 and sizes[-1] < max(sizes)  # two states held: the subnet and nb-1


def test_merge_keeps_the_later_state_and_joins_host_lists() -> None:
    p = bench_ports()[0]
    merged = merge([Input.of(port_message(p, HOSTS, revision=1)), Input.of(port_message(p, HOSTS, revision=2, op=common.UPDATE))])
    assert merged.states[(common.PORT, "p0")].configuration.revision_number == 2
    assert [rid for _, rid in merged.keys_of(A)] == ["p0", "dhcp-p0"]
    assert [rid for _, rid in merged.keys_of(B)] == ["nb-p0"]


async def test_a_batch_the_engine_cannot_publish_still_answers_every_caller() -> None:
    from dpm_server.service import Batcher

    eng, bus, _ = memory_engine()

    def broken(message: object) -> None:
        raise RuntimeError("broker gone")

    bus.append = broken  # type: ignore[assignment,method-assign]
    replies: list[gsp.GoalStateOperationReply] = []
    batcher = Batcher(eng, window=0.0, size=10)
    batcher.add(Input.of(port_message(bench_ports()[0], [A])), replies.append)
    assert len(replies) == 1
    assert {s.resource_id: s.operation_status for s in replies[0].operation_statuses} == {
        "p0": common.FAILURE, "dhcp-p0": common.FAILURE, "nb-p0": common.FAILURE}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_messages_over_the_limit_go_in_parts_and_agents_apply_them_whole(strategy: str) -> None:
    cluster = Cluster(strategy, sim=True)
    cluster.eng.publisher.max_message_bytes = 600  # a few resources per part
    answered: list[gsp.GoalStateOperationReply] = []
    caller = Caller()
    for i in range(8):
        cluster.eng.submit(caller.add_port(VPCS[i % 2], HOSTS[i % 3]), answered.append)
    cluster.settle()
    cluster.add_agent(A)  # its resync: the whole state, in parts
    cluster.settle()
    cluster.assert_converged()
    assert len(answered) == 8 and all(s.operation_status == common.SUCCESS for r in answered for s in r.operation_statuses)
    parts = [m for m in published(cluster.bus) if wire.PART in m.headers]
    assert parts and all(len(m.value) <= 600 for m in parts)
    assert any(m.headers.get(wire.FULL) == "1" for m in parts)


@pytest.mark.parametrize("sim", [False, True])
def test_a_lost_vpc_message_is_passed_by_the_resync_its_gap_asks_for_without_a_straggler_retry(sim: bool) -> None:
    """A VPC message lost before any agent read it shows as a gap at the next one; each host
    asks for its resync, and its ack of that full state reports the VPC cursor the resync
    set, so both requests complete with no retry by the DPM."""
    cluster, caller = Cluster("vpc-multicast", timeout=1000.0, retry_after=500.0, sim=sim), Caller()
    for host in HOSTS:
        cluster.eng.submit(caller.add_port("vpc-1", host), lambda r: None)
    cluster.settle()
    replies: list[gsp.GoalStateOperationReply] = []
    cluster.silent.update(cluster.agents)  # no agent reads while the next VPC message is published
    cluster.eng.submit(caller.add_port("vpc-1", A), replies.append)
    cluster.eng.publisher.sink.poll()
    lost = [m for (topic, _), log in cluster.bus.logs.items() if topic == cluster.topics.multicast for m in log
            if m.headers.get(wire.MSG_TYPE) == wire.MessageType.GOAL_STATE]
    newest = max(lost, key=lambda m: int(m.headers[wire.SEQ]))  # A's second port's neighbor, for B and C
    newest.headers = {wire.MSG_TYPE: wire.MessageType.MARKER}  # never read by an agent as a goal state
    cluster.silent.clear()
    cluster.eng.submit(caller.add_port("vpc-1", B), replies.append)
    cluster.settle()
    assert len(replies) == 2 and all(set(statuses(r).values()) == {common.SUCCESS} for r in replies)
    assert cluster.eng.tracker.pending == {} and cluster.eng.tracker.retries == 0 and cluster.eng.resyncs >= len(HOSTS)
    cluster.assert_converged()
