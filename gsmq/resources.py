"""The resource rules, one home for both daemons (after go-control-plane's resource.go).

A resource is addressed by (ResourceType, id) and its state sits in the per-type map of
a GoalStateV2 named here. The DPM (to validate, split and snapshot) and the ACA (to apply)
ask this module the same questions: which revision supersedes which (`order`), which
subnets a state refers to, whether a neighbor is a host's own port, which types carry
`update_type` or need a subnet, and in which order a message is applied.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from typing import Any

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from gsmq import pbwire
from gsmq.v1 import parts_pb2

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

# Types whose configuration has `update_type` (GatewayConfiguration has none).
HAS_UPDATE_TYPE: frozenset[int] = frozenset(MAP_FIELD) - {common.GATEWAY}

# Types whose states refer to subnets (`subnets_of`): applied once those subnets are held.
NEEDS_SUBNET: frozenset[int] = frozenset({common.PORT, common.DHCP, common.NEIGHBOR})

# Parents before children, so that a port in a subnet of the same message is not PENDING.
APPLY_ORDER: tuple[int, ...] = (
    common.VPC,
    common.SUBNET,
    common.SECURITYGROUP,
    common.ROUTER,
    common.GATEWAY,
    common.PORT,
    common.DHCP,
    common.NEIGHBOR,
)
APPLY_RANK: dict[int, int] = {rtype: i for i, rtype in enumerate(APPLY_ORDER)}


def state_map(goal: gs.GoalStateV2, rtype: int) -> Any:
    """The GoalStateV2 map (id -> XxxState) for resources of `rtype`."""
    return getattr(goal, MAP_FIELD[rtype])


def iter_states(goal: gs.GoalStateV2 | parts_pb2.GoalStateV2Parts) -> Iterator[tuple[int, str, Any]]:
    """Every (type, id, state) carried by the message, in type order."""
    for rtype, field in MAP_FIELD.items():
        for rid, state in getattr(goal, field).items():
            yield rtype, rid, state


# ResourceType -> the field number of its GoalStateV2 map.
_STATE_FIELD: dict[int, int] = {t: gs.GoalStateV2.DESCRIPTOR.fields_by_name[name].number for t, name in MAP_FIELD.items()}
_HEADS: dict[int, bytes] = {}  # format_version -> `head`; a caller's version, so bounded
HEADS_KEPT = 16


# Pieces are written from the states' bytes, as protobuf writes a map entry (key and value
# always, even when empty) or a repeated message: no message is made for one. Each message
# made is an arena of protobuf's, and its Python runtime trims the process's heap
# (`malloc_trim`) every 10,000 arena blocks freed; the pages trimmed are faulted in again.
def piece_of(rtype: int, rid: str, state: Any) -> bytes:
    """A GoalStateV2 holding only this resource, serialized: pieces concatenate into a message."""
    return pbwire.field(_STATE_FIELD[rtype], pbwire.field(1, rid.encode()) + pbwire.field(2, state.SerializeToString()))


def ref_piece(rtype: int, rid: str) -> bytes:
    """A HostResources listing only this resource, serialized: pieces concatenate into a listing."""
    entry = (pbwire.number_field(1, rtype) if rtype else b"") + (pbwire.field(2, rid.encode()) if rid else b"")
    return pbwire.field(1, entry)


def head(format_version: int) -> bytes:
    """A GoalStateV2 holding only its format_version, serialized: the start of a message of pieces."""
    out = _HEADS.get(format_version)
    if out is None:
        out = gs.GoalStateV2(format_version=format_version).SerializeToString()
        if len(_HEADS) < HEADS_KEPT:
            _HEADS[format_version] = out
    return out


def listing_keys(resources: gs.HostResources) -> list[ResourceKey]:
    """The (type, id) a host's listing names, in its order."""
    return [(int(r.type), str(r.id)) for r in resources.resources]


