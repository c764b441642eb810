"""aca-agent through the real broker: the daemon's `serve()` in this process (its status
service tells what the data plane holds), raw confluent-kafka producers on the other
side, and the console script as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from aca_agent.main import parse_config, serve
from aca_agent.testing import goal_state, listed, neighbor, port, security_group, subnet
from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp
from alcor.schema import goalstateprovisioner_pb2_grpc as gsp_grpc
from dpm_server.acks import decode_acks
from dpm_server.links import METHOD
from gsmq import wire
from gsmq.broker import free_port
from gsmq.kafka import KafkaSettings
from gsmq.kafka_admin import ensure_topics
from gsmq.partition import partition_for
from gsmq.topics import Topics
from gsmq.transport import Envelope
from gsmq.v1 import ack_pb2, status_pb2, status_pb2_grpc

DEADLINE = 60.0  # generous: a condition that is not met by then is a failure, not a timing
H = "10.7.0.1"


def create_topics(kafka: KafkaSettings, topics: Topics) -> None:
    ensure_topics(AdminClient(kafka.admin()), topics.default_partitions())


def raw_producer(bootstrap: str) -> Producer:
    """A plain librdkafka producer: nothing of this project on the sending side."""
    return Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 0})


def produce(producer: Producer, topic: str, key: str, value: bytes, **headers: str) -> None:
    producer.produce(topic, value, key.encode(), headers=[(k.replace("_", "-"), v.encode()) for k, v in headers.items()])
    assert producer.flush(10) == 0


class Reader:
    """Reads every partition of a topic from the beginning (manual assignment)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False})
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        self.messages: list[tuple[dict[str, str], bytes]] = []

    async def until(self, condition: Callable[[list[tuple[dict[str, str], bytes]]], bool]) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + DEADLINE
        while not condition(self.messages):
            assert time.monotonic() < deadline, f"condition not met; read {len(self.messages)} messages"
            for msg in await asyncio.to_thread(self.consumer.consume, 100, 0.1):
                if msg.error() is None:
                    self.messages.append((wire.decode_headers(msg.headers()), msg.value() or b""))
        return self.messages

    def close(self) -> None:
        self.consumer.close()


Records = list[tuple[dict[str, str], bytes]]


def acks(messages: Records, host: str | None = None) -> list[ack_pb2.Ack]:
    """The acks among records read from the reply topic (of `host` only, when given): an
    agent's ack record has no headers."""
    out = [ack_pb2.Ack.FromString(v) for hd, v in messages if not hd]
    return [a for a in out if host is None or a.host_id == host]


def applied(messages: Records, host: str) -> int:
    """How many messages the acks of `host` cover."""
    return sum(a.timing.messages for a in acks(messages, host))


def watermark(messages: Records, host: str) -> int:
    return max((a.unicast_seq for a in acks(messages, host)), default=0)


def failures(messages: Records, host: str | None = None) -> dict[tuple[int, str], int]:
    """(gs-seq of the message, resource id) -> status, for every failure acked."""
    return {(f.seq, f.resource_id): f.status for a in acks(messages, host) for f in a.failures}


def statuses_of(reply: gsp.GoalStateOperationReply) -> dict[str, int]:
    return {s.resource_id: s.operation_status for s in reply.operation_statuses}


class AgentHandle:
    def __init__(self, status: status_pb2_grpc.AgentStatusServiceStub, grpc_port: int) -> None:
        self.status = status
        self.grpc_port = grpc_port

    async def host_state(self, host: str) -> gs.GoalStateV2:
        state: gs.GoalStateV2 = await self.status.GetHostState(status_pb2.HostId(host_id=host))
        return state

    async def counters(self) -> status_pb2.AgentStatus:
        counters: status_pb2.AgentStatus = await self.status.GetStatus(status_pb2.StatusRequest())
        return counters


