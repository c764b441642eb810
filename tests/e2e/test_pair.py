"""The agent pair end to end: dpm-server and aca-agent processes through the real broker."""

from __future__ import annotations

import functools
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from confluent_kafka import Consumer, TopicPartition

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp
from alcor.schema import goalstateprovisioner_pb2_grpc as gsp_grpc
from gs_bench.cluster import Daemon, host_snapshot, host_state, start_agent, start_dpm, wait_for
from gs_bench.topology import expected_tables, port_message, ports_of, subnet_message, tables_of
from gsmq.kafka import KafkaSettings
from gsmq.kafka_admin import partition_count
from gsmq.kafka_transport import consume_batch
from gsmq.topics import Topics

HOSTS = ["192.168.7.1", "192.168.7.2", "192.168.7.3"]
VPC_HOSTS = {"vpc-a": HOSTS, "vpc-b": HOSTS[:2]}
LAYOUT = {"vpc-a": {HOSTS[0]: 2, HOSTS[1]: 1, HOSTS[2]: 2}, "vpc-b": {HOSTS[0]: 1, HOSTS[1]: 2}}


OnReply = Callable[[int, gsp.GoalStateOperationReply], None]


def push(dpm_port: int, messages: list[gs.GoalStateV2], on_reply: OnReply | None = None) -> list[gsp.GoalStateOperationReply]:
    """Stream `messages` to the DPM; return its replies (one per message, in order)."""
    with grpc.insecure_channel(f"127.0.0.1:{dpm_port}") as channel:
        stub = gsp_grpc.GoalStateProvisionerStub(channel)
        replies: list[gsp.GoalStateOperationReply] = []
        for reply in stub.PushGoalStatesStream(iter(messages), timeout=600):
            replies.append(reply)
            if on_reply is not None:
                on_reply(len(replies), reply)
        return replies


def agrees(agent: Daemon, dpm: Daemon, host: str) -> bool:
    """The agent holds what the DPM's snapshot says `host` should."""
    return tables_of(host_state(agent.status_port, host)) == tables_of(host_snapshot(dpm.status_port, host))


def topology_messages() -> list[gs.GoalStateV2]:
    messages = [subnet_message(vpc, hosts) for vpc, hosts in VPC_HOSTS.items()]
    messages += [port_message(port, VPC_HOSTS[port.vpc]) for port in ports_of(LAYOUT)]
    return messages


@pytest.fixture
def cluster(tmp_path: Path, bootstrap: str, topics: Topics, request: pytest.FixtureRequest) -> Iterator[tuple[Daemon, dict[str, Daemon]]]:
    strategy = getattr(request, "param", "vpc-multicast")
    dpm = start_dpm(tmp_path, bootstrap, topics.prefix, strategy, "--reply-timeout", "30")
    channel = ["--channel", "topic-per-host"] if strategy == "topic-per-host" else []
    agents = {host: start_agent(tmp_path, bootstrap, topics.prefix, dpm.status_port, host, *channel) for host in HOSTS}
    yield dpm, agents
    for daemon in [*agents.values(), dpm]:
        daemon.stop()


def count_messages(kafka: KafkaSettings, topic: str) -> list[tuple[str, gs.GoalStateV2]]:
    """Every GoalStateV2 on `topic` as (key, message), read with a plain consumer."""
    from confluent_kafka.admin import AdminClient

    n = partition_count(AdminClient(kafka.admin()), topic)
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "e2e-reader", "enable.auto.commit": False})
    parts = [TopicPartition(topic, p, 0) for p in range(n)]
    # The daemons are done (every input answered): read each partition to the end it has now.
    left = {p.partition: end for p in parts if (end := consumer.get_watermark_offsets(p, timeout=10)[1]) > 0}
    consumer.assign(parts)
    out: list[tuple[str, gs.GoalStateV2]] = []
    deadline = time.monotonic() + 60
    while left:
        assert time.monotonic() < deadline, f"{topic}: partitions {sorted(left)} not read to their end"
        for msg in consume_batch(consumer, 1000, 0.2):
            part, offset = msg.partition(), msg.offset()
            if part in left and offset is not None and offset + 1 >= left[part]:
                del left[part]
            if msg.error() is None and dict(msg.headers() or []).get("gs-type") == b"GoalStateV2":
                goal = gs.GoalStateV2()
                goal.ParseFromString(msg.value() or b"")
                out.append(((msg.key() or b"").decode(), goal))
    consumer.close()
    return out