def host_listing(host: str, refs: Iterable[bytes]) -> bytes:
    """A GoalStateV2 holding only host_resources[host], which lists these `ref_piece`s, serialized."""
    return pbwire.field(2, pbwire.field(1, host.encode()) + pbwire.field(2, b"".join(refs)))


# GoalStateV2 field numbers read by `read_bundle`.
_INT32_MAX = 0x7FFFFFFF
_HOST_RESOURCES: int = gs.GoalStateV2.DESCRIPTOR.fields_by_name["host_resources"].number
_VPC_WIDE_FIELD: dict[int, int] = {_STATE_FIELD[t]: t for t in VPC_WIDE}


def read_bundle(raw: bytes, host: str) -> tuple[list[ResourceKey], list[tuple[int, bytes]]] | None:
    """From a serialized GoalStateV2, without parsing it: the (type, id) that
    `host_resources[host]` lists, and the VPC-wide states in wire order, each as (type, its
    map entry field's bytes: a piece, as `piece_of` makes it when the sender serialized it
    so). None when the message holds a field these readers do not read (`gsmq.pbwire`)."""
    listing = b""  # host_resources[host] (the last entry of the key wins, as in parsing)
    pieces: list[tuple[int, bytes]] = []
    i, end = 0, len(raw)
    try:
        while i < end:
            start = i
            number, kind, i = pbwire.tag(raw, i, end)
            if kind == pbwire.VARINT:
                _, i = pbwire.varint_at(raw, i, end)
                continue
            if kind != pbwire.LEN:
                return None
            first, i = pbwire.span(raw, i, end)
            rtype = _VPC_WIDE_FIELD.get(number)
            if rtype is not None:
                pieces.append((rtype, raw[start:i]))
            elif number == _HOST_RESOURCES:
                fields = _fields(raw, first, i)
                if fields.get(1, b"").decode() == host:
                    listing = fields.get(2, b"")
        listed: list[ResourceKey] = []
        i, end = 0, len(listing)
        while i < end:  # HostResources: its resources (field 1), each a ResourceIdType
            number, kind, i = pbwire.tag(listing, i, end)
            if number != 1 or kind != pbwire.LEN:
                return None
            j, i = pbwire.span(listing, i, end)
            rtype, rid = 0, ""
            while j < i:
                number, kind, j = pbwire.tag(listing, j, i)
                if number == 1 and kind == pbwire.VARINT:
                    rtype, j = pbwire.varint_at(listing, j, i)
                elif number == 2 and kind == pbwire.LEN:
                    first, j = pbwire.span(listing, j, i)
                    rid = listing[first:j].decode()
                else:
                    return None
            if rtype > _INT32_MAX:  # parsing would cut it to 32 bits
                return None
            listed.append((rtype, rid))
    except (pbwire.NotReadError, UnicodeDecodeError, ValueError):
        return None
    return listed, pieces


def _fields(data: bytes, i: int, end: int) -> dict[int, bytes]:
    """The length-delimited fields of a map entry (the last of a number wins); ValueError
    for a field of another wire type."""
    out: dict[int, bytes] = {}
    while i < end:
        number, kind, i = pbwire.tag(data, i, end)
        if kind != pbwire.LEN:
            raise ValueError
        first, i = pbwire.span(data, i, end)
        out[number] = data[first:i]
    return out


def piece_id(piece: bytes) -> str | None:
    """The resource id (the map key) of a `read_bundle` piece; None when not read here."""
    try:
        _, _, i = pbwire.tag(piece, 0, len(piece))
        first, end = pbwire.span(piece, i, len(piece))
        return _fields(piece, first, end).get(1, b"").decode()  # proto3: no key is ""
    except (pbwire.NotReadError, UnicodeDecodeError, ValueError):
        return None