@asynccontextmanager
async def running_agent(bootstrap: str, topics: Topics, *args: str) -> AsyncIterator[AgentHandle]:
    """The daemon's serve() on this loop, with its status service and fast path on free ports."""
    status_port, grpc_port = free_port(), free_port()
    config = parse_config(
        [*args, "--bootstrap", bootstrap, "--topic-prefix", topics.prefix, "--status-port", str(status_port),
         "--grpc-port", str(grpc_port), "--listen-host", "127.0.0.1"],
        environ={},
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(config, bootstrap, stop))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{status_port}") as channel:
        await channel.channel_ready()
        try:
            yield AgentHandle(status_pb2_grpc.AgentStatusServiceStub(channel), grpc_port)
        finally:
            stop.set()
            assert await asyncio.wait_for(task, DEADLINE) == 0


@pytest.fixture
def reply_reader(bootstrap: str, topics: Topics, kafka: KafkaSettings) -> Iterator[Reader]:
    create_topics(kafka, topics)
    reader = Reader(bootstrap, topics.reply, topics.default_partitions()[topics.reply])
    yield reader
    reader.close()


async def test_interop_vectors_from_a_raw_producer_are_applied_and_answered(
    bootstrap: str, topics: Topics, reply_reader: Reader, vectors_dir: Path
) -> None:
    producer = raw_producer(bootstrap)
    sent: dict[str, gs.GoalStateV2] = {}
    for name, host in (("goalstatev2_small", "192.168.0.11"), ("goalstatev2_gateway", "192.168.0.22")):
        raw = (vectors_dir / f"{name}.bin").read_bytes()
        sent[host] = gs.GoalStateV2.FromString(raw)
        produce(producer, topics.unicast, host, raw)
    async with running_agent(bootstrap, topics, "sim", "--hosts", "13", "--first-host", "192.168.0.11", "--name", "vec") as agent:
        got = await reply_reader.until(lambda m: all(applied(m, host) >= 1 for host in sent))
        for host, goal in sent.items():
            [ack] = acks(got, host)
            assert list(ack.failures) == [] and ack.timing.resources == len(goal.host_resources[host].resources)
            assert [hd for hd, v in got if ack_pb2.Ack.FromString(v).host_id == host] == [{}]
            state = await agent.host_state(host)
            assert listed(state, host) == listed(goal, host)
            for rid, value in goal.port_states.items():
                if (common.PORT, rid) in listed(goal, host):
                    assert state.port_states[rid] == value
        other = await agent.host_state("192.168.0.12")  # listed in a vector, but not the key of any message
        assert listed(other, "192.168.0.12") == set()


async def test_duplicates_and_reordered_revisions_on_the_wire(bootstrap: str, topics: Topics, reply_reader: Reader) -> None:
    producer = raw_producer(bootstrap)
    for seq, item in enumerate((port(rev=2), port(rev=2), port(rev=1), port(rev=3)), start=1):
        produce(producer, topics.unicast, H, goal_state(H, subnet(), item).SerializeToString(), gs_seq=str(seq), gs_epoch="e")
    async with running_agent(bootstrap, topics, "--host-id", H) as agent:
        got = await reply_reader.until(lambda m: watermark(m, H) == 4)
        assert failures(got) == {(3, "port-1"): common.OUT_OF_ORDER}  # a duplicate succeeds; only the older one is named
        counters = await agent.counters()
        assert counters.out_of_order == 1 and counters.duplicates >= 2  # the port and the subnet repeated
        state = await agent.host_state(H)
        assert state.port_states["port-1"].configuration.revision_number == 3


async def test_a_restarted_agent_resumes_after_its_committed_offset(bootstrap: str, topics: Topics, reply_reader: Reader) -> None:
    producer = raw_producer(bootstrap)
    produce(producer, topics.unicast, H, goal_state(H, subnet()).SerializeToString(), gs_seq="1", gs_epoch="e")
    async with running_agent(bootstrap, topics, "--host-id", H):
        await reply_reader.until(lambda m: watermark(m, H) == 1)
    produce(producer, topics.unicast, H, goal_state(H, subnet(rev=2)).SerializeToString(), gs_seq="2", gs_epoch="e")
    async with running_agent(bootstrap, topics, "--host-id", H) as agent:
        got = await reply_reader.until(lambda m: watermark(m, H) == 2)
        # Same key, same partitions, in order: a re-read of seq 1 would have been acked again.
        assert [(a.unicast_seq, a.timing.messages) for a in acks(got)] == [(1, 1), (2, 1)]
        assert (await agent.host_state(H)).subnet_states["sn-1"].configuration.revision_number == 2
        assert (await agent.counters()).messages_applied == 1