@pytest.mark.parametrize("cluster", ["vpc-multicast", "unicast-only", "topic-per-host"], indirect=True)
def test_three_hosts_two_vpcs_hold_exactly_their_host_resources(
    cluster: tuple[Daemon, dict[str, Daemon]], kafka: KafkaSettings, topics: Topics, request: pytest.FixtureRequest
) -> None:
    dpm, agents = cluster
    messages = topology_messages()
    # Then one more port per VPC, sent once every host of the VPC has ports there.
    later = [port_message(p, VPC_HOSTS[p.vpc]) for p in ports_of({vpc: {hosts[0]: 1} for vpc, hosts in VPC_HOSTS.items()}, first=100)]
    seen_at_reply: dict[str, dict[str, dict[str, int]]] = {}

    def snapshot_on_last(count: int, reply: gsp.GoalStateOperationReply) -> None:
        if count == len(later):  # the caller's last reply: everything must be applied already
            seen_at_reply.update({h: tables_of(host_state(a.status_port, h)) for h, a in agents.items()})

    replies = push(dpm.status_port, messages) + push(dpm.status_port, later, snapshot_on_last)
    messages += later
    assert len(replies) == len(messages)
    for reply in replies:
        assert reply.operation_statuses, "a reply without statuses"
        assert all(s.operation_status == common.SUCCESS for s in reply.operation_statuses), reply
    for host in HOSTS:
        assert seen_at_reply[host] == expected_tables(messages, host), host
        assert tables_of(host_snapshot(dpm.status_port, host)) == expected_tables(messages, host), host

    strategy = request.node.callspec.params["cluster"]
    multicast = count_messages(kafka, topics.multicast)
    if strategy == "vpc-multicast":
        # A VPC-wide state crosses the multicast topic at most once, keyed by its VPC; once
        # every host of the VPC has ports there (the `later` ports), it goes there only,
        # instead of once per host.
        neighbor_copies = [nid for key, goal in multicast for nid in goal.neighbor_states]
        assert len(neighbor_copies) == len(set(neighbor_copies)) > 0
        assert all(key in VPC_HOSTS for key, _ in multicast)
        unicast_copies = [nid for _, goal in count_messages(kafka, topics.unicast) for nid in goal.neighbor_states]
        for goal in later:
            (neighbor,) = goal.neighbor_states
            assert (neighbor_copies.count(neighbor), unicast_copies.count(neighbor)) == (1, 0), neighbor
    else:
        assert multicast == []
        channel = topics.unicast if strategy == "unicast-only" else None
        copies = []
        shared = count_messages(kafka, channel) if channel else []
        for host in HOSTS:
            on_topic = shared or count_messages(kafka, topics.host(host))
            copies += [(host, nid) for key, goal in on_topic if key == host for nid in goal.neighbor_states]
        # Each neighbor reached every other host of its VPC in that host's own message.
        expected = {(h, nid) for goal in messages for h, res in goal.host_resources.items() for r in res.resources
                    for nid in [r.id] if r.type == common.NEIGHBOR}
        assert set(copies) == expected


def test_agent_killed_mid_stream_converges_to_the_snapshot(
    cluster: tuple[Daemon, dict[str, Daemon]], bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    dpm, agents = cluster
    victim = HOSTS[1]
    ports = ports_of({"vpc-a": dict.fromkeys(HOSTS, 100), "vpc-b": dict.fromkeys(HOSTS[:2], 50)})
    messages = [subnet_message(vpc, hosts) for vpc, hosts in VPC_HOSTS.items()]
    messages += [port_message(p, VPC_HOSTS[p.vpc]) for p in ports]  # 400 creates
    messages += [port_message(p, VPC_HOSTS[p.vpc], revision=2, op=common.UPDATE) for p in ports]  # 400 updates
    # 200 deletes, every other port: each host keeps ports in each of its VPCs.
    messages += [port_message(p, VPC_HOSTS[p.vpc], revision=3, op=common.DELETE) for p in ports[::2]]
    assert len(messages) - 2 == 1000

    def kill_in_the_middle(count: int, reply: gsp.GoalStateOperationReply) -> None:
        if count == 300:
            agents[victim].signal(signal.SIGKILL)
            agents[victim] = start_agent(tmp_path, bootstrap, topics.prefix, dpm.status_port, victim)

    push(dpm.status_port, messages, kill_in_the_middle)
    for host in HOSTS:
        wait_for(functools.partial(agrees, agents[host], dpm, host), f"{host} to converge to the DPM snapshot")
        assert agrees(agents[host], dpm, host)
    # The snapshot itself is what the caller asked for.
    survivors = {h: expected_tables(messages, h) for h in HOSTS}
    for host in HOSTS:
        assert tables_of(host_snapshot(dpm.status_port, host)) == survivors[host]


def test_both_daemons_stop_cleanly_on_sigterm(cluster: tuple[Daemon, dict[str, Daemon]]) -> None:
    dpm, agents = cluster
    push(dpm.status_port, topology_messages()[:3])
    for agent in agents.values():
        assert agent.signal(signal.SIGTERM) == 0, agent.logs()
    assert dpm.signal(signal.SIGTERM) == 0, dpm.logs()
