"""Goal states over the message limit, through the real broker: the DPM cuts a host's
message into ordered parts (`gs-part`), the agent applies it once every part is there;
a single resource over the limit is refused whole (INVALID_ARG), nothing stored."""

from __future__ import annotations

import asyncio

from confluent_kafka import Consumer, TopicPartition
from test_aca_agent import running_agent
from test_dpm_service import running_dpm, statuses

from aca_agent.testing import goal_state, port, subnet
from alcor.schema import common_pb2 as common
from gsmq import wire
from gsmq.partition import partition_for
from gsmq.topics import Topics

H = "10.7.0.41"
PORTS = [f"port-{i}" for i in range(30)]
LIMIT = "2000"  # bytes: a host's whole state here is several times that


def parts_on_the_wire(bootstrap: str, topics: Topics) -> list[str]:
    """The gs-part headers of the host's unicast messages."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-parts", "enable.auto.commit": False})
    part = TopicPartition(topics.unicast, partition_for(H, 16))
    _, high = consumer.get_watermark_offsets(part, timeout=10)
    part.offset = 0
    consumer.assign([part])
    seen: list[str] = []
    for message in consumer.consume(high, timeout=10) if high else []:
        headers = wire.decode_headers(message.headers())
        if wire.PART in headers:
            seen.append(headers[wire.PART])
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
    parts = await asyncio.to_thread(parts_on_the_wire, bootstrap, topics)
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