async def test_poison_is_dead_lettered_and_the_next_message_applied(
    bootstrap: str, topics: Topics, reply_reader: Reader
) -> None:
    producer = raw_producer(bootstrap)
    produce(producer, topics.unicast, H, b"\xff\xfe not a goal state", gs_request_id="poison")
    produce(producer, topics.unicast, H, goal_state(H, subnet()).SerializeToString(), gs_request_id="good")
    dead = Reader(bootstrap, topics.dead_letter, 1)
    try:
        async with running_agent(bootstrap, topics, "--host-id", H) as agent:
            [(headers, value)] = await dead.until(lambda m: len(m) >= 1)
            assert value == b"\xff\xfe not a goal state"
            assert headers[wire.SOURCE_TOPIC] == topics.unicast
            assert headers[wire.SOURCE_PARTITION] == str(partition_for(H, 16))
            assert headers[wire.SOURCE_OFFSET] == "0"
            assert headers[wire.ERROR].startswith("undecodable") and headers[wire.REQUEST_ID] == "poison"
            got = await reply_reader.until(lambda m: applied(m, H) >= 1)
            assert [(a.timing.messages, list(a.failures)) for a in acks(got)] == [(1, [])]  # the good one
            assert (await agent.counters()).dead_lettered == 1
    finally:
        dead.close()


async def test_a_message_pushed_on_the_grpc_channel_that_cannot_be_applied_is_dead_lettered_on_the_broker(
    bootstrap: str, topics: Topics
) -> None:
    poison = wire.channel_message(goal_state(H, subnet()).SerializeToString(),
                                  {wire.HOST_ID: H, wire.SEQ: "not-a-number", wire.REQUEST_ID: "pushed-poison"})
    dead = Reader(bootstrap, topics.dead_letter, 1)
    try:
        async with running_agent(bootstrap, topics, "--host-id", H) as agent:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{agent.grpc_port}") as channel:
                push: Any = channel.stream_stream(METHOD, request_serializer=None, response_deserializer=None)
                answers = [raw async for raw in push(iter([poison]))]
            assert len(answers) == 1  # answered, with no ack: nothing applied
            [(headers, _)] = await dead.until(lambda m: len(m) >= 1)  # sent by the consume loop
            assert headers[wire.REQUEST_ID] == "pushed-poison" and "gs-seq" in headers[wire.ERROR]
            assert (await agent.counters()).dead_lettered == 1
    finally:
        dead.close()


async def test_a_dead_letter_over_the_brokers_limit_is_cut_and_keeps_its_reason(
    bootstrap: str, topics: Topics, kafka: KafkaSettings
) -> None:
    """A 1.5 MB undecodable record (its topic allows it): the dead-letter topic, at the broker's
    default limit, could not take it whole; it takes the first 256 KiB, with the reason and size."""
    big = 3 << 20
    ensure_topics(AdminClient(kafka.admin()), topics.default_partitions(), configs={topics.unicast: {"max.message.bytes": str(big)}})
    poison = b"\xff" * (3 << 19)
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "message.max.bytes": big})
    produce(producer, topics.unicast, H, poison, gs_request_id="poison")
    produce(producer, topics.unicast, H, goal_state(H, subnet()).SerializeToString(), gs_request_id="good")
    dead = Reader(bootstrap, topics.dead_letter, 1)
    try:
        async with running_agent(bootstrap, topics, "--host-id", H) as agent:
            [(headers, value)] = await dead.until(lambda m: len(m) >= 1)
            assert value == poison[: wire.DEAD_LETTER_VALUE_BYTES] and headers[wire.TRUNCATED] == str(len(poison))
            assert headers[wire.ERROR].startswith("undecodable") and headers[wire.SOURCE_OFFSET] == "0"
            held = await agent.host_state(H)
            for _ in range(200):
                if held.subnet_states:
                    break
                await asyncio.sleep(0.05)
                held = await agent.host_state(H)
            assert list(held.subnet_states) == ["sn-1"]  # the next message applied
    finally:
        dead.close()


