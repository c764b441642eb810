"""The resource types of a GoalStateV2 and where each lives in the message.

One table, used by the DPM (to split and snapshot) and the ACA (to apply): a resource
is addressed by (ResourceType, id) and its state sits in the per-type map named here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs

ResourceKey = tuple[int, str]  # (ResourceType value, resource id)

# ResourceType -> name of the GoalStateV2 map field holding states of that type.
MAP_FIELD: dict[int, str] = {
    common.VPC: "vpc_states",
    common.SUBNET: "subnet_states",
    common.PORT: "port_states",
    common.NEIGHBOR: "neighbor_states",
    common.SECURITYGROUP: "security_group_states",
    common.DHCP: "dhcp_states",
    common.ROUTER: "router_states",
    common.GATEWAY: "gateway_states",
}

# States shared by every host of a VPC: carried once per VPC on the multicast channel.
VPC_WIDE: frozenset[int] = frozenset({common.SUBNET, common.NEIGHBOR, common.SECURITYGROUP})

TYPE_NAME: dict[int, str] = {value: common.ResourceType.Name(value) for value in MAP_FIELD}


def state_map(goal: gs.GoalStateV2, rtype: int) -> Any:
    """The GoalStateV2 map (id -> XxxState) for resources of `rtype`."""
    return getattr(goal, MAP_FIELD[rtype])


def iter_states(goal: gs.GoalStateV2) -> Iterator[tuple[int, str, Any]]:
    """Every (type, id, state) carried by the message, in type order."""
    for rtype, field in MAP_FIELD.items():
        for rid, state in getattr(goal, field).items():
            yield rtype, rid, state


def vpc_of(rtype: int, state: Any) -> str:
    """The VPC a resource belongs to ('' when its type does not say)."""
    config = state.configuration
    if rtype == common.VPC:
        return str(config.id)
    if rtype in (common.SUBNET, common.PORT, common.NEIGHBOR, common.SECURITYGROUP):
        return str(config.vpc_id)
    if rtype == common.GATEWAY and config.WhichOneof("extra_info") == "arion_info":
        return str(config.arion_info.vpc_id)
    return ""


def revision_of(state: Any) -> int:
    return int(state.configuration.revision_number)


def copy_state(dst: gs.GoalStateV2, rtype: int, rid: str, state: Any) -> None:
    """Put `state` into `dst` under (rtype, rid)."""
    state_map(dst, rtype)[rid].CopyFrom(state)
