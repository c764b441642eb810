"""Progress acks through the real broker, with the real agent (and the real DPM where a
caller is involved): many messages acked by one ack, a failure an agent reports reaching
the caller's reply, and a message lost before the agent read it found by the watermark and
made good by a resync; the DPM's decoder over the records it consumes. (Restarts: test_aca_agent.py and tests/e2e; followers sharing a
VPC's tables: test_aca_agent.py.)"""

from __future__ import annotations

import asyncio
import time

import test_aca_agent
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from test_aca_agent import Reader, acks, produce, raw_producer, running_agent
from test_dpm_service import running_dpm, statuses

from aca_agent.testing import goal_state, port, subnet
from alcor.schema import common_pb2 as common
from dpm_server import inputs
from dpm_server.acks import decode_acks
from gs_bench.scenarios import Storm
from gsmq import wire
from gsmq.kafka import KafkaSettings
from gsmq.kafka_admin import ensure_topics, partition_count
from gsmq.kafka_transport import KafkaSource
from gsmq.partition import partition_for
from gsmq.topics import Topics
from gsmq.v1 import ack_pb2, status_pb2

H = "10.7.0.21"
reply_reader = test_aca_agent.reply_reader  # the reply topic read from the beginning (a fixture)


async def test_many_messages_are_acked_by_one_ack(bootstrap: str, topics: Topics, reply_reader: Reader) -> None:
    producer = raw_producer(bootstrap)
    sent = str(time.time_ns())
    produce(producer, topics.unicast, H, goal_state(H, subnet()).SerializeToString(), gs_seq="1", gs_epoch="e", gs_sent_ns=sent)
    for seq in range(2, 21):  # 20 messages in all, there before the agent starts: one batch
        produce(producer, topics.unicast, H, goal_state(H, port(rev=seq)).SerializeToString(), gs_seq=str(seq), gs_epoch="e",
                gs_sent_ns=sent)
    async with running_agent(bootstrap, topics, "--host-id", H) as agent:
        got = await reply_reader.until(lambda m: any(a.unicast_seq == 20 for a in acks(m, H)))
        [ack] = acks(got, H)
        assert (ack.unicast_seq, ack.timing.messages, ack.timing.resources, len(ack.failures)) == (20, 20, 20, 0)
        assert sum(ack.timing.elapse_buckets.values()) == 20  # one latency sample per message covered
        assert (await agent.host_state(H)).port_states["port-1"].configuration.revision_number == 20


async def test_a_failure_an_agent_acks_reaches_the_callers_reply(bootstrap: str, topics: Topics) -> None:
    async with running_dpm(bootstrap, topics, "vpc-multicast") as dpm, \
            running_agent(bootstrap, topics, "--host-id", H, "--dpm-address", dpm.address) as agent:
        # The port's subnet is unknown: the DPM publishes it anyway, the agent holds it PENDING
        # and names it in its ack, the only place the caller can learn it from.
        [orphan] = await dpm.push(goal_state(H, port(subnet_id="sn-9")))
        assert statuses(orphan) == {"port-1": common.PENDING}
        [parent] = await dpm.push(goal_state(H, subnet(rid="sn-9")))  # releases it: applied, no longer named
        assert statuses(parent) == {"sn-9": common.SUCCESS}
        assert "port-1" in (await agent.host_state(H)).port_states


async def test_a_message_lost_before_the_agent_read_it_is_passed_by_its_resync_and_answered(
    bootstrap: str, kafka: KafkaSettings, topics: Topics
) -> None:
    admin = AdminClient(kafka.admin())
    async with running_dpm(bootstrap, topics, "vpc-multicast") as dpm:
        async with running_agent(bootstrap, topics, "--host-id", H, "--dpm-address", dpm.address):
            assert set(statuses((await dpm.push(goal_state(H, subnet())))[0]).values()) == {common.SUCCESS}
        # The agent is down; the DPM publishes the port, and the record is lost before anyone read it.
        lost = asyncio.create_task(dpm.push(goal_state(H, port())))
        partition = TopicPartition(topics.unicast, partition_for(H, partition_count(admin, topics.unicast)))
        for _ in range(600):  # the agent's resync, the subnet, then the port: 3 records
            if (await asyncio.to_thread(_high_watermark, kafka, partition)) >= 3:
                break
            await asyncio.sleep(0.05)
        partition.offset = 3
        for future in admin.delete_records([partition]).values():
            future.result()
        async with running_agent(bootstrap, topics, "--host-id", H, "--dpm-address", dpm.address) as agent:
            [reply] = await asyncio.wait_for(lost, 60)
            assert statuses(reply) == {"port-1": common.SUCCESS}  # once the resync, past the lost message, is applied
            held = await agent.host_state(H)
            assert held.port_states["port-1"] == (await dpm.status.GetHostSnapshot(status_pb2.HostId(host_id=H))).port_states["port-1"]