async def test_malformed_numbers_in_headers_are_dead_lettered_and_the_next_message_applied(
    bootstrap: str, topics: Topics, reply_reader: Reader
) -> None:
    producer = raw_producer(bootstrap)
    value = goal_state(H, subnet(), port()).SerializeToString()
    bad = {"seq": {"gs_seq": "\u00b2"}, "letters": {"gs_seq": "abc"}, "offset": {"gs_follow": f"vpc-1=0:{2**63}:1"},
           "sent": {"gs_sent_ns": "-1"}}
    for name, headers in bad.items():
        produce(producer, topics.unicast, H, value, gs_request_id=name, **headers)
    produce(producer, topics.unicast, H, value, gs_request_id="good")
    dead = Reader(bootstrap, topics.dead_letter, 1)
    try:
        async with running_agent(bootstrap, topics, "--host-id", H) as agent:
            letters = await dead.until(lambda m: len(m) >= len(bad))
            reasons = {hd[wire.REQUEST_ID]: hd[wire.ERROR] for hd, _ in letters}
            assert set(reasons) == set(bad)
            assert "gs-seq" in reasons["seq"] and "gs-follow" in reasons["offset"] and "gs-sent-ns" in reasons["sent"]
            got = await reply_reader.until(lambda m: applied(m, H) >= 1)
            assert [(a.timing.messages, list(a.failures)) for a in acks(got)] == [(1, [])]  # the good one
            assert (await agent.counters()).dead_lettered == len(bad)
            assert "port-1" in (await agent.host_state(H)).port_states
    finally:
        dead.close()


async def test_a_full_state_without_a_dpm_incarnation_never_wipes_the_host(
    bootstrap: str, topics: Topics, reply_reader: Reader
) -> None:
    """Issue 12's silent wipe: an empty payload with gs-full 1 and no epoch on the host's
    partition (or one from an older DPM incarnation) is dead-lettered; the host keeps its state."""
    producer = raw_producer(bootstrap)
    produce(producer, topics.unicast, H, goal_state(H, subnet(), port()).SerializeToString(), gs_seq="1", gs_epoch="2.a")
    produce(producer, topics.unicast, H, b"", gs_full="1", gs_request_id="no-epoch")
    produce(producer, topics.unicast, H, b"", gs_full="1", gs_seq="1", gs_epoch="1.z", gs_request_id="older")
    dead = Reader(bootstrap, topics.dead_letter, 1)
    try:
        async with running_agent(bootstrap, topics, "--host-id", H) as agent:
            letters = await dead.until(lambda m: len(m) >= 2)
            reasons = {hd[wire.REQUEST_ID]: hd[wire.ERROR] for hd, _ in letters}
            assert "without a DPM incarnation" in reasons["no-epoch"] and "incarnation 1 is refused" in reasons["older"]
            held = await agent.host_state(H)
            assert "port-1" in held.port_states and "sn-1" in held.subnet_states
            assert (await agent.counters()).dead_lettered == 2
    finally:
        dead.close()


async def test_the_dpm_and_the_agent_refuse_the_same_revision_with_other_content(
    bootstrap: str, topics: Topics, reply_reader: Reader
) -> None:
    from test_dpm_service import running_dpm  # tests/integration on sys.path

    held, other = port(), port()
    other[2].configuration.mac_address = "aa:bb:cc:dd:ee:ff"
    async with running_dpm(bootstrap, topics, "vpc-multicast") as dpm, \
            running_agent(bootstrap, topics, "--host-id", H, "--dpm-address", dpm.address) as agent:
        [first] = await dpm.push(goal_state(H, subnet(), held))
        assert set(statuses_of(first).values()) == {common.SUCCESS}
        [through_dpm] = await dpm.push(goal_state(H, other))
        produce(raw_producer(bootstrap), topics.unicast, H, goal_state(H, other).SerializeToString())  # no gs-seq: seq 0
        got = await reply_reader.until(lambda m: (0, "port-1") in failures(m, H))
        assert statuses_of(through_dpm) == {"port-1": common.INVALID_ARG} and failures(got, H) == {(0, "port-1"): common.INVALID_ARG}
        snapshot = await dpm.status.GetHostSnapshot(status_pb2.HostId(host_id=H))
        assert snapshot.port_states["port-1"] == (await agent.host_state(H)).port_states["port-1"] == held[2]


