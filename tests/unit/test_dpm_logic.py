"""DPM pure logic over the in-memory bus: snapshot views, planning per strategy, acks."""

from __future__ import annotations

from aca_agent.applier import Applier
from aca_agent.dataplane import MemoryDataPlane
from aca_agent.replies import reply_envelope
from bench.topology import Port, port_message, subnet_message, tables_of
from dpm_server.engine import Engine, merge
from dpm_server.publisher import Publisher
from gsmq import headers as h
from gsmq.topics import Topics
from gsmq.transport import MemoryBus
from proto import common_pb2 as common
from proto import goalstate_pb2 as gs
from proto import goalstateprovisioner_pb2 as gsp

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"
HOSTS = [A, B, C]


def ports(vpc: str = "vpc-1") -> list[Port]:
    return [Port(f"p{i}", vpc, host, f"10.1.0.{i}", f"fa:16:3e:00:00:{i:02x}") for i, host in enumerate(HOSTS)]


def engine(strategy: str = "vpc-multicast", timeout: float = 10.0) -> tuple[Engine, MemoryBus, Topics]:
    topics = Topics("u")
    bus = MemoryBus({topics.unicast: 4, topics.multicast: 4, topics.reply: 2})
    publisher = Publisher(bus.sink(), topics, strategy == "topic-per-host", 4, 2)
    publisher.place_markers()
    return Engine(strategy, publisher, retry_after=timeout / 2, timeout=timeout), bus, topics


def published(bus: MemoryBus, topic: str) -> list:
    return [m for (t, _), log in bus.logs.items() if t == topic for m in log if m.headers.get(h.MSG_TYPE) == "GoalStateV2"]


def test_resources_are_stored_once_and_views_follow_the_strategy() -> None:
    eng, bus, _ = engine()
    eng.submit(subnet_message("vpc-1", HOSTS), lambda r: None)
    for p in ports():
        eng.submit(port_message(p, HOSTS), lambda r: None)
    snap = eng.snapshot
    assert len(snap.resources) == 1 + 3 * 3  # subnet + (port, DHCP, neighbor) per port
    view = tables_of(snap.as_goal_state(A, "vpc-multicast"))
    assert view == {"SUBNET": {"subnet-vpc-1": 1}, "PORT": {"p0": 1}, "DHCP": {"dhcp-p0": 1}, "NEIGHBOR": {"nb-p1": 1, "nb-p2": 1}}
    assert snap.consistent() == []
    # the last port of A leaves vpc-1: A drops the VPC's subnet and neighbors
    eng.submit(port_message(ports()[0], HOSTS, revision=2, op=common.DELETE), lambda r: None)
    assert tables_of(snap.as_goal_state(A, "vpc-multicast")) == {}
    assert snap.members["vpc-1"] == {B, C}


def test_an_older_revision_never_replaces_a_newer_one() -> None:
    eng, _, _ = engine()
    p = ports()[0]
    eng.submit(port_message(p, [A], revision=5), lambda r: None)
    eng.submit(port_message(p, [A], revision=3), lambda r: None)
    assert eng.snapshot.resources[(common.PORT, "p0")].state.configuration.revision_number == 5


def test_invalid_input_publishes_nothing() -> None:
    eng, bus, topics = engine()
    goal = port_message(ports()[0], HOSTS)
    goal.host_resources[B].resources.add(type=common.DHCP, id="missing")
    replies: list[gsp.GoalStateOperationReply] = []
    eng.submit(goal, replies.append)
    assert [(s.resource_id, s.operation_status) for s in replies[0].operation_statuses] == [("missing", common.INVALID_ARG)]
    assert published(bus, topics.unicast) == published(bus, topics.multicast) == []


