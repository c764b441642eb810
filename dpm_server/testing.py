"""Builders for DPM tests (and anyone poking at a DPM by hand): small goal states, and the
reply a well-behaved ACA gives to a goal-state message (docs/internals.md, "Replies").

Kept free of Kafka and gRPC: integration tests put these bytes on a real broker, unit
tests on a `MemoryBus`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from alcor.schema import common_pb2 as common
from alcor.schema import dhcp_pb2, neighbor_pb2, port_pb2, securitygroup_pb2, subnet_pb2
from alcor.schema import goalstate_pb2 as gs
from dpm_server.changelog import Changelog
from dpm_server.engine import Engine
from dpm_server.publisher import Publisher
from dpm_server.snapshot import Snapshot
from gsmq import wire
from gsmq.resources import ResourceKey, iter_states, listing_keys, own_neighbor, state_map
from gsmq.topics import Topics
from gsmq.transport import Envelope, MemoryBus
from gsmq.v1 import ack_pb2
from gsmq.wire import MessageType, Strategy

Item = tuple[int, str, Any]  # (ResourceType, id, XxxState)


def subnet(vpc: str, rid: str | None = None, rev: int = 1, op: int = common.CREATE) -> Item:
    """The subnet `subnet-<vpc>` (or `rid`) of `vpc`."""
    rid = rid or f"subnet-{vpc}"
    config = subnet_pb2.SubnetConfiguration(id=rid, vpc_id=vpc, revision_number=rev, cidr="10.0.0.0/16", tunnel_id=1000)
    return common.SUBNET, rid, subnet_pb2.SubnetState(operation_type=op, configuration=config)  # type: ignore[arg-type]


def port(rid: str, vpc: str, host: str, ip: str, rev: int = 1, op: int = common.CREATE, subnet_id: str | None = None) -> Item:
    """A port of `vpc` bound to `host` with fixed IP `ip` in the VPC's subnet."""
    config = port_pb2.PortConfiguration(id=rid, vpc_id=vpc, revision_number=rev, mac_address="fa:16:3e:00:00:01")
    config.host_info.ip_address = host
    config.fixed_ips.add(subnet_id=subnet_id or f"subnet-{vpc}", ip_address=ip)
    return common.PORT, rid, port_pb2.PortState(operation_type=op, configuration=config)  # type: ignore[arg-type]


def neighbor(rid: str, vpc: str, host: str, ip: str, rev: int = 1, op: int = common.CREATE) -> Item:
    """The neighbor entry of a port of `vpc` located on `host`."""
    config = neighbor_pb2.NeighborConfiguration(id=rid, vpc_id=vpc, revision_number=rev, host_ip_address=host)
    config.fixed_ips.add(subnet_id=f"subnet-{vpc}", ip_address=ip)
    return common.NEIGHBOR, rid, neighbor_pb2.NeighborState(operation_type=op, configuration=config)  # type: ignore[arg-type]


def dhcp(rid: str, vpc: str, ip: str, rev: int = 1, op: int = common.CREATE) -> Item:
    config = dhcp_pb2.DHCPConfiguration(id=rid, subnet_id=f"subnet-{vpc}", ipv4_address=ip, revision_number=rev)
    return common.DHCP, rid, dhcp_pb2.DHCPState(operation_type=op, configuration=config)  # type: ignore[arg-type]


def security_group(rid: str, vpc: str, rev: int = 1, op: int = common.CREATE) -> Item:
    config = securitygroup_pb2.SecurityGroupConfiguration(id=rid, vpc_id=vpc, revision_number=rev)
    config.security_group_rules.add(id=f"{rid}-rule", security_group_id=rid)
    return common.SECURITYGROUP, rid, securitygroup_pb2.SecurityGroupState(operation_type=op, configuration=config)  # type: ignore[arg-type]


def goal(items: Iterable[Item], listed: Mapping[str, Iterable[str]]) -> gs.GoalStateV2:
    """A GoalStateV2 carrying `items`; `listed` maps a host to the ids (of those items) it programs."""
    out = gs.GoalStateV2(format_version=1)
    types: dict[str, int] = {}
    for rtype, rid, state in items:
        state_map(out, rtype)[rid].CopyFrom(state)
        types[rid] = rtype
    for host, ids in listed.items():
        entry = out.host_resources[host]
        for rid in ids:
            entry.resources.add(type=types.get(rid, common.PORT), id=rid)
    return out