async def test_multicast_is_followed_until_the_last_port_leaves(bootstrap: str, topics: Topics, reply_reader: Reader) -> None:
    producer = raw_producer(bootstrap)
    mc = partition_for("vpc-1", 16)
    produce(producer, topics.multicast, "vpc-1", b"marker", gs_type="Marker")  # offset 0: skipped
    two_ports = goal_state(H, subnet(), port("p-1"), port("p-2"))
    produce(producer, topics.unicast, H, two_ports.SerializeToString(), gs_follow=f"vpc-1={mc}:1:0", gs_epoch="e", gs_seq="1")
    produce(producer, topics.multicast, "vpc-1", goal_state(None, security_group()).SerializeToString(),
            gs_vpc_id="vpc-1", gs_seq="1", gs_epoch="e", gs_type="GoalStateV2")

    def vpc_watermark(m: Records) -> int:
        return max((v.seq for a in acks(m, H) for v in a.vpcs if v.vpc_id == "vpc-1"), default=0)

    async with running_agent(bootstrap, topics, "--host-id", H) as agent:
        await reply_reader.until(lambda m: watermark(m, H) >= 1 and vpc_watermark(m) >= 1)
        assert (await agent.counters()).followed_vpcs == ["vpc-1"]
        assert "sg-1" in (await agent.host_state(H)).security_group_states
        deleted = goal_state(H, port("p-1", rev=2, op=common.DELETE)).SerializeToString()
        produce(producer, topics.unicast, H, deleted, gs_epoch="e", gs_seq="2")
        await reply_reader.until(lambda m: watermark(m, H) >= 2)
        assert (await agent.counters()).followed_vpcs == ["vpc-1"]  # p-2 is still there
        deleted = goal_state(H, port("p-2", rev=2, op=common.DELETE)).SerializeToString()
        produce(producer, topics.unicast, H, deleted, gs_epoch="e", gs_seq="3")
        await reply_reader.until(lambda m: watermark(m, H) >= 3)
        counters = await agent.counters()
        assert list(counters.followed_vpcs) == []
        state = await agent.host_state(H)
        assert dict(state.security_group_states) == {} and dict(state.subnet_states) == {}