async def test_ports_of_one_vpc_each_listing_every_other_host_are_answered_once_those_hosts_applied(
    bootstrap: str, topics: Topics
) -> None:
    """A one-VPC storm as the bench writes it (each port's input lists its own host first,
    then every other host of the VPC for its neighbor): the DPM reads the neighbor's hosts as
    a part of the VPC's set of hosts, and each input is answered SUCCESS once those hosts
    (a simulator of all four, through the broker) applied it; each holds every neighbor but its own."""
    storm = Storm(4, 1, 12, first_host="10.7.1.1")
    hosts = storm.host_list
    sim = ["sim", "--hosts", "4", "--first-host", hosts[0], "--name", "parts"]
    async with running_dpm(bootstrap, topics, "vpc-multicast") as dpm, \
            running_agent(bootstrap, topics, *sim, "--dpm-address", dpm.address) as agent:
        await dpm.push(*storm.subnets())
        replies = await dpm.push_each(*(storm.message(i) for i in range(4)))  # bring-up: each host joins with its first port
        replies += await dpm.push(*(storm.message(i) for i in range(4, 12)))  # the rest in one stream
        assert [set(statuses(r).values()) for r in replies] == [{common.SUCCESS}] * 12
        assert inputs._LAST.hosts == set(hosts)  # the last listings were read as parts of it
        for host in hosts:
            state = await agent.host_state(host)
            assert set(state.neighbor_states) == {f"nb-{storm.port(i).id}" for i in range(12) if storm.port(i).host != host}


def _high_watermark(kafka: KafkaSettings, partition: TopicPartition) -> int:
    consumer = Consumer(kafka.consumer("lost-message-test"))
    try:
        return int(consumer.get_watermark_offsets(partition, timeout=10, cached=False)[1])
    finally:
        consumer.close()


def test_the_dpm_reads_acks_from_records_and_refuses_the_rest_whole(kafka: KafkaSettings, topics: Topics) -> None:
    ensure_topics(AdminClient(kafka.admin()), {topics.reply: 1})
    producer = raw_producer(kafka.bootstrap)
    produce(producer, topics.reply, H, ack_pb2.Ack(host_id=H, epoch="e", unicast_seq=4).SerializeToString(), gs_type="Ack", gs_host_id=H)
    produce(producer, topics.reply, H, b"\x0a\x03abc", gs_type="GoalStateOperationReply", gs_host_id=H)
    produce(producer, topics.reply, H, b"\xff", gs_type="Ack")
    produce(producer, topics.reply, "", b"", gs_type="Marker")
    produce(producer, topics.reply, H, ack_pb2.Ack(host_id=H, epoch="e", unicast_seq=5).SerializeToString())  # an agent's: no headers
    produce(producer, topics.reply, H, b"\xff")
    source, records = KafkaSource(kafka, f"{topics.reply}.g"), []
    try:
        source.assign([(topics.reply, 0, 0)])
        for _ in range(100):
            records += source.poll_records(100, 0.2)
            if len(records) >= 6:
                break
    finally:
        source.close()
    acked, refused = decode_acks(records, topics.dead_letter)
    assert [(a.host_id, a.epoch, a.unicast_seq) for a in acked] == [(H, "e", 4), (H, "e", 5)]
    assert [(d.topic, d.key, d.value, d.headers.get(wire.MSG_TYPE), d.headers[wire.SOURCE_OFFSET]) for d in refused] == [
        (topics.dead_letter, H, b"\x0a\x03abc", "GoalStateOperationReply", "1"), (topics.dead_letter, H, b"\xff", "Ack", "2"),
        (topics.dead_letter, H, b"\xff", None, "5")]
