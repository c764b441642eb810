"""Builders of small goal states, for tests (and anyone poking at an agent by hand)."""

from __future__ import annotations

from typing import Any

from alcor.schema import common_pb2 as common
from alcor.schema import dhcp_pb2, neighbor_pb2, port_pb2, securitygroup_pb2, subnet_pb2, vpc_pb2
from alcor.schema import goalstate_pb2 as gs
from gsmq.resources import state_map

Item = tuple[common.ResourceType, str, Any]  # (type, id, XxxState)


def vpc(rid: str = "vpc-1", rev: int = 1, op: common.OperationType = common.CREATE) -> Item:
    config = vpc_pb2.VpcConfiguration(id=rid, revision_number=rev, cidr="10.0.0.0/16")
    return common.VPC, rid, vpc_pb2.VpcState(operation_type=op, configuration=config)


def subnet(rid: str = "sn-1", vpc_id: str = "vpc-1", rev: int = 1, op: common.OperationType = common.CREATE, full: bool = False) -> Item:
    config = subnet_pb2.SubnetConfiguration(
        id=rid, vpc_id=vpc_id, revision_number=rev, cidr="10.0.1.0/24", update_type=common.FULL if full else common.DELTA
    )
    return common.SUBNET, rid, subnet_pb2.SubnetState(operation_type=op, configuration=config)


def port(
    rid: str = "port-1", subnet_id: str = "sn-1", vpc_id: str = "vpc-1", rev: int = 1,
    op: common.OperationType = common.CREATE, full: bool = False,
) -> Item:
    config = port_pb2.PortConfiguration(id=rid, vpc_id=vpc_id, revision_number=rev, update_type=common.FULL if full else common.DELTA)
    if subnet_id:
        config.fixed_ips.add(subnet_id=subnet_id, ip_address="10.0.1.5")
    return common.PORT, rid, port_pb2.PortState(operation_type=op, configuration=config)


def neighbor(
    rid: str, host_ip: str, subnet_id: str = "sn-1", vpc_id: str = "vpc-1", rev: int = 1, op: common.OperationType = common.CREATE
) -> Item:
    config = neighbor_pb2.NeighborConfiguration(id=rid, vpc_id=vpc_id, revision_number=rev, host_ip_address=host_ip)
    config.fixed_ips.add(subnet_id=subnet_id, ip_address="10.0.1.9")
    return common.NEIGHBOR, rid, neighbor_pb2.NeighborState(operation_type=op, configuration=config)


def dhcp(rid: str = "dhcp-1", subnet_id: str = "sn-1", rev: int = 1, op: common.OperationType = common.CREATE) -> Item:
    config = dhcp_pb2.DHCPConfiguration(id=rid, subnet_id=subnet_id, revision_number=rev)
    return common.DHCP, rid, dhcp_pb2.DHCPState(operation_type=op, configuration=config)


def security_group(
    rid: str = "sg-1", vpc_id: str = "vpc-1", rules: int = 2, rev: int = 1, op: common.OperationType = common.CREATE
) -> Item:
    config = securitygroup_pb2.SecurityGroupConfiguration(id=rid, vpc_id=vpc_id, revision_number=rev)
    for i in range(rules):
        config.security_group_rules.add(id=f"{rid}-rule-{i}", security_group_id=rid)
    return common.SECURITYGROUP, rid, securitygroup_pb2.SecurityGroupState(operation_type=op, configuration=config)


def goal_state(host: str | None, *items: Item) -> gs.GoalStateV2:
    """A GoalStateV2 carrying `items`; host_resources[host] lists them (empty when host is None)."""
    goal = gs.GoalStateV2(format_version=1)
    for rtype, rid, state in items:
        state_map(goal, rtype)[rid].CopyFrom(state)
        if host is not None:
            goal.host_resources[host].resources.add(type=rtype, id=rid)
    return goal


def listed(goal: gs.GoalStateV2, host: str) -> set[tuple[int, str]]:
    """(type, id) of every resource host_resources[host] lists."""
    return {(r.type, r.id) for r in goal.host_resources[host].resources}