async def test_a_simulators_followers_of_a_vpc_share_its_tables_and_each_leaves_out_its_own_neighbors(
    bootstrap: str, topics: Topics, reply_reader: Reader
) -> None:
    hosts = ["10.8.0.1", "10.8.0.2", "10.8.0.3"]
    nbs = {f"nb-{i}": host for i, host in enumerate(hosts, start=1)}
    producer = raw_producer(bootstrap)
    mc = partition_for("vpc-1", 16)
    produce(producer, topics.multicast, "vpc-1", b"marker", gs_type="Marker")  # offset 0: skipped
    for host in hosts:  # each joins with the VPC's states as of VPC seq 0, minus its own neighbor
        others = [neighbor(rid, on) for rid, on in nbs.items() if on != host]
        join = goal_state(host, subnet(), port(f"port-{host}"), *others)
        produce(producer, topics.unicast, host, join.SerializeToString(), gs_follow=f"vpc-1={mc}:1:0", gs_epoch="e", gs_seq="1")
    for seq, items in ((1, (security_group(), neighbor("nb-4", hosts[0]))), (2, (security_group(rev=2),))):
        produce(producer, topics.multicast, "vpc-1", goal_state(None, *items).SerializeToString(),
                gs_vpc_id="vpc-1", gs_seq=str(seq), gs_epoch="e", gs_type="GoalStateV2")

    def vpc_watermark(m: Records, host: str) -> int:
        return max((v.seq for a in acks(m, host) for v in a.vpcs if v.vpc_id == "vpc-1"), default=0)

    async with running_agent(bootstrap, topics, "sim", "--hosts", "3", "--first-host", hosts[0], "--name", "share") as agent:
        got = await reply_reader.until(lambda m: all(watermark(m, h) >= 1 and vpc_watermark(m, h) >= 2 for h in hosts))
        assert failures(got) == {}
        nbs["nb-4"] = hosts[0]
        for host in hosts:
            state = await agent.host_state(host)
            assert set(state.neighbor_states) == {rid for rid, on in nbs.items() if on != host}
            assert state.security_group_states["sg-1"].configuration.revision_number == 2
            assert set(state.subnet_states) == {"sn-1"} and set(state.port_states) == {f"port-{host}"}
            assert listed(state, host) == {(common.SUBNET, "sn-1"), (common.PORT, f"port-{host}"), (common.SECURITYGROUP, "sg-1")} | {
                (common.NEIGHBOR, rid) for rid, on in nbs.items() if on != host}
        counters = await agent.counters()
        # one shared table (1 subnet, 4 neighbors, 1 security group) and each host's own port: 9, not 3 x 6 + 3
        assert counters.resources == 9 and list(counters.followed_vpcs) == ["vpc-1"]
        # Whatever order the joins came in, the second brings 2 states the table knows from
        # the first's bytes (the subnet, the third host's neighbor), the third brings 3.
        assert counters.bundle_states_known == 5

        # A VPC message alone in its batch: one shared apply, whose followers' acks share
        # their times and the rest of their record (serialized once), read by the DPM's decoder.
        produce(producer, topics.multicast, "vpc-1", goal_state(None, security_group(rev=3)).SerializeToString(),
                gs_vpc_id="vpc-1", gs_seq="3", gs_epoch="e", gs_type="GoalStateV2")
        got = await reply_reader.until(lambda m: all(vpc_watermark(m, h) >= 3 for h in hosts))
        values = [v for hd, v in got if not hd and any(p.seq == 3 for p in ack_pb2.Ack.FromString(v).vpcs)]
        decoded, refused = decode_acks([Envelope(topics.reply, "", v) for v in values])
        assert refused == [] and sorted((a.host_id, a.unicast_seq, [(vpc, seq) for vpc, _, seq, _ in a.vpcs]) for a in decoded) == [
            (h, 1, [("vpc-1", 3)]) for h in hosts]
        parsed = [ack_pb2.Ack.FromString(v) for v in values]
        assert len({(a.timing.apply_us, a.timing.last_applied_ns, a.timing.max_elapse_us) for a in parsed}) == 1
        rest = parsed[0]
        for name in ("host_id", "epoch", "unicast_seq", "unicast_seen"):
            rest.ClearField(name)
        assert sum(v.endswith(rest.SerializePartialToString()) for v in values) >= 2  # the followers after the first


async def test_fast_path_streams_a_reply_per_goal_state(bootstrap: str, topics: Topics, kafka: KafkaSettings, vectors_dir: Path) -> None:
    create_topics(kafka, topics)
    goal = gs.GoalStateV2.FromString((vectors_dir / "goalstatev2_small.bin").read_bytes())
    async with running_agent(bootstrap, topics, "sim", "--hosts", "2", "--first-host", "192.168.0.11", "--name", "fp") as agent:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{agent.grpc_port}") as channel:
            stub = gsp_grpc.GoalStateProvisionerStub(channel)
            got = [reply async for reply in stub.PushGoalStatesStream(iter([goal, goal]))]
        expected = sum(len(r.resources) for r in goal.host_resources.values())
        assert [len(r.operation_statuses) for r in got] == [expected, expected]
        assert {s.operation_status for s in got[0].operation_statuses} == {common.SUCCESS}
        assert (await agent.counters()).duplicates >= expected  # the second copy changed nothing
        assert listed(await agent.host_state("192.168.0.12"), "192.168.0.12") == listed(goal, "192.168.0.12")