def split(payload: bytes, host: str, limit: int) -> list[bytes]:
    """A GoalStateV2 for `host` (serialized, over `limit` bytes) as parts of about `limit`
    bytes at most, in type order: each a GoalStateV2 carrying some of the resources and
    listing those of them the whole message listed for `host` (listed ones it does not
    carry go with the first part). `join` gives the message back. A single resource over
    `limit` makes a part over it."""
    goal = gs.GoalStateV2.FromString(payload)
    has_listing = host in goal.host_resources
    keys = set(listing_keys(goal.host_resources[host])) if has_listing else set()
    chunks: list[tuple[list[bytes], list[bytes]]] = [([], [])]  # (refs, pieces) of each part
    base = len(host) + 32
    size = base
    for rtype, rid, state in iter_states(goal):
        piece = piece_of(rtype, rid, state)
        ref = ref_piece(rtype, rid) if (rtype, rid) in keys else b""
        if chunks[-1][1] and size + len(piece) + len(ref) + 8 > limit:
            chunks.append(([], []))
            size = base
        chunks[-1][0].append(ref)
        chunks[-1][1].append(piece)
        size += len(piece) + len(ref) + 8
        keys.discard((rtype, rid))
    chunks[0][0].extend(ref_piece(rtype, rid) for rtype, rid in sorted(keys))  # listed, not carried
    start = head(goal.format_version)
    return [start + (host_listing(host, refs) if has_listing else b"") + b"".join(pieces) for refs, pieces in chunks]


def join(parts: Iterable[bytes], host: str) -> gs.GoalStateV2:
    """The message `split` cut into `parts` (in order): every state, and every listing of `host`."""
    out = gs.GoalStateV2()
    refs: list[Any] = []
    for raw in parts:
        part = gs.GoalStateV2.FromString(raw)
        if host in part.host_resources:
            refs.extend(part.host_resources[host].resources)
            del part.host_resources[host]
        out.MergeFrom(part)
    if refs:
        out.host_resources[host].resources.extend(refs)
    return out


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


class Order(enum.Enum):
    """How a state relates to the one held for the same resource (`order`)."""

    NEWER = "newer"  # applied: it replaces what is held (or nothing is held)
    SAME = "same"  # the held state again: a duplicate, a no-op (SUCCESS)
    CONFLICT = "conflict"  # the held revision with other content: refused (INVALID_ARG), the held state stays
    OLDER = "older"  # an older revision: refused (OUT_OF_ORDER)


def order(state: Any, held: Any | None) -> Order:
    """Whether `state` supersedes `held`. Revisions decide; a DELETE of revision 0 removes
    whatever is held; at the same revision only the same configuration is a duplicate."""
    if held is None:
        return Order.NEWER
    rev, held_rev = revision_of(state), revision_of(held)
    if state.operation_type == common.DELETE:
        return Order.OLDER if rev and rev < held_rev else Order.NEWER
    if rev != held_rev:
        return Order.NEWER if rev > held_rev else Order.OLDER
    return Order.SAME if state.configuration == held.configuration else Order.CONFLICT


def is_full(rtype: int, state: Any) -> bool:
    """`update_type FULL`: the state replaces the host's (or the VPC's) whole table of its type."""
    return rtype in HAS_UPDATE_TYPE and state.configuration.update_type == common.FULL


def subnets_of(rtype: int, state: Any) -> list[str]:
    """The subnet ids a port, DHCP entry or neighbor (`NEEDS_SUBNET`) refers to."""
    config = state.configuration
    if rtype == common.DHCP:
        return [config.subnet_id] if config.subnet_id else []
    if rtype in NEEDS_SUBNET:
        return [ip.subnet_id for ip in config.fixed_ips if ip.subnet_id]
    return []


def neighbor_host(rtype: int, state: Any) -> str | None:
    """The host a neighbor is located on (None for other types and for a neighbor without configuration)."""
    if rtype != common.NEIGHBOR or not state.HasField("configuration"):
        return None
    return str(state.configuration.host_ip_address)


def own_neighbor(rtype: int, state: Any, host: str) -> bool:
    """A neighbor located on `host` itself is its own port, not a neighbor: the host skips it."""
    return neighbor_host(rtype, state) == host
