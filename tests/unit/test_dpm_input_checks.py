"""Input the agents would refuse is refused by the DPM first: INVALID_ARG to the caller,
nothing published, nothing stored (docs/internals.md, "The caller's reply")."""

from __future__ import annotations

from aca_agent.applier import Applier
from aca_agent.dataplane import MemoryDataPlane
from dpm_server.testing import memory_engine, port_goal, published, subnet_goal
from dpm_server.validate import invalid_resources
from gsmq import wire
from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp

A, B = "10.0.0.1", "10.0.0.2"


def without_config_id() -> gs.GoalStateV2:
    g = port_goal("p0", "vpc-1", A, "10.1.0.1", [A, B])
    g.dhcp_states["dhcp-p0"].configuration.id = ""
    return g


def test_an_agent_refuses_a_state_whose_configuration_has_no_id() -> None:
    agent = Applier(MemoryDataPlane(), [A])
    agent.apply_unicast(A, subnet_goal("vpc-1", [A]), {wire.SEQ: "1", wire.EPOCH: "e"})
    result = agent.apply_unicast(A, without_config_id(), {wire.SEQ: "2", wire.EPOCH: "e"})
    assert result is not None
    assert {s.resource_id: s.status for s in result.statuses}["dhcp-p0"] == common.INVALID_ARG


def test_the_dpm_refuses_it_before_publishing_anything() -> None:
    assert invalid_resources(without_config_id()) == {(common.DHCP, "dhcp-p0"): "configuration without id"}
    eng, bus, _ = memory_engine()
    replies: list[gsp.GoalStateOperationReply] = []
    eng.submit(without_config_id(), replies.append)
    (reply,) = replies
    assert [(s.resource_id, s.resource_type, s.operation_status) for s in reply.operation_statuses] == [
        ("dhcp-p0", common.DHCP, common.INVALID_ARG)]
    assert published(bus) == [] and eng.snapshot.resources == {} and eng.tracker.pending == {}