def test_multicast_sends_each_vpc_wide_state_once_unicast_only_once_per_host() -> None:
    counts = {}
    for strategy in ("vpc-multicast", "unicast-only"):
        eng, bus, topics = engine(strategy)
        eng.submit(subnet_message("vpc-1", HOSTS), lambda r: None)
        for p in ports():
            eng.submit(port_message(p, HOSTS), lambda r: None)
        extra = Port("p9", "vpc-1", A, "10.1.0.9", "fa:16:3e:00:00:09")
        before = len(published(bus, topics.unicast)), len(published(bus, topics.multicast))
        eng.submit(port_message(extra, HOSTS), lambda r: None)
        counts[strategy] = (len(published(bus, topics.unicast)) - before[0], len(published(bus, topics.multicast)) - before[1])
    assert counts == {"vpc-multicast": (1, 1), "unicast-only": (3, 0)}


def test_a_joining_host_gets_the_vpc_state_and_a_follow_header() -> None:
    eng, bus, topics = engine()
    eng.submit(subnet_message("vpc-1", HOSTS), lambda r: None)
    eng.submit(port_message(ports()[0], HOSTS), lambda r: None)
    eng.submit(port_message(ports()[1], HOSTS), lambda r: None)
    to_b = [m for m in published(bus, topics.unicast) if m.key == B and h.FOLLOW in m.headers]
    assert len(to_b) == 1
    vpc, _, spec = to_b[0].headers[h.FOLLOW].partition("=")
    partition, offset, seq = (int(x) for x in spec.split(":"))
    assert vpc == "vpc-1" and offset >= 1 and seq == eng.publisher.vpc_seq["vpc-1"]


def test_requests_complete_when_every_host_replied_through_real_appliers() -> None:
    eng, bus, topics = engine()
    agents = {host: Applier(MemoryDataPlane(), [host]) for host in HOSTS}
    replies: list[gsp.GoalStateOperationReply] = []
    eng.submit(subnet_message("vpc-1", HOSTS), replies.append)
    for p in ports():
        eng.submit(port_message(p, HOSTS), replies.append)
    assert replies == []  # nobody has applied anything yet
    for message in published(bus, topics.unicast):
        goal = gs.GoalStateV2.FromString(message.value)
        result = agents[message.key].apply_unicast(message.key, goal, message.headers)
        assert result is not None
        env = reply_envelope(topics.reply, result, message.headers)
        eng.tracker.on_reply(message.key, env.headers, gsp.GoalStateOperationReply.FromString(env.value))
    assert len(replies) < 4  # the multicast neighbors are still to be applied
    for message in published(bus, topics.multicast):
        goal = gs.GoalStateV2.FromString(message.value)
        for agent in agents.values():
            for result in agent.apply_multicast(message.key, goal, message.headers, message.partition, message.offset):
                env = reply_envelope(topics.reply, result, message.headers)
                eng.tracker.on_reply(result.host, env.headers, gsp.GoalStateOperationReply.FromString(env.value))
    assert len(replies) == 4
    assert all(s.operation_status == common.SUCCESS for r in replies for s in r.operation_statuses)


def test_a_silent_host_is_retried_then_reported() -> None:
    eng, bus, topics = engine(timeout=10.0)
    replies: list[gsp.GoalStateOperationReply] = []
    eng.submit(port_message(ports()[0], [A]), replies.append)
    start = next(iter(eng.tracker.pending.values())).started
    eng.tracker.tick(start + 6)  # past retry_after: a second copy with a new sequence
    seqs = [m.headers[h.SEQ] for m in published(bus, topics.unicast) if m.key == A]
    assert seqs == ["1", "2"] and replies == []
    eng.tracker.tick(start + 11)  # past the timeout
    statuses = {s.resource_id: s.operation_status for s in replies[0].operation_statuses}
    # nb-p0 is listed for nobody (A is its only host), so nobody failed it
    assert statuses == {"p0": common.FAILURE, "dhcp-p0": common.FAILURE, "nb-p0": common.SUCCESS, f"host:{A}": common.FAILURE}


def test_merge_keeps_the_later_state_and_joins_host_lists() -> None:
    p = ports()[0]
    merged = merge([port_message(p, HOSTS, revision=1), port_message(p, HOSTS, revision=2, op=common.UPDATE)])
    assert merged.port_states["p0"].configuration.revision_number == 2
    assert [r.id for r in merged.host_resources[A].resources] == ["p0", "dhcp-p0"]
    assert [r.id for r in merged.host_resources[B].resources] == ["nb-p0"]
