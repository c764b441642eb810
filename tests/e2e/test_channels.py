"""Channels per VPC through the real broker and real gRPC: dpm-server pushes small VPCs to
the agents' registered fast paths and large ones through Kafka (docs/internals.md,
"Channels per VPC")."""

from __future__ import annotations

import concurrent.futures
import functools
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from alcor.schema import common_pb2 as common
from gs_bench.cluster import Daemon, agent_status, dpm_status, host_snapshot, host_state, start_dpm, start_sim, wait_for
from gs_bench.topology import Port, port_message, subnet_message, tables_of
from gsmq import wire
from gsmq.broker import free_port
from gsmq.kafka import KafkaSettings
from gsmq.kafka_admin import admin_client, partition_count
from gsmq.kafka_transport import consume_batch
from gsmq.topics import Topics

from .test_pair import push

HOSTS = ["10.9.0.1", "10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5"]
BOUNDS = ["--path-upper-ports", "4", "--path-lower-ports", "2", "--path-settle-seconds", "0"]


def ports(vpc: str, hosts: list[str], count: int, first: int = 0) -> list[Port]:
    """`count` ports of `vpc`, spread over `hosts` in turn."""
    return [Port(f"{vpc}-p{i}", vpc, hosts[i % len(hosts)], f"10.0.{first}.{i + 10}", f"fa:16:3e:00:{first:02x}:{i:02x}")
            for i in range(count)]


def goal_records(bootstrap: str, topics: Topics) -> list[dict[str, str]]:
    """The headers of every goal-state record on the unicast and multicast topics."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "inspect", "enable.auto.commit": False})
    try:
        found: list[dict[str, str]] = []
        for topic in (topics.unicast, topics.multicast):
            parts = [TopicPartition(topic, p, 0) for p in range(partition_count(admin_client(KafkaSettings(bootstrap)), topic))]
            ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in parts}
            consumer.assign(parts)
            left = sum(ends.values())
            while left > 0:
                for m in consume_batch(consumer, 500, 0.2):
                    if m.error() is None:
                        left -= 1
                        headers = wire.decode_headers(m.headers())
                        if headers.get(wire.MSG_TYPE) == wire.MessageType.GOAL_STATE:
                            found.append(headers)
            consumer.unassign()
        return found
    finally:
        consumer.close()


def agrees(sim: Daemon, dpm: Daemon, host: str) -> bool:
    return tables_of(host_state(sim.status_port, host)) == tables_of(host_snapshot(dpm.status_port, host))


@pytest.fixture
def sim_args(request: pytest.FixtureRequest) -> list[str]:
    """The simulator's extra flags (none unless the test says)."""
    return list(getattr(request, "param", []))


@pytest.fixture
def region(tmp_path: Path, bootstrap: str, topics: Topics, sim_args: list[str],
           request: pytest.FixtureRequest) -> Iterator[tuple[Daemon, Daemon]]:
    """A DPM (`--path auto`, bounds 4 / 2 unless the test says) and one simulator of HOSTS whose fast path is registered."""
    extra = getattr(request, "param", BOUNDS)
    dpm = start_dpm(tmp_path, bootstrap, topics.prefix, "vpc-multicast", "--reply-timeout", "30", *extra)
    sim = start_sim(tmp_path, bootstrap, topics.prefix, dpm.status_port, len(HOSTS), HOSTS[0], "ch", "--grpc-port", str(free_port()),
                    *sim_args)
    try:
        wait_for(lambda: dpm_status(dpm.status_port).agents_registered == 1, "the simulator's fast path to be registered")
        yield dpm, sim
    finally:
        sim.stop()
        dpm.stop()


def test_a_small_vpc_goes_over_grpc_and_a_large_one_through_kafka(region: tuple[Daemon, Daemon], bootstrap: str, topics: Topics) -> None:
    dpm, sim = region
    small_hosts, large_hosts = HOSTS[:2], HOSTS[2:]
    messages = [subnet_message("small", small_hosts), subnet_message("large", large_hosts)]
    small, large = ports("small", small_hosts, 3), ports("large", large_hosts, 10, first=1)
    messages += [port_message(p, small_hosts) for p in small[:2]] + [port_message(p, large_hosts) for p in large[:9]]
    replies = push(dpm.status_port, messages)
    # and one more port each, now that both VPCs have members: their neighbors go to the VPC
    replies += push(dpm.status_port, [port_message(small[2], small_hosts), port_message(large[9], large_hosts)])
    assert all(s.operation_status == common.SUCCESS for r in replies for s in r.operation_statuses), replies
    for host in HOSTS:
        wait_for(functools.partial(agrees, sim, dpm, host), f"{host} to hold its desired state")
    records = goal_records(bootstrap, topics)
    assert not [h for h in records if h.get(wire.VPC_ID) == "small" or h.get(wire.HOST_ID) in small_hosts], "small VPC on Kafka"
    assert any(h.get(wire.VPC_ID) == "large" for h in records), "the large VPC's multicast is not on Kafka"
    assert {h.get(wire.HOST_ID) for h in records if wire.HOST_ID in h} == set(large_hosts)
    status = dpm_status(dpm.status_port)
    assert status.grpc_messages > 0 and status.path == "auto"
    assert agent_status(sim.status_port).bytes_pushed > 0


