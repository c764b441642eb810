"""Invalid input: INVALID_ARG for the offending resources and nothing of the message
published or stored; what an agent would refuse, the DPM refuses first (docs/internals.md,
"The caller's reply")."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aca_agent.applier import Applier
from aca_agent.dataplane import MemoryDataPlane
from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp
from dpm_server.inputs import Input
from dpm_server.testing import memory_engine, port_goal, published, subnet_goal
from dpm_server.validate import invalid_resources
from gsmq import wire

A, B = "10.0.0.1", "10.0.0.2"


def lists_missing(g: gs.GoalStateV2) -> tuple[int, str]:
    g.host_resources[B].resources.add(type=common.DHCP, id="not-in-message")
    return common.DHCP, "not-in-message"


def empty_id(g: gs.GoalStateV2) -> tuple[int, str]:
    g.port_states[""].CopyFrom(g.port_states["p0"])
    return common.PORT, ""


def no_configuration(g: gs.GoalStateV2) -> tuple[int, str]:
    g.neighbor_states["nb-bare"].operation_type = common.CREATE
    return common.NEIGHBOR, "nb-bare"


def lists_empty_id(g: gs.GoalStateV2) -> tuple[int, str]:
    g.host_resources[A].resources.add(type=common.PORT, id="")
    return common.PORT, ""


def unknown_type(g: gs.GoalStateV2) -> tuple[int, str]:
    g.host_resources[A].resources.add(type=42, id="p0")
    return 42, "p0"


def unlisted_port(g: gs.GoalStateV2) -> tuple[int, str]:
    kept = [r for r in g.host_resources[A].resources if r.id != "p0"]
    del g.host_resources[A].resources[:]
    g.host_resources[A].resources.extend(kept)
    return common.PORT, "p0"


def everything_removed(g: gs.GoalStateV2) -> tuple[int, str]:
    g.Clear()
    return 0, ""


@pytest.mark.parametrize("spoil", [lists_missing, empty_id, no_configuration, lists_empty_id, unknown_type, unlisted_port,
                                   everything_removed])
def test_invalid_input_is_refused_whole(spoil: Callable[[gs.GoalStateV2], tuple[int, str]]) -> None:
    eng, bus, _ = memory_engine()
    g = port_goal("p0", "vpc-1", A, "10.1.0.0", [A, B])
    bad_type, bad_id = spoil(g)
    replies: list[gsp.GoalStateOperationReply] = []
    eng.submit(g, replies.append)
    (reply,) = replies
    statuses = [(s.resource_id, s.operation_status) for s in reply.operation_statuses]
    assert statuses == [(bad_id, common.INVALID_ARG)]
    expected_type = bad_type if bad_type in common.ResourceType.values() else common.VPC
    assert reply.operation_statuses[0].resource_type == expected_type
    assert published(bus) == []  # nothing of the message, not even its valid resources
    assert eng.snapshot.resources == {} and eng.tracker.pending == {}
    assert eng.counts()["invalid_requests"] == 1


def test_a_vpc_wide_state_listed_for_no_host_is_accepted() -> None:
    g = port_goal("p0", "vpc-1", A, "10.1.0.0", [A])  # the VPC's first port: its neighbor is for no other host yet
    assert not any(r.id == "nb-p0" for hr in g.host_resources.values() for r in hr.resources)
    assert invalid_resources(Input.of(g)) == {}


def test_a_valid_message_has_no_problems_and_a_delete_needs_its_configuration_too() -> None:
    g = port_goal("p0", "vpc-1", A, "10.1.0.0", [A, B])
    assert invalid_resources(Input.of(g)) == {}
    g.port_states["p0"].ClearField("configuration")
    g.port_states["p0"].operation_type = common.DELETE
    assert invalid_resources(Input.of(g)) == {(common.PORT, "p0"): "resource without configuration"}


def test_an_invalid_input_in_a_coalesced_batch_refuses_only_itself() -> None:
    eng, bus, _ = memory_engine()
    good, bad = port_goal("p0", "vpc-1", A, "10.1.0.0", [A]), port_goal("p1", "vpc-1", A, "10.1.0.1", [A])
    lists_missing(bad)
    replies: dict[str, gsp.GoalStateOperationReply] = {}
    eng.submit_many([(good, lambda r: replies.__setitem__("good", r)), (bad, lambda r: replies.__setitem__("bad", r))])
    assert [s.operation_status for s in replies["bad"].operation_statuses] == [common.INVALID_ARG]
    assert "good" not in replies  # published, waiting for A
    assert {m.key for m in published(bus)} == {A} and (common.PORT, "p1") not in eng.snapshot.resources


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
    assert invalid_resources(Input.of(without_config_id())) == {(common.DHCP, "dhcp-p0"): "configuration without id"}
    eng, bus, _ = memory_engine()
    replies: list[gsp.GoalStateOperationReply] = []
    eng.submit(without_config_id(), replies.append)
    (reply,) = replies
    assert [(s.resource_id, s.resource_type, s.operation_status) for s in reply.operation_statuses] == [
        ("dhcp-p0", common.DHCP, common.INVALID_ARG)]
    assert published(bus) == [] and eng.snapshot.resources == {} and eng.tracker.pending == {}


def other_content(g: gs.GoalStateV2) -> gs.GoalStateV2:
    """`g` with the port's MAC changed, at the same revision."""
    changed = gs.GoalStateV2()
    changed.CopyFrom(g)
    changed.port_states["p0"].configuration.mac_address = "aa:bb:cc:dd:ee:ff"
    return changed


def test_the_stored_revision_with_other_content_is_refused_whole_and_the_stored_state_stays() -> None:
    eng, bus, _ = memory_engine()
    first = port_goal("p0", "vpc-1", A, "10.1.0.0", [A])
    eng.submit(first, lambda r: None)
    seen = len(published(bus))
    replies: list[gsp.GoalStateOperationReply] = []
    eng.submit(other_content(first), replies.append)
    assert [(s.resource_id, s.operation_status) for s in replies[0].operation_statuses] == [("p0", common.INVALID_ARG)]
    assert len(published(bus)) == seen and eng.snapshot.resources[(common.PORT, "p0")].state == first.port_states["p0"]
    eng.submit(first, replies.append)  # the same again is a duplicate: published, not refused
    assert len(published(bus)) > seen and len(replies) == 1


def test_the_same_revision_with_other_content_in_one_batch_refuses_the_later_input_only() -> None:
    eng, _bus, _ = memory_engine()
    first = port_goal("p0", "vpc-1", A, "10.1.0.0", [A])
    replies: dict[str, gsp.GoalStateOperationReply] = {}
    eng.submit_many([(first, lambda r: replies.__setitem__("first", r)),
                     (other_content(first), lambda r: replies.__setitem__("second", r))])
    assert [s.operation_status for s in replies["second"].operation_statuses] == [common.INVALID_ARG]
    assert "first" not in replies  # published, waiting for A
    assert eng.snapshot.resources[(common.PORT, "p0")].state == first.port_states["p0"]