def port_goal(pid: str, vpc: str, host: str, ip: str, vpc_hosts: Iterable[str], rev: int = 1, op: int = common.CREATE) -> gs.GoalStateV2:
    """What a caller sends for one port: port + DHCP for its host, its neighbor for the VPC's other hosts."""
    items = [port(pid, vpc, host, ip, rev, op), dhcp(f"dhcp-{pid}", vpc, ip, rev, op), neighbor(f"nb-{pid}", vpc, host, ip, rev, op)]
    listed: dict[str, list[str]] = {host: [pid, f"dhcp-{pid}"]}
    for other in vpc_hosts:
        if other != host:
            listed.setdefault(other, []).append(f"nb-{pid}")
    return goal(items, listed)


def subnet_goal(vpc: str, hosts: Iterable[str], rev: int = 1) -> gs.GoalStateV2:
    """The VPC's subnet, listed for every host of the VPC."""
    item = subnet(vpc, rev=rev)
    return goal([item], {host: [item[1]] for host in hosts})


def keys(message: gs.GoalStateV2) -> set[ResourceKey]:
    """(type, id) of every state a message carries."""
    return {(rtype, rid) for rtype, rid, _ in iter_states(message)}


def applied_keys(message: gs.GoalStateV2, host: str, multicast: bool) -> list[ResourceKey]:
    """What an ACA applies for `host`: a unicast message's listed resources, or a multicast
    message's states minus the neighbors located on `host` itself."""
    if not multicast:
        return listing_keys(message.host_resources[host])
    return [
        (rtype, rid) for rtype, rid, state in iter_states(message) if not own_neighbor(rtype, state, host)
    ]


def ack(
    message: gs.GoalStateV2, incoming: Mapping[str, str], host: str, reply_topic: str,
    status: int = common.SUCCESS, multicast: bool = False, times: tuple[int, int, int] = (1, 2, 3),
) -> Envelope:
    """The ack an ACA that applies in order sends for `host` after applying `message` (its
    watermark at the message's gs-seq; every resource a failure when `status` is not SUCCESS)."""
    epoch, seq = incoming.get(wire.EPOCH, ""), int(incoming.get(wire.SEQ, "0"))
    vpc = incoming.get(wire.VPC_ID, "") if multicast else ""
    progress = ack_pb2.Ack(host_id=host)
    if multicast:
        progress.vpcs.add(vpc_id=vpc, epoch=epoch, seq=seq, seen=seq)
    else:
        progress.epoch, progress.unicast_seq, progress.unicast_seen = epoch, seq, seq
    if status != common.SUCCESS:
        for rtype, rid in applied_keys(message, host, multicast):
            op = state_map(message, rtype)[rid].operation_type if rid in state_map(message, rtype) else common.INFO
            progress.failures.add(vpc_id=vpc, seq=seq, resource_type=rtype, resource_id=rid, operation_type=op, status=status)
    dataplane, config, elapse = times
    t = progress.timing
    t.messages, t.apply_us, t.max_dataplane_us, t.max_config_us, t.max_elapse_us = 1, sum(times), dataplane, config, elapse
    return Envelope(reply_topic, host, progress.SerializeToString())


def memory_engine(
    strategy: str = Strategy.VPC_MULTICAST, timeout: float = 10.0, retry_after: float | None = None, partitions: int = 4,
    durable: bool = False,
) -> tuple[Engine, MemoryBus, Topics]:
    """An Engine publishing to a MemoryBus (start-up markers placed), for unit tests;
    `durable`: it writes its changelog there too (2 partitions), as the daemon does, each
    change committed (at once) before it is published."""
    topics = Topics("u")
    bus = MemoryBus({topics.unicast: partitions, topics.multicast: partitions, topics.reply: 2, topics.changelog: 2})
    publisher = Publisher(bus.sink(), topics, strategy == Strategy.TOPIC_PER_HOST, partitions, 2)
    publisher.place_markers()

    writer = Changelog(Snapshot(strategy), topics.changelog, bus.transactions(), lambda run: run(), eager=True) if durable else None
    engine = Engine(strategy, publisher, retry_after=timeout / 2 if retry_after is None else retry_after, timeout=timeout,
                    changelog=writer)
    return engine, bus, topics


def published(bus: MemoryBus, topic_prefix: str = "") -> list[Envelope]:
    """Every goal-state message on the bus (start-up markers left out), in publishing order
    per partition; only topics starting with `topic_prefix` when given."""
    return [
        m for (topic, _), log in sorted(bus.logs.items()) if topic.startswith(topic_prefix)
        for m in log if m.headers.get(wire.MSG_TYPE) == MessageType.GOAL_STATE
    ]
