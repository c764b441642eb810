"""The DPM's plan against the real ACA applier (a contract check, in memory): every
request completes once the appliers of its hosts applied what was published; coalescing.
The DPM's own unit tests (test_dpm_snapshot/planner/validate/acks) use a fake ACA."""

from __future__ import annotations

from aca_agent.applier import Applier
from aca_agent.dataplane import MemoryDataPlane
from aca_agent.replies import reply_envelope
from gs_bench.topology import Port, port_message, subnet_message
from dpm_server.engine import Engine, merge
from dpm_server.publisher import Publisher
from gsmq import wire
from gsmq.topics import Topics
from gsmq.transport import MemoryBus
from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp

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
    return [m for (t, _), log in bus.logs.items() if t == topic for m in log if m.headers.get(wire.MSG_TYPE) == "GoalStateV2"]


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


def test_merge_keeps_the_later_state_and_joins_host_lists() -> None:
    p = ports()[0]
    merged = merge([port_message(p, HOSTS, revision=1), port_message(p, HOSTS, revision=2, op=common.UPDATE)])
    assert merged.port_states["p0"].configuration.revision_number == 2
    assert [r.id for r in merged.host_resources[A].resources] == ["p0", "dhcp-p0"]
    assert [r.id for r in merged.host_resources[B].resources] == ["nb-p0"]


async def test_a_batch_the_engine_cannot_publish_still_answers_every_caller() -> None:
    from dpm_server.service import Batcher

    eng, _, _ = engine()

    def broken(batch: object) -> None:
        raise RuntimeError("broker gone")

    eng.submit_many = broken  # type: ignore[method-assign]
    replies: list[gsp.GoalStateOperationReply] = []
    batcher = Batcher(eng, window=0.0, size=10)
    batcher.add(port_message(ports()[0], [A]), replies.append)
    assert len(replies) == 1
    assert {s.resource_id: s.operation_status for s in replies[0].operation_statuses} == {
        "p0": common.FAILURE, "dhcp-p0": common.FAILURE, "nb-p0": common.FAILURE}
