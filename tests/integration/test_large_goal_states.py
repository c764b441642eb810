"""Goal states over the message limit, through the real broker: the DPM cuts a host's
message into ordered parts (`gs-part`), the agent applies it once every part is there;
a VPC's multicast goes as several messages; a single resource over the limit is refused
whole (INVALID_ARG), nothing stored."""

from __future__ import annotations

import asyncio

from confluent_kafka import Consumer, TopicPartition
from test_aca_agent import running_agent
from test_dpm_service import PARTS, running_dpm, statuses

from aca_agent.testing import goal_state, neighbor, port, subnet
from alcor.schema import common_pb2 as common
from gsmq import wire
from gsmq.partition import partition_for
from gsmq.topics import Topics

H = "10.7.0.41"
PORTS = [f"port-{i}" for i in range(30)]
LIMIT = "2000"  # bytes: a host's whole state here is several times that


def on_the_wire(bootstrap: str, topic: str, key: str, partitions: int) -> list[dict[str, str]]:
    """The headers of the messages on `key`'s partition of `topic`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-parts", "enable.auto.commit": False})
    part = TopicPartition(topic, partition_for(key, partitions))
    _, high = consumer.get_watermark_offsets(part, timeout=10)
    part.offset = 0
    consumer.assign([part])
    seen = [wire.decode_headers(message.headers()) for message in (consumer.consume(high, timeout=10) if high else [])]
    consumer.close()
    return seen


async def test_a_whole_state_over_the_limit_goes_in_parts_and_is_applied_whole(bootstrap: str, topics: Topics) -> None:
    async with running_dpm(bootstrap, topics, "vpc-multicast", "--max-message-bytes", LIMIT) as dpm:
        async with running_agent(bootstrap, topics, "--host-id", H, "--dpm-address", dpm.address):
            [reply] = await dpm.push(goal_state(H, subnet(), *(port(rid=p) for p in PORTS)))  # one input, ~5 KB
            assert set(statuses(reply).values()) == {common.SUCCESS}
        async with running_agent(bootstrap, topics, "--host-id", H, "--dpm-address", dpm.address) as agent:  # resynced, empty
            held = await agent.host_state(H)
            for _ in range(600):
                held = await agent.host_state(H)
                if sorted(held.port_states) == sorted(PORTS):
                    break
                await asyncio.sleep(0.05)
            assert sorted(held.port_states) == sorted(PORTS) and list(held.subnet_states) == ["sn-1"]
            assert (await agent.counters()).dead_lettered == 0
    parts = [h[wire.PART] for h in await asyncio.to_thread(on_the_wire, bootstrap, topics.unicast, H, PARTS["unicast"]) if wire.PART in h]
    counts = {p.split("/")[1] for p in parts}
    assert len(parts) >= 4 and all(int(n) >= 2 for n in counts)  # the input's message and the resync, each in parts


async def test_a_resource_alone_over_the_limit_is_refused_whole(bootstrap: str, topics: Topics) -> None:
    async with running_dpm(bootstrap, topics, "vpc-multicast", "--max-message-bytes", LIMIT) as dpm:
        big = port(rid="port-big")
        big[2].configuration.name = "x" * 3000
        [reply] = await dpm.push(goal_state(H, subnet(), big))
        assert statuses(reply) == {"port-big": common.INVALID_ARG}
        status = await dpm.get_status()
        assert (status.resources, status.messages_published, status.invalid_requests) == (0, 0, 1)


async def test_a_vpc_wide_change_over_the_limit_goes_as_several_multicast_messages(bootstrap: str, topics: Topics) -> None:
    neighbors = [neighbor(f"nb-{i}", f"10.7.1.{i}") for i in range(60)]  # ~5 KB of VPC-wide states for a member
    async with running_dpm(bootstrap, topics, "vpc-multicast", "--max-message-bytes", LIMIT) as dpm, \
            running_agent(bootstrap, topics, "--host-id", H, "--dpm-address", dpm.address) as agent:
        await dpm.push(goal_state(H, subnet(), port()))
        [reply] = await dpm.push(goal_state(H, *neighbors))
        assert set(statuses(reply).values()) == {common.SUCCESS} and len(reply.operation_statuses) == 60
        held = await agent.host_state(H)
        assert sorted(held.neighbor_states) == sorted(rid for _, rid, _ in neighbors)
    seqs = [int(h[wire.SEQ]) for h in await asyncio.to_thread(on_the_wire, bootstrap, topics.multicast, "vpc-1", PARTS["multicast"])
            if h.get(wire.VPC_ID) == "vpc-1"]
    assert len(seqs) >= 3 and seqs == list(range(1, len(seqs) + 1))  # each part a message of its own, in order