async def test_auto_channel_picks_up_a_host_topic_created_later(
    bootstrap: str, topics: Topics, kafka: KafkaSettings, reply_reader: Reader
) -> None:
    async with running_agent(bootstrap, topics, "--host-id", H) as agent:  # default channel: auto
        produce(raw_producer(bootstrap), topics.unicast, H, goal_state(H, subnet("sn-u")).SerializeToString())
        await reply_reader.until(lambda m: applied(m, H) >= 1)
        ensure_topics(AdminClient(kafka.admin()), {topics.host(H): 1})  # a topic-per-host DPM starts publishing
        produce(raw_producer(bootstrap), topics.host(H), H, goal_state(H, subnet("sn-t")).SerializeToString())
        got = await reply_reader.until(lambda m: applied(m, H) >= 2)
        assert applied(got, H) == 2 and {"sn-u", "sn-t"} <= set((await agent.host_state(H)).subnet_states)


class FakeDpm(gsp_grpc.GoalStateProvisionerServicer):
    """Records RequestGoalStates calls (the DPM itself is tested elsewhere)."""

    def __init__(self) -> None:
        self.requests: list[gsp.HostRequest] = []

    async def RequestGoalStates(self, request: gsp.HostRequest, context: object) -> gsp.HostRequestReply:  # noqa: N802
        self.requests.append(request)
        reply = gsp.HostRequestReply(format_version=1)
        for r in request.state_requests:
            reply.operation_statuses.add(request_id=r.request_id, operation_status=common.SUCCESS)
        return reply


async def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.05)


async def test_resync_at_start_retries_until_the_dpm_answers_and_again_on_a_gap(
    bootstrap: str, topics: Topics, reply_reader: Reader
) -> None:
    dpm_port = free_port()
    fake = FakeDpm()
    server = grpc.aio.server()
    gsp_grpc.add_GoalStateProvisionerServicer_to_server(fake, server)
    server.add_insecure_port(f"127.0.0.1:{dpm_port}")
    hosts = ["10.8.0.1", "10.8.0.2", "10.8.0.3"]
    with structlog.testing.capture_logs() as logs:
        sim = ["sim", "--hosts", "3", "--first-host", hosts[0], "--dpm-address", f"127.0.0.1:{dpm_port}"]
        async with running_agent(bootstrap, topics, *sim) as agent:
            await wait_for(lambda: any(e["event"] == "resync_retry" for e in logs))  # the DPM is down: the agent keeps trying
            await server.start()
            try:
                await wait_for(lambda: len(fake.requests) >= 1)
                first = fake.requests[0].state_requests
                assert sorted(r.source_ip for r in first) == hosts
                assert {r.request_type for r in first} == {common.AGENT_RESTARTED}
                assert len({r.request_id for r in first}) == 3
                producer = raw_producer(bootstrap)
                for seq in ("1", "2", "5"):
                    value = goal_state(hosts[1], subnet()).SerializeToString()
                    produce(producer, topics.unicast, hosts[1], value, gs_seq=seq, gs_epoch="e")
                await reply_reader.until(lambda m: applied(m, hosts[1]) >= 3)
                await wait_for(lambda: len(fake.requests) >= 2)
                assert [r.source_ip for r in fake.requests[1].state_requests] == [hosts[1]]
                assert (await agent.counters()).resyncs == 1
            finally:
                await server.stop(0)


def _read_events(stream: object, until: str, deadline: float) -> list[dict[str, object]]:
    events = []
    while time.monotonic() < deadline:
        line = stream.readline()  # type: ignore[attr-defined]
        if not line:
            break
        try:
            event = json.loads(line)
        except ValueError:
            continue
        events.append(event)
        if event.get("event") == until:
            return events
    raise AssertionError(f"no {until} event; saw {[e.get('event') for e in events]}")


