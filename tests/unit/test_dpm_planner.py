"""What goes on which channel, per strategy, through the engine onto a MemoryBus:
topics, keys, partitions, headers, follow offsets, resync (no Kafka)."""

from __future__ import annotations

import pytest

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from dpm_server.engine import Engine
from dpm_server.testing import goal, keys, memory_engine, port_goal, published, security_group, subnet_goal
from gsmq import wire
from gsmq.partition import partition_for
from gsmq.topics import Topics
from gsmq.transport import Envelope, MemoryBus

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"
HOSTS = [A, B, C]


def decode(message: Envelope) -> gs.GoalStateV2:
    return gs.GoalStateV2.FromString(message.value)


def topology(strategy: str) -> tuple[Engine, MemoryBus, Topics]:
    """vpc-1 on A, B, C (one port each) and the engine that built it; deliveries served."""
    eng, bus, topics = memory_engine(strategy)
    eng.submit(subnet_goal("vpc-1", HOSTS), lambda r: None)
    for i, host in enumerate(HOSTS):
        eng.submit(port_goal(f"p{i}", "vpc-1", host, f"10.1.0.{i}", HOSTS), lambda r: None)
        eng.publisher.sink.poll()  # deliveries: the publisher learns the offsets
    return eng, bus, topics


def mark(bus: MemoryBus) -> set[tuple[str, int, int]]:
    """Where every message published so far sits (to tell the next ones apart)."""
    return {(m.topic, m.partition, m.offset) for m in published(bus)}


def since(bus: MemoryBus, seen: set[tuple[str, int, int]]) -> list[Envelope]:
    return [m for m in published(bus) if (m.topic, m.partition, m.offset) not in seen]


def test_multicast_publishes_each_vpc_wide_state_once_per_vpc() -> None:
    eng, bus, topics = topology("vpc-multicast")
    seen = mark(bus)
    # a security group for both VPCs' hosts, and a new port on A (its neighbor is for B and C)
    change = goal([security_group("sg-1", "vpc-1"), security_group("sg-2", "vpc-2")], {host: ["sg-1"] for host in HOSTS})
    change.MergeFrom(port_goal("p9", "vpc-1", A, "10.1.0.9", HOSTS))
    eng.submit(change, lambda r: None)
    fresh = since(bus, seen)
    multicast = [m for m in fresh if m.topic == topics.multicast]
    unicast = [m for m in fresh if m.topic == topics.unicast]
    assert [(m.key, m.partition) for m in multicast] == [("vpc-1", partition_for("vpc-1", 4))]
    assert keys(decode(multicast[0])) == {(common.SECURITYGROUP, "sg-1"), (common.NEIGHBOR, "nb-p9")}
    assert not decode(multicast[0]).host_resources and multicast[0].headers[wire.VPC_ID] == "vpc-1"
    # host-specific states go to their host only; sg-2's VPC has no member: it stays in the snapshot
    assert [(m.key, m.partition) for m in unicast] == [(A, partition_for(A, 4))]
    assert keys(decode(unicast[0])) == {(common.PORT, "p9"), (common.DHCP, "dhcp-p9")}
    assert (common.SECURITYGROUP, "sg-2") in eng.snapshot.resources


def test_unicast_only_gives_each_host_its_own_copy() -> None:
    eng, bus, topics = topology("unicast-only")
    seen = mark(bus)
    eng.submit(port_goal("p9", "vpc-1", A, "10.1.0.9", HOSTS), lambda r: None)
    fresh = since(bus, seen)
    assert all(m.topic == topics.unicast for m in published(bus))
    by_host = {m.key: decode(m) for m in fresh}
    assert len(fresh) == 3 and set(by_host) == set(HOSTS)
    assert keys(by_host[A]) == {(common.PORT, "p9"), (common.DHCP, "dhcp-p9")}
    assert keys(by_host[B]) == keys(by_host[C]) == {(common.NEIGHBOR, "nb-p9")}
    for m in fresh:  # one entry in host_resources: this host, listing everything in the message
        assert list(decode(m).host_resources) == [m.key] and m.partition == partition_for(m.key, 4)
        assert {(r.type, r.id) for r in decode(m).host_resources[m.key].resources} == keys(decode(m))


def test_topic_per_host_publishes_to_each_hosts_topic() -> None:
    eng, bus, topics = memory_engine("topic-per-host")
    created: list[str] = []
    eng.publisher.create_topics = created.extend
    eng.submit(subnet_goal("vpc-1", HOSTS), lambda r: None)
    eng.submit(port_goal("p0", "vpc-1", A, "10.1.0.0", HOSTS), lambda r: None)
    messages = published(bus)
    assert {m.topic for m in messages} == {topics.host(host) for host in HOSTS}
    assert all(m.topic == topics.host(m.key) for m in messages)
    assert sorted(created) == sorted(topics.host(host) for host in HOSTS)  # each created once
    assert published(bus, topics.unicast) == published(bus, topics.multicast) == []


