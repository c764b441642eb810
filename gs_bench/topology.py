"""A small VPC topology and the GoalStateV2 messages a caller sends to build it."""

from __future__ import annotations

from dataclasses import dataclass

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs


@dataclass(frozen=True)
class Port:
    id: str
    vpc: str
    host: str
    ip: str
    mac: str

    @property
    def subnet(self) -> str:
        return f"subnet-{self.vpc}"


def subnet_message(vpc: str, hosts: list[str], revision: int = 1) -> gs.GoalStateV2:
    """The subnet of `vpc`, listed for every host of the VPC."""
    goal = gs.GoalStateV2(format_version=1)
    sid = f"subnet-{vpc}"
    state = goal.subnet_states[sid]
    state.operation_type = common.CREATE
    cfg = state.configuration
    cfg.revision_number, cfg.id, cfg.vpc_id, cfg.cidr, cfg.tunnel_id = revision, sid, vpc, "10.0.0.0/16", 1000
    for host in hosts:
        goal.host_resources[host].resources.add(type=common.SUBNET, id=sid)
    return goal


def port_message(port: Port, vpc_hosts: list[str], revision: int = 1, op: common.OperationType = common.CREATE) -> gs.GoalStateV2:
    """Create (or update/delete) a port: its port and DHCP state for its host, its neighbor for every other host of the VPC."""
    return ports_message([port], vpc_hosts, revision, op)


def ports_message(ports: list[Port], vpc_hosts: list[str], revision: int = 1, op: common.OperationType = common.CREATE) -> gs.GoalStateV2:
    """`port_message` for several ports of one VPC in one input."""
    goal = gs.GoalStateV2(format_version=1)
    for port in ports:
        _add_port(goal, port, vpc_hosts, revision, op)
    return goal


def _add_port(goal: gs.GoalStateV2, port: Port, vpc_hosts: list[str], revision: int, op: common.OperationType) -> None:
    p = goal.port_states[port.id]
    p.operation_type = op
    p.configuration.revision_number, p.configuration.id, p.configuration.vpc_id = revision, port.id, port.vpc
    p.configuration.mac_address = port.mac
    p.configuration.host_info.ip_address = port.host
    p.configuration.fixed_ips.add(subnet_id=port.subnet, ip_address=port.ip)
    d = goal.dhcp_states[f"dhcp-{port.id}"]
    d.operation_type = op
    d.configuration.revision_number, d.configuration.id = revision, f"dhcp-{port.id}"
    d.configuration.subnet_id, d.configuration.mac_address, d.configuration.ipv4_address = port.subnet, port.mac, port.ip
    n = goal.neighbor_states[f"nb-{port.id}"]
    n.operation_type = op
    n.configuration.revision_number, n.configuration.id, n.configuration.vpc_id = revision, f"nb-{port.id}", port.vpc
    n.configuration.mac_address, n.configuration.host_ip_address = port.mac, port.host
    n.configuration.fixed_ips.add(subnet_id=port.subnet, ip_address=port.ip)
    goal.host_resources[port.host].resources.add(type=common.PORT, id=port.id)
    goal.host_resources[port.host].resources.add(type=common.DHCP, id=f"dhcp-{port.id}")
    for host in vpc_hosts:
        if host != port.host:
            goal.host_resources[host].resources.add(type=common.NEIGHBOR, id=f"nb-{port.id}")


def ports_of(layout: dict[str, dict[str, int]], first: int = 0) -> list[Port]:
    """Ports from {vpc: {host: count}}, with unique ids, IPs and MACs (numbered after `first`)."""
    out: list[Port] = []
    n = first
    for vpc, per_host in layout.items():
        for host, count in per_host.items():
            for _ in range(count):
                n += 1
                out.append(Port(f"port-{n}", vpc, host, f"10.0.{n // 250}.{n % 250 + 2}", f"fa:16:3e:00:{n // 256:02x}:{n % 256:02x}"))
    return out


def expected_tables(messages: list[gs.GoalStateV2], host: str) -> dict[str, dict[str, int]]:
    """What `host` must hold after `messages`: {type name: {id: revision}} from host_resources (creates only)."""
    from gsmq.resources import MAP_FIELD, TYPE_NAME

    tables: dict[str, dict[str, int]] = {}
    for goal in messages:
        for ref in goal.host_resources[host].resources if host in goal.host_resources else []:
            state = getattr(goal, MAP_FIELD[ref.type])[ref.id]
            name = TYPE_NAME[ref.type]
            if state.operation_type == common.DELETE:
                tables.get(name, {}).pop(ref.id, None)
            else:
                tables.setdefault(name, {})[ref.id] = state.configuration.revision_number
    return {k: v for k, v in tables.items() if v}


def tables_of(goal: gs.GoalStateV2) -> dict[str, dict[str, int]]:
    """A GoalStateV2 (an agent's state or a DPM snapshot) as {type name: {id: revision}}."""
    from gsmq.resources import TYPE_NAME, iter_states

    tables: dict[str, dict[str, int]] = {}
    for rtype, rid, state in iter_states(goal):
        tables.setdefault(TYPE_NAME[rtype], {})[rid] = state.configuration.revision_number
    return tables
