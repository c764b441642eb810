"""The schema against messages encoded by another implementation, and round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proto import common_pb2 as common
from proto import goalstate_pb2 as gs
from proto import goalstateprovisioner_pb2 as gsp

VECTOR_TYPES = {"goalstatev2_small": gs.GoalStateV2, "goalstatev2_gateway": gs.GoalStateV2, "reply_small": gsp.GoalStateOperationReply}


@pytest.mark.parametrize("name", sorted(VECTOR_TYPES))
def test_vector_decodes_to_exactly_its_json(vectors_dir: Path, name: str) -> None:
    msg = VECTOR_TYPES[name]()
    msg.ParseFromString((vectors_dir / f"{name}.bin").read_bytes())
    assert json_format.MessageToDict(msg, preserving_proto_field_name=True) == json.loads((vectors_dir / f"{name}.json").read_text())


def test_every_vector_is_covered(vectors_dir: Path) -> None:
    assert {p.stem for p in vectors_dir.glob("*.bin")} == set(VECTOR_TYPES)


def test_field_numbers_of_the_contract() -> None:
    """A few numbers that a renumbering would break, read from the descriptors."""
    v2 = gs.GoalStateV2.DESCRIPTOR.fields_by_name
    assert [v2[n].number for n in ("format_version", "host_resources", "vpc_states", "gateway_states")] == [1, 2, 3, 10]
    status = gsp.GoalStateOperationReply.GoalStateOperationStatus.DESCRIPTOR.fields_by_name
    assert status["state_elapse_time"].number == 7
    assert common.ResourceType.Value("GATEWAY") == 7 and common.OperationStatus.Value("OUT_OF_ORDER") == 4


text = st.text(max_size=12)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
op = st.sampled_from(list(common.OperationType.values()))
update = st.sampled_from(list(common.UpdateType.values()))


@st.composite
def goal_states(draw: st.DrawFn) -> gs.GoalStateV2:
    goal = gs.GoalStateV2(format_version=draw(u32))
    for rid in draw(st.lists(text, max_size=3)):
        p = goal.port_states[rid]
        p.operation_type = draw(op)
        c = p.configuration
        c.revision_number, c.id, c.update_type, c.vpc_id, c.admin_state_up = draw(u32), rid, draw(update), draw(text), draw(st.booleans())
        c.host_info.ip_address = draw(text)
        for _ in range(draw(st.integers(0, 2))):
            c.fixed_ips.add(subnet_id=draw(text), ip_address=draw(text))
            c.security_group_ids.add(id=draw(text))
    for rid in draw(st.lists(text, max_size=2)):
        s = goal.subnet_states[rid]
        s.configuration.id, s.configuration.tunnel_id, s.configuration.dhcp_enable = rid, draw(u64), draw(st.booleans())
        s.configuration.network_type = draw(st.sampled_from(list(common.NetworkType.values())))
        s.configuration.gateway.ip_address = draw(text)
        s.configuration.dns_entry_list.add(entry=draw(text))
    for rid in draw(st.lists(text, max_size=2)):
        n = goal.neighbor_states[rid]
        n.operation_type = draw(op)
        n.configuration.host_ip_address = draw(text)
        n.configuration.fixed_ips.add(neighbor_type=draw(st.sampled_from([0, 1])), tunnel_id=draw(u32), ip_address=draw(text))
    for rid in draw(st.lists(text, max_size=2)):
        g = goal.gateway_states[rid]
        g.configuration.gateway_type = draw(st.sampled_from(list(range(6))))
        if draw(st.booleans()):
            g.configuration.zeta_info.port_inband_operation = draw(u32)
        else:
            g.configuration.arion_info.vpc_id, g.configuration.arion_info.vni = draw(text), draw(u32)
        g.configuration.destinations.add(ip_address=draw(text), mac_address=draw(text))
    for rid in draw(st.lists(text, max_size=2)):
        sg = goal.security_group_states[rid]
        sg.configuration.security_group_rules.add(direction=draw(st.sampled_from([0, 1])), port_range_max=draw(u32), protocol=draw(st.sampled_from(list(range(5)))))
    for host in draw(st.lists(text, max_size=3)):
        for _ in range(draw(st.integers(0, 3))):
            goal.host_resources[host].resources.add(type=draw(st.sampled_from(list(common.ResourceType.values()))), id=draw(text))
    return goal


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(goal_states())
def test_random_goal_state_round_trips_through_bytes_and_json(goal: gs.GoalStateV2) -> None:
    again = gs.GoalStateV2.FromString(goal.SerializeToString())
    assert again == goal
    via_json = json_format.Parse(json_format.MessageToJson(goal, preserving_proto_field_name=True), gs.GoalStateV2())
    assert via_json == goal
    via_dict = json_format.ParseDict(json_format.MessageToDict(goal, preserving_proto_field_name=True), gs.GoalStateV2())
    assert via_dict == goal