def test_headers_and_sequences() -> None:
    eng, bus, topics = topology("vpc-multicast")
    unicast = [m for m in published(bus) if m.topic == topics.unicast]
    for host in HOSTS:
        mine = [m for m in unicast if m.key == host]
        assert [m.headers[wire.SEQ] for m in mine] == [str(i) for i in range(1, len(mine) + 1)]
        for m in mine:
            assert m.headers[wire.HOST_ID] == host and m.headers[wire.EPOCH] == eng.publisher.epoch
            assert m.headers[wire.MSG_TYPE] == "GoalStateV2" and int(m.headers[wire.SENT_NS]) > 0
            assert m.headers[wire.REQUEST_ID].startswith(eng.publisher.epoch)
    multicast = [m for m in published(bus) if m.topic == topics.multicast]
    assert [m.headers[wire.SEQ] for m in multicast] == ["1", "2"]  # B's and C's neighbors reached the members
    assert all(wire.HOST_ID not in m.headers and m.headers[wire.VPC_ID] == "vpc-1" for m in multicast)


def test_start_up_markers_on_every_multicast_and_reply_partition() -> None:
    eng, bus, topics = memory_engine()
    markers = [(t, p) for (t, p), log in bus.logs.items() for m in log if m.headers.get(wire.MSG_TYPE) == "Marker"]
    assert sorted(markers) == sorted([(topics.multicast, p) for p in range(4)] + [(topics.reply, p) for p in range(2)])
    assert eng.publisher.delivered == dict.fromkeys(markers, 0)


def test_a_joining_host_gets_the_vpc_state_and_where_to_follow_it() -> None:
    eng, bus, topics = topology("vpc-multicast")
    part = partition_for("vpc-1", 4)
    last = max(m.offset for m in bus.logs[(topics.multicast, part)])
    eng.submit(port_goal("p9", "vpc-1", "10.0.0.9", "10.1.0.9", [*HOSTS, "10.0.0.9"]), lambda r: None)
    (joined,) = [m for m in published(bus) if m.key == "10.0.0.9"]
    assert joined.headers[wire.FOLLOW] == f"vpc-1={part}:{last + 1}:{eng.publisher.vpc_seq['vpc-1']}"
    # its own port + DHCP, and every current VPC-wide state of vpc-1 but its own neighbor
    assert keys(decode(joined)) == {(common.PORT, "p9"), (common.DHCP, "dhcp-p9"), (common.SUBNET, "subnet-vpc-1"),
                                    (common.NEIGHBOR, "nb-p0"), (common.NEIGHBOR, "nb-p1"), (common.NEIGHBOR, "nb-p2")}
    # the members get the newcomer's neighbor on the multicast, which the follow sequence already covers
    latest = bus.logs[(topics.multicast, part)][-1]
    assert keys(decode(latest)) == {(common.NEIGHBOR, "nb-p9")}
    assert latest.headers[wire.SEQ] == str(eng.publisher.vpc_seq["vpc-1"]) and latest.offset >= last + 1


def test_the_first_host_of_a_vpc_gets_everything_by_unicast() -> None:
    eng, bus, topics = memory_engine()
    eng.submit(subnet_goal("vpc-1", [A]), lambda r: None)
    eng.submit(port_goal("p0", "vpc-1", A, "10.1.0.0", [A]), lambda r: None)
    assert published(bus, topics.multicast) == []
    subnet_msg, port_msg = published(bus, topics.unicast)
    assert wire.FOLLOW not in subnet_msg.headers  # no port there yet: nothing to follow
    assert port_msg.headers[wire.FOLLOW] == f"vpc-1={partition_for('vpc-1', 4)}:1:0"
    assert (common.SUBNET, "subnet-vpc-1") in keys(decode(port_msg))


@pytest.mark.parametrize("strategy", wire.STRATEGIES)
def test_resync_is_the_hosts_whole_view_marked_full(strategy: str) -> None:
    eng, bus, _topics = topology(strategy)
    seen = mark(bus)
    eng.resync(B)
    (full,) = since(bus, seen)
    assert full.headers[wire.FULL] == "1" and full.key == B
    assert keys(decode(full)) == set(eng.snapshot.view(B, strategy)) == keys(eng.host_goal_state(B))
    if strategy == "vpc-multicast":
        assert full.headers[wire.FOLLOW].startswith(f"vpc-1={partition_for('vpc-1', 4)}:")
    else:
        assert wire.FOLLOW not in full.headers


def test_delete_of_the_last_port_tells_the_host_and_stops_waiting_for_its_multicast() -> None:
    eng, bus, topics = topology("vpc-multicast")
    seen = mark(bus)
    eng.submit(port_goal("p0", "vpc-1", A, "10.1.0.0", HOSTS, rev=2, op=common.DELETE), lambda r: None)
    assert {(m.topic, m.key) for m in since(bus, seen)} == {(topics.unicast, A), (topics.multicast, "vpc-1")}
    request = list(eng.tracker.pending.values())[-1]
    assert eng.tracker.waiting(request) == {A, B, C}  # A acks its unicast; B and C the multicast
    assert set(request.unicast) == {A} and [f.hosts for f in request.fanouts] == [{B, C}]
    assert eng.snapshot.host_vpcs(A) == set()


def test_messages_and_bytes_are_counted_per_channel() -> None:
    eng, bus, topics = topology("vpc-multicast")
    c = eng.publisher.counters
    multicast = [m for m in published(bus) if m.topic == topics.multicast]
    unicast = [m for m in published(bus) if m.topic == topics.unicast]
    assert (c.multicast_messages, c.unicast_messages) == (len(multicast), len(unicast))
    assert c.multicast_bytes == sum(len(m.value) for m in multicast) > 0
    assert c.unicast_bytes == sum(len(m.value) for m in unicast) > 0
    assert eng.counts()["bytes_published"] == c.multicast_bytes + c.unicast_bytes