@contextmanager
def _agent_process(bootstrap: str, topics: Topics, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`aca-agent ARGS` as a subprocess (JSON logs on its stderr), killed if still running at the end."""
    script = Path(sys.executable).parent / "aca-agent"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACA_", "KAFKA_"))}
    proc = subprocess.Popen(
        [str(script), *args, "--bootstrap", bootstrap, "--topic-prefix", topics.prefix, "--log-json", "1"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_console_script_applies_then_exits_0_on_sigterm(bootstrap: str, topics: Topics, reply_reader: Reader) -> None:
    with _agent_process(bootstrap, topics, "--host-id", H) as proc:
        await asyncio.to_thread(_read_events, proc.stderr, "aca_ready", time.monotonic() + DEADLINE)
        produce(raw_producer(bootstrap), topics.unicast, H, goal_state(H, subnet()).SerializeToString())
        [(headers, value)] = await reply_reader.until(lambda m: len(m) >= 1)
        assert headers == {} and ack_pb2.Ack.FromString(value).host_id == H  # an ack record has no headers
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, DEADLINE) == 0


def _agent_run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`aca-agent ARGS` to its end, without ACA_* / Kafka variables from the caller, plus `env`."""
    script = Path(sys.executable).parent / "aca-agent"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ACA_", "KAFKA_"))}
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=DEADLINE, env={**clean, **env})


@pytest.mark.parametrize("args", [[], ["sim"]])
def test_help_of_both_modes_explains_every_option_and_its_variable(args: list[str]) -> None:
    done = _agent_run(*args, "--help")
    assert done.returncode == 0
    for option in ("--bootstrap", "-X", "--topic-prefix", "--channel", "--dpm-address", "--status-port", "--grpc-port",
                   "--program-cost-us", "--max-batch", "--log-level", "--config"):
        assert option in done.stdout
    for variable in ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_PROP_", "ACA_TOPIC_PREFIX", "ACA_DPM_ADDRESS"):
        assert variable in done.stdout
    assert ("[--hosts HOSTS]" in done.stdout) == bool(args) and ("[--host-id HOST_ID]" in done.stdout) == (not args)


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [(["--bootstrap", "127.0.0.1:1"], {}, "--host-id"), (["sim", "--hosts", "0", "--bootstrap", "127.0.0.1:1"], {}, "--hosts"),
     (["--host-id", "10.0.0.1", "--channel", "pigeon"], {}, "invalid choice"),
     (["--host-id", "10.0.0.1", "--bootstrap", "127.0.0.1:1"], {"ACA_MAX_BATCH": "lots"}, "$ACA_MAX_BATCH"),
     (["--host-id", "not-an-ip"], {}, "--host-id"),
     (["--host-id", "10.0.0.1"], {"ACA_GRPC_PROT": "7"}, "did you mean 'ACA_GRPC_PORT'"),
     (["--host-id", "10.0.0.1", "-X", "partitioner=consistent_random"], {}, "--allow-unsafe-kafka-overrides"),
     (["--host-id", "10.0.0.1", "-X", "enable.auto.commit=true"], {}, "--allow-unsafe-kafka-overrides")],
)
def test_bad_configuration_is_one_line_and_exit_2(args: list[str], env: dict[str, str], says: str) -> None:
    done = _agent_run(*args, **env)
    assert done.returncode == 2
    assert says in done.stderr and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


async def test_simulator_of_50_hosts_applies_messages_for_several(bootstrap: str, topics: Topics, reply_reader: Reader) -> None:
    with _agent_process(bootstrap, topics, "sim", "--hosts", "50", "--first-host", "10.9.0.1", "--name", "fifty") as proc:
        await asyncio.to_thread(_read_events, proc.stderr, "aca_ready", time.monotonic() + DEADLINE)
        targets = ["10.9.0.1", "10.9.0.7", "10.9.0.23", "10.9.0.42", "10.9.0.50"]
        producer = raw_producer(bootstrap)
        for host in [*targets, "10.9.0.51"]:  # .51 is not simulated
            produce(producer, topics.unicast, host, goal_state(host, subnet(), port()).SerializeToString())
        got = await reply_reader.until(lambda m: all(applied(m, host) >= 1 for host in targets))
        assert sorted(a.host_id for a in acks(got)) == sorted(targets)
        assert all(a.timing.resources == 2 and not a.failures for a in acks(got))
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, DEADLINE) == 0