@pytest.mark.parametrize("sim_args", [[], ["--stream-per-host", "true"]], indirect=True, ids=["one-stream", "stream-per-host"])
def test_a_vpc_crossing_the_bounds_mid_stream_keeps_every_host_in_order(region: tuple[Daemon, Daemon], sim_args: list[str]) -> None:
    """Ports added past the upper bound (4: to Kafka), then deleted below the lower one (2:
    back to gRPC), each in a stream the DPM sends in batches while earlier ones are in
    flight, and switches at once (--path-settle-seconds 0); with the simulator's one stream
    for all its hosts, and with a stream per host."""
    dpm, sim = region
    hosts = HOSTS
    made = ports("vpc-x", hosts, 8)
    # the VPC starts on gRPC (2 ports), then its other ports come in one stream, batched
    replies = push(dpm.status_port, [subnet_message("vpc-x", hosts)] + [port_message(p, hosts) for p in made[:2]])
    replies += push(dpm.status_port, [port_message(p, hosts) for p in made[2:]])
    # the deletes in a stream of their own: the DPM would send a port's create and delete together, the create then OUT_OF_ORDER
    replies += push(dpm.status_port, [port_message(p, hosts, revision=2, op=common.DELETE) for p in made[:7]])
    statuses = [s.operation_status for r in replies for s in r.operation_statuses]
    assert common.OUT_OF_ORDER not in statuses and set(statuses) == {common.SUCCESS}, replies
    for host in hosts:
        wait_for(functools.partial(agrees, sim, dpm, host), f"{host} to hold its desired state")
    status = dpm_status(dpm.status_port)
    assert status.path_switches >= 2, status  # to Kafka and back
    # both channels carried goal states, and the VPC ended on gRPC
    assert status.vpcs_on_grpc == 1 and 0 < status.grpc_messages < status.messages_published, status
    assert status.grpc_streams == (len(hosts) if sim_args else 1), status
    assert agent_status(sim.status_port).out_of_order == 0


@pytest.mark.parametrize("region", [["--path", "grpc"]], indirect=True)
def test_hosts_of_an_agent_whose_fast_path_is_down_are_served_through_kafka(
    region: tuple[Daemon, Daemon], tmp_path: Path, bootstrap: str, topics: Topics
) -> None:
    """A second simulator registers an address nobody listens on: the DPM drops it and serves
    its hosts through Kafka, while the first simulator's hosts stay on gRPC."""
    dpm, sim = region
    others = ["10.9.1.1", "10.9.1.2"]
    dead = start_sim(tmp_path, bootstrap, topics.prefix, dpm.status_port, len(others), others[0], "dead",
                     "--grpc-port", str(free_port()), "--advertise-address", f"127.0.0.1:{free_port()}")
    try:
        wait_for(lambda: dpm_status(dpm.status_port).agents_dropped >= 1, "the unreachable fast path to be dropped")
        messages = [subnet_message("vpc-g", HOSTS), subnet_message("vpc-k", others)]
        messages += [port_message(p, HOSTS) for p in ports("vpc-g", HOSTS, 3)]
        messages += [port_message(p, others) for p in ports("vpc-k", others, 3, first=1)]
        replies = push(dpm.status_port, messages)
        assert all(s.operation_status == common.SUCCESS for r in replies for s in r.operation_statuses), replies
        for host in HOSTS:
            wait_for(functools.partial(agrees, sim, dpm, host), f"{host} to hold its desired state")
        for host in others:
            wait_for(functools.partial(agrees, dead, dpm, host), f"{host} to hold its desired state")
        records = goal_records(bootstrap, topics)
        assert {h.get(wire.HOST_ID) for h in records if wire.HOST_ID in h} == set(others)
        assert not any(h.get(wire.VPC_ID) == "vpc-g" for h in records)
        assert agent_status(dead.status_port).bytes_pushed == 0 and agent_status(sim.status_port).bytes_pushed > 0
    finally:
        dead.stop()


@pytest.mark.parametrize("region", [["--path", "grpc", "--link-timeout", "1", "--retry-after", "2"]], indirect=True)
def test_an_agent_that_stops_answering_is_dropped_and_its_hosts_resynced_through_kafka(
    region: tuple[Daemon, Daemon], bootstrap: str, topics: Topics
) -> None:
    """The simulator is frozen (SIGSTOP) while its fast path holds a pushed message: the DPM
    drops the link after --link-timeout, and the straggler resync goes through Kafka, where
    the thawed simulator reads it; the caller gets SUCCESS."""
    dpm, sim = region
    assert sim.process is not None
    first = push(dpm.status_port, [subnet_message("vpc-s", HOSTS)] + [port_message(p, HOSTS) for p in ports("vpc-s", HOSTS, 2)])
    assert all(s.operation_status == common.SUCCESS for r in first for s in r.operation_statuses)
    before = goal_records(bootstrap, topics)
    sim.process.send_signal(signal.SIGSTOP)
    try:
        late = port_message(ports("vpc-s", HOSTS, 3)[2], HOSTS)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answer = pool.submit(push, dpm.status_port, [late])
            wait_for(lambda: dpm_status(dpm.status_port).agents_dropped >= 1, "the frozen fast path to be dropped")
            sim.process.send_signal(signal.SIGCONT)
            [reply] = answer.result(timeout=60)
    finally:
        sim.process.send_signal(signal.SIGCONT)
    assert {s.operation_status for s in reply.operation_statuses} == {common.SUCCESS}, reply
    for host in HOSTS:
        wait_for(functools.partial(agrees, sim, dpm, host), f"{host} to hold its desired state")
    def fulls(records: list[dict[str, str]]) -> int:
        return sum(1 for h in records if h.get(wire.FULL) == "1")

    assert fulls(goal_records(bootstrap, topics)) > fulls(before), "no resync went through Kafka"
    assert dpm_status(dpm.status_port).retries >= 1
