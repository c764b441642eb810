"""Apache Kafka faults under both daemons: a broker restart on its data folder, kill -9 of one broker of three."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp
from alcor.schema import goalstateprovisioner_pb2_grpc as gsp_grpc
from gs_bench.cluster import (
    Daemon,
    host_snapshot,
    host_state,
    start_agent,
    start_dpm,
    start_sim,
    wait_for,
)
from gs_bench.topology import (
    expected_tables,
    port_message,
    ports_of,
    subnet_message,
    tables_of,
)
from gsmq.broker import kafka_unavailable
from gsmq.kafka_admin import partition_count
from gsmq.kraft import KafkaCluster, start_kafka
from gsmq.topics import Topics

pytestmark = pytest.mark.skipif(kafka_unavailable() is not None, reason=f"needs Apache Kafka: {kafka_unavailable()}")

# The group coordinator answers these while it reads the offsets back after a restart.
LOADING = {KafkaError._WAIT_COORD, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
           KafkaError.NOT_COORDINATOR}
HOSTS = ["192.168.8.1", "192.168.8.2", "192.168.8.3"]
VPC_HOSTS = {"vpc-a": HOSTS, "vpc-b": HOSTS[:2]}


def push(dpm_port: int, messages: list[gs.GoalStateV2], on_reply: Callable[[int], None] | None = None) -> list[gsp.GoalStateOperationReply]:
    """Stream `messages` to the DPM; its replies (one per message, in order)."""
    with grpc.insecure_channel(f"127.0.0.1:{dpm_port}") as channel:
        replies = []
        for reply in gsp_grpc.GoalStateProvisionerStub(channel).PushGoalStatesStream(iter(messages), timeout=600):
            replies.append(reply)
            if on_reply is not None:
                on_reply(len(replies))
        return replies


def all_succeeded(replies: list[gsp.GoalStateOperationReply]) -> bool:
    return all(r.operation_statuses and all(s.operation_status == common.SUCCESS for s in r.operation_statuses) for r in replies)


def topology_messages() -> list[gs.GoalStateV2]:
    layout = {"vpc-a": {HOSTS[0]: 2, HOSTS[1]: 1, HOSTS[2]: 2}, "vpc-b": {HOSTS[0]: 1, HOSTS[1]: 2}}
    return [subnet_message(vpc, hosts) for vpc, hosts in VPC_HOSTS.items()] + [port_message(p, VPC_HOSTS[p.vpc]) for p in ports_of(layout)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kafka-data")


@pytest.fixture(scope="module")
def kept(data_dir: Path) -> Iterator[KafkaCluster]:
    """One Apache Kafka node whose log folder, port and cluster id live in `data_dir`."""
    broker = start_kafka(1, data_dir=data_dir)
    yield broker
    broker.stop()


def committed(bootstrap: str, group: str, topics: list[str]) -> dict[tuple[str, int], int]:
    """The group's committed offsets on `topics`, by (topic, partition), read by a consumer that joins nothing.
    (Not AdminClient.list_consumer_group_offsets: librdkafka 2.x crashes on its answer while the
    coordinator still loads the offsets.)"""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tps = [TopicPartition(t, p) for t in topics for p in range(partition_count(admin, t))]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        for _ in range(300):
            try:
                return {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(tps, timeout=10) if tp.offset >= 0}
            except KafkaException as exc:
                if exc.args[0].code() not in LOADING:
                    raise
                time.sleep(0.1)
    finally:
        consumer.close()
    raise AssertionError(f"the offsets of {group} never became readable")


def test_a_broker_restart_on_its_data_dir_keeps_topics_and_offsets_and_the_daemons_go_on(
    kept: KafkaCluster, data_dir: Path, tmp_path: Path, topics: Topics
) -> None:
    dpm = start_dpm(tmp_path, kept.bootstrap, topics.prefix, "vpc-multicast", "--reply-timeout", "120")
    agents = {host: start_agent(tmp_path, kept.bootstrap, topics.prefix, dpm.status_port, host) for host in HOSTS}
    try:
        first = topology_messages()
        assert all_succeeded(push(dpm.status_port, first))
        admin = AdminClient({"bootstrap.servers": kept.bootstrap})
        groups = sorted(g.group_id for g in admin.list_consumer_groups().result().valid)
        offsets = {g: committed(kept.bootstrap, g, [topics.unicast]) for g in groups}
        assert any(offsets.values()), f"no committed offsets among {groups}"
        partitions = {t: partition_count(admin, t) for t in (topics.unicast, topics.multicast, topics.reply)}

        kept.stop_node(0)
        again = start_kafka(1, port=int(kept.bootstrap.rsplit(":", 1)[1]), data_dir=data_dir)
        kept.nodes = again.nodes  # the module fixture stops the restarted node
        assert again.bootstrap == kept.bootstrap

        admin = AdminClient({"bootstrap.servers": again.bootstrap})
        assert {t: partition_count(admin, t) for t in partitions} == partitions
        for group, before in offsets.items():
            after = committed(again.bootstrap, group, [topics.unicast])
            assert all(after.get(tp, -1) >= off for tp, off in before.items()), (group, before, after)

        # The same daemon processes, never restarted, carry the next inputs.
        later = [port_message(p, VPC_HOSTS[p.vpc]) for p in ports_of({vpc: {hosts[0]: 1} for vpc, hosts in VPC_HOSTS.items()}, first=100)]
        replies = push(dpm.status_port, later)
        assert len(replies) == len(later)
        assert all_succeeded(replies)
        for host, agent in agents.items():
            assert agent.process is not None and agent.process.poll() is None, agent.logs()
            want = expected_tables(first + later, host)
            wait_for(lambda a=agent, h=host, w=want: tables_of(host_state(a.status_port, h)) == w, f"{host} to apply")  # type: ignore[misc]
        assert dpm.process is not None and dpm.process.poll() is None, dpm.logs()
    finally:
        for daemon in [*agents.values(), dpm]:
            daemon.stop()


@pytest.fixture(scope="module")
def three() -> Iterator[KafkaCluster]:
    """Three Apache Kafka nodes: replication factor 3, min.insync.replicas=2."""
    cluster = start_kafka(3)
    yield cluster
    cluster.stop()


def test_three_brokers_give_the_projects_topics_three_replicas_and_two_in_sync(three: KafkaCluster, tmp_path: Path, topics: Topics) -> None:
    dpm = start_dpm(tmp_path, three.bootstrap, topics.prefix)
    try:
        admin = AdminClient({"bootstrap.servers": three.bootstrap})
        meta = admin.list_topics(timeout=10).topics
        for name in (topics.unicast, topics.multicast, topics.reply):
            assert all(len(p.replicas) == 3 for p in meta[name].partitions.values()), name
        from confluent_kafka.admin import ConfigResource, ResourceType

        resource = ConfigResource(ResourceType.TOPIC, topics.unicast)
        config = admin.describe_configs([resource])[resource].result()
        assert config["min.insync.replicas"].value == "2"
    finally:
        dpm.stop()


def test_kill_9_of_one_broker_mid_storm_loses_nothing(three: KafkaCluster, tmp_path: Path, topics: Topics) -> None:
    hosts = [f"10.9.0.{i}" for i in range(1, 21)]
    dpm = start_dpm(tmp_path, three.bootstrap, topics.prefix, "vpc-multicast", "--reply-timeout", "120")
    sim = start_sim(tmp_path, three.bootstrap, topics.prefix, dpm.status_port, len(hosts), hosts[0], "storm")
    daemons: list[Daemon] = [sim, dpm]
    vpcs = {"vpc-x": hosts[:10], "vpc-y": hosts[10:]}
    messages = [subnet_message(vpc, members) for vpc, members in vpcs.items()]
    messages += [port_message(p, vpcs[p.vpc]) for p in ports_of({vpc: dict.fromkeys(members, 10) for vpc, members in vpcs.items()})]
    killed = threading.Event()
    victim = 1  # not the first bootstrap address, so clients must also find the others

    def kill_in_the_middle(count: int) -> None:
        if count == len(messages) // 3 and not killed.is_set():
            three.kill(victim)
            killed.set()

    try:
        replies = push(dpm.status_port, messages, kill_in_the_middle)
        assert killed.is_set()
        assert len(replies) == len(messages)  # every caller answered
        assert all_succeeded(replies)
        for host in hosts:
            assert tables_of(host_snapshot(dpm.status_port, host)) == expected_tables(messages, host), host
        try:
            wait_for(lambda: not diverged(sim.status_port, messages, hosts), "every simulated host to converge")
        except AssertionError:
            raise AssertionError(f"hosts that did not converge: {diverged(sim.status_port, messages, hosts)}") from None
    finally:
        for daemon in daemons:
            daemon.stop()


def diverged(status_port: int, messages: list[gs.GoalStateV2], hosts: list[str]) -> dict[str, dict[str, object]]:
    """Per host whose simulated tables differ from what `messages` give it: what is missing, extra or at another revision."""
    out: dict[str, dict[str, object]] = {}
    for host in hosts:
        got, want = tables_of(host_state(status_port, host)), expected_tables(messages, host)
        if got == want:
            continue
        rows = {(t, i): r for t, ids in got.items() for i, r in ids.items()}
        wanted = {(t, i): r for t, ids in want.items() for i, r in ids.items()}
        out[host] = {"missing": sorted(wanted.keys() - rows.keys()), "extra": sorted(rows.keys() - wanted.keys()),
                     "revision": sorted((k, rows[k], wanted[k]) for k in rows.keys() & wanted.keys() if rows[k] != wanted[k])}
    return out
