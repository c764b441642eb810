"""The desired state of every host (after go-control-plane's snapshot cache).

Each resource is stored once, as its serialized form (its state is parsed from it when
asked for: a parsed state would keep alive the whole input message it came from); a host
holds the ids it was given (ids and host names interned, held once); a VPC holds its VPC-wide resources (subnets, neighbors,
security groups). What a host should program, its *view*, is derived from these, the
same way the ACA derives it (docs/internals.md):
- every strategy: the host-specific resources listed for it, and the VPC-wide ones
  listed for it in VPCs where it has no port;
- `vpc-multicast`: plus every VPC-wide state of the VPCs where it has ports, minus
  neighbors that are its own ports;
- `unicast-only`, `topic-per-host`: plus the VPC-wide states listed for it.
A host leaving a VPC (its last port there deleted) drops that VPC's VPC-wide states.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from dpm_server.inputs import Input, as_input, base_of
from gsmq.resources import (
    HAS_UPDATE_TYPE,
    NEEDS_SUBNET,
    TYPE_NAME,
    VPC_WIDE,
    Order,
    ResourceKey,
    head,
    host_listing,
    is_full,
    iter_states,
    neighbor_host,
    order,
    ref_piece,
    subnets_of,
)
from gsmq.wire import Strategy

_ADDRESSED = frozenset({common.PORT, common.NEIGHBOR})
# Host-specific types with an update_type: FULL replaces the host's table of the type.
_HOST_FULL = HAS_UPDATE_TYPE - VPC_WIDE


@dataclass(init=False, slots=True)
class Stored:
    """One resource: the GoalStateV2 bytes carrying just it, its listing entry, its VPC, and where a neighbor is located."""

    piece: bytes
    ref: bytes  # `resources.ref_piece`: the resource in a host's listing
    vpc: str
    located: str | None  # `resources.neighbor_host` of the state

    def __init__(self, piece: bytes, ref: bytes, vpc: str, located: str | None = None) -> None:
        self.piece = piece
        self.ref = ref
        self.vpc = vpc
        self.located = located

    @property
    def state(self) -> Any:
        """The state, parsed from `piece` (a fresh message each time)."""
        return next(iter_states(gs.GoalStateV2.FromString(self.piece)))[2]


@dataclass(init=False)
class Change:
    """What applying one input did to the hosts' VPC memberships."""

    joined: dict[str, set[str]]  # host -> VPCs joined
    left: dict[str, set[str]]  # host -> VPCs left
    members_before: dict[str, set[str]]  # vpc -> hosts with ports before (changed VPCs only)

    def __init__(self) -> None:
        self.joined = defaultdict(set)
        self.left = defaultdict(set)
        self.members_before = {}

    def joiners(self, vpc: str) -> set[str]:
        """The hosts that joined `vpc`."""
        return {host for host, vpcs in self.joined.items() if vpc in vpcs}

    def members_of(self, vpc: str, snapshot: Snapshot) -> set[str]:
        """The hosts with ports in `vpc` before the change."""
        before = self.members_before.get(vpc)
        return before if before is not None else snapshot.members.get(vpc, set())


class Snapshot:
    """Desired state per host; resources stored once. Under `vpc-multicast` (`strategy`) a
    host's view of the VPCs where it has ports comes from the VPCs' own lists, so the
    VPC-wide ids listed to a member host are not kept per host: a VPC of P ports on H hosts
    costs O(P + H), not O(P x H)."""

    def __init__(self, strategy: str | None = None) -> None:
        self.derive_members = strategy == Strategy.VPC_MULTICAST
        self.resources: dict[ResourceKey, Stored] = {}
        self.listed: dict[str, set[ResourceKey]] = defaultdict(set)  # host -> ids given to it
        self.vpc_wide: dict[str, dict[ResourceKey, Stored]] = defaultdict(dict)  # vpc -> its VPC-wide resources
        self.host_ports: dict[str, dict[str, set[str]]] = defaultdict(dict)  # host -> {vpc: its port ids there}
        self.vpc_ports: dict[str, int] = defaultdict(int)  # vpc -> its ports placed on hosts (a port counts once per host)
        self.members: dict[str, set[str]] = defaultdict(set)  # vpc -> hosts with ports there
        self.holders: dict[ResourceKey, set[str]] = defaultdict(set)  # id -> hosts listing it
        self.addresses: dict[str, set[ResourceKey]] = defaultdict(set)  # fixed IP -> ports/neighbors holding it
        self.touched: set[ResourceKey] = set()  # ids whose state or hosts changed since `take_touched`
        # vpc -> (hosts, whether they lie within its members, the members' count then), for
        # `within_members`: kept until a member leaves (a join keeps "within" true).
        self._within: dict[str, tuple[set[str], bool, int]] = {}

    # ---- reading ---------------------------------------------------------------------

    def hosts(self) -> list[str]:
        return sorted(h for h, ids in self.listed.items() if ids)

    def host_vpcs(self, host: str) -> set[str]:
        return set(self.host_ports.get(host, ()))

    def within_members(self, vpc: str, hosts: set[str]) -> bool:
        """Whether `hosts` are known to lie within the VPC's members: so when the set they
        were made from (`base_of`) does. A `Part`'s base is checked here (O(its hosts)) and
        the answer kept for the VPC: "within" until a member leaves, "not within" until the
        members change; any other set is only looked up."""
        members = self.members.get(vpc)
        if not members:
            return False
        base = base_of(hosts)
        known = self._within.get(vpc)
        if known is not None and known[0] is base and (known[1] or known[2] == len(members)):
            return known[1]
        if base is hosts:
            return False
        held = base <= members
        self._within[vpc] = (base, held, len(members))
        return held

    def outside(self, vpc: str, hosts: set[str]) -> set[str]:
        """`hosts` that are not members of the VPC: none, without reading them, when they
        are known to lie within (`within_members`)."""
        members = self.members.get(vpc)
        if not members:
            return hosts
        return set() if self.within_members(vpc, hosts) else hosts - members

    def view(self, host: str, strategy: str) -> list[ResourceKey]:
        """Every resource `host` should hold under `strategy`, sorted."""
        vpcs = self.host_vpcs(host)
        keys: set[ResourceKey] = set()
        for key in self.listed.get(host, ()):
            stored = self.resources.get(key)
            if stored is None:
                continue
            if key[0] not in VPC_WIDE or strategy != Strategy.VPC_MULTICAST or stored.vpc not in vpcs:
                keys.add(key)
        if strategy == Strategy.VPC_MULTICAST:
            for vpc in vpcs:
                keys.update(key for key, _ in self.vpc_view(vpc, host))
        return sorted(keys)

    def vpc_view(self, vpc: str, host: str) -> Iterator[tuple[ResourceKey, Stored]]:
        """The VPC-wide resources of `vpc` a member `host` holds: all but its own neighbors."""
        return ((key, stored) for key, stored in self.vpc_wide.get(vpc, {}).items() if stored.located != host)

    def message(self, keys: list[ResourceKey], host: str | None = None, format_version: int = 1) -> bytes:
        """A serialized GoalStateV2 of these stored resources (listed for `host` if given)."""
        held = [self.resources[k] for k in keys if k in self.resources]
        start = head(format_version)
        if host is not None:
            start += host_listing(host, [stored.ref for stored in held])
        return start + b"".join(stored.piece for stored in held)

    def as_goal_state(self, host: str, strategy: str) -> gs.GoalStateV2:
        """The host's view as one GoalStateV2 (for status and comparison)."""
        goal = gs.GoalStateV2()
        goal.ParseFromString(self.message(self.view(host, strategy), host))
        return goal

    def routable(self, host: str, address: str) -> bool:
        """Whether `address` is a fixed IP of a port or neighbor in one of `host`'s VPCs."""
        vpcs = self.host_vpcs(host)
        return any(self.resources[key].vpc in vpcs for key in self.addresses.get(address, ()))

    def consistent(self) -> list[str]:
        """Every problem of the whole snapshot (empty: consistent), like go-control-plane's Consistent()."""
        problems = [f"host {h} lists missing {k}" for h, ids in self.listed.items() for k in ids if k not in self.resources]
        problems += [f"vpc {vpc} holds {k} not as stored" for vpc, wide in self.vpc_wide.items() for k, held in wide.items()
                     if self.resources.get(k) is not held]
        return problems + self.problems(self.resources)

    def problems(self, keys: Iterable[ResourceKey], given: Mapping[ResourceKey, Any] | None = None) -> list[str]:
        """References of these stored resources that do not resolve: a port, DHCP entry or neighbor
        whose subnet is unknown (the ACA holds such a state PENDING until its subnet arrives).
        `given`: states already parsed (an input just applied), read instead of parsing stored ones."""
        out: list[str] = []
        for key in keys:
            stored = self.resources.get(key)
            if stored is None or key[0] not in NEEDS_SUBNET:
                continue
            state = given[key] if given is not None and key in given else stored.state
            out.extend(f"{TYPE_NAME[key[0]].lower()} {key[1]} in unknown subnet {subnet}"
                       for subnet in subnets_of(key[0], state) if (common.SUBNET, subnet) not in self.resources)
        return out

    def entry(self, key: ResourceKey) -> tuple[Stored, list[str]] | None:
        """What the changelog keeps of `key`: its stored state and the hosts it is listed
        for (None: not stored). With `restore` it rebuilds every index."""
        stored = self.resources.get(key)
        return None if stored is None else (stored, sorted(self.holders.get(key, ())))

    # ---- writing ---------------------------------------------------------------------

    def take_touched(self) -> set[ResourceKey]:
        """The ids whose `entry` changed since the last call."""
        touched, self.touched = self.touched, set()
        return touched

    def restore(self, key: ResourceKey, piece: bytes, vpc: str, hosts: Iterable[str]) -> None:
        """Put back one `entry` read from the changelog (a snapshot rebuilt from every entry
        equals the one that wrote them)."""
        rtype = key[0]
        state = next(iter_states(gs.GoalStateV2.FromString(piece)))[2]
        old = self.resources.get(key)
        if old is not None:
            self._forget(key)
        vpc = sys.intern(vpc)
        self._store(key, Stored(piece, ref_piece(*key), vpc, neighbor_host(rtype, state)), state)
        for name in hosts:
            host = sys.intern(name)
            self.listed[host].add(key)
            self.holders[key].add(host)
            if rtype == common.PORT:
                self._set_port(host, key[1], vpc)
                self.members[vpc].add(host)


    def apply(self, given: Input | gs.GoalStateV2) -> Change:
        """Record a (valid) input: store, delete, list per host; report VPC joins and leaves.
        Under `vpc-multicast` a group listing only VPC-wide states is looked at host by host
        only for its hosts outside those states' VPCs: a member holds them through its VPC."""
        inp = as_input(given)
        change = Change()
        # Only ports make a host a member of a VPC: its VPCs can change only if it holds a port
        # this input changes (taken now) or is given a port here (taken in `_list`).
        before = {host: self.host_vpcs(host) for key in inp.states if key[0] == common.PORT for host in self.holders.get(key, ())}
        full = {key for key, state in inp.states.items() if key[0] in _HOST_FULL and is_full(key[0], state)}
        deletes: set[ResourceKey] = set()
        self.touched.update(inp.states)
        for key, state in inp.states.items():
            rtype = key[0]
            old = self.resources.get(key)
            verdict = order(state, old.state if old is not None else None)
            if state.operation_type == common.DELETE:
                deletes.add(key)
                if verdict is Order.NEWER:
                    self._forget(key)  # an older DELETE is refused, as an ACA refuses it
                continue
            if verdict is not Order.NEWER:
                continue  # only a newer revision replaces what is stored
            if old is not None:
                self._unindex(key, old)
            self._store(key, Stored(inp.pieces[key], inp.refs[key], sys.intern(inp.vpc(key)), neighbor_host(rtype, state)), state)
        wide_only = []
        for group in inp.groups:
            keys = [k for k in group.keys if k not in deletes and k in self.resources]  # else deleted, refused or never stored
            if self.derive_members and all(k[0] in VPC_WIDE for k in keys):
                wide_only.append((group, keys))
                continue
            for host in group.hosts:  # ports first: they say which VPCs the host is a member of
                self._list(sys.intern(host), keys, before, inp if full & set(group.keys) else None, full)
        joined, left = [], []
        for host, had in before.items():
            after = self.host_vpcs(host)
            for vpc in after ^ had:  # copied before its first change only: O(what changed)
                change.members_before.setdefault(vpc, set(self.members.get(vpc, ())))
            for vpc in after - had:
                change.joined[host].add(vpc)
                self.members[vpc].add(host)
                joined.append((host, vpc))
            for vpc in had - after:
                change.left[host].add(vpc)
                self._discard(self.members, vpc, host)
                self._within.pop(vpc, None)
                left.append((host, vpc))
        for group, keys in wide_only:
            by_vpc: dict[str, list[ResourceKey]] = defaultdict(list)
            for key in keys:
                by_vpc[self.resources[key].vpc].append(key)
            for vpc, mine in by_vpc.items():
                for name in self.outside(vpc, group.hosts):
                    host = sys.intern(name)
                    self.listed[host].update(mine)
                    self.touched.update(mine)
                    for key in mine:
                        self.holders[key].add(host)
        for host, vpc in joined if self.derive_members else ():
            self._unlist_vpc(host, vpc)  # in the host's view through its VPC from now on
        for host, vpc in left:
            self._unlist_vpc(host, vpc)
        return change

    def _list(self, host: str, keys: list[ResourceKey], before: dict[str, set[str]], full_of: Input | None,
              full: set[ResourceKey]) -> None:
        """Give `host` these (stored) keys; `full_of`: the input, when the host's group lists a FULL state."""
        if host not in before and any(k[0] == common.PORT for k in keys):
            before[host] = self.host_vpcs(host)
        if full_of is not None:
            self._replace_full_tables(host, full_of.keys_of(host), full)
        for key in keys:
            if key[0] == common.PORT:
                self._set_port(host, key[1], self.resources[key].vpc)
        member_of = self.host_ports.get(host, {}) if self.derive_members else {}
        for key in keys:
            if key[0] in VPC_WIDE and self.resources[key].vpc in member_of:
                continue  # in the host's view through its VPC
            self.listed[host].add(key)
            self.holders[key].add(host)
            self.touched.add(key)

    # An index entry whose set becomes empty is deleted, and a set that loses many items is
    # built anew (a Python set never shrinks its table): memory follows what is held now.

    @staticmethod
    def _discard(index: dict[Any, Any], name: Any, item: Any) -> None:
        """Take `item` out of `index[name]` (a set, or a dict by key); an emptied one goes."""
        held = index.get(name)
        if held is not None:
            if isinstance(held, dict):
                held.pop(item, None)
            else:
                held.discard(item)
            if not held:
                del index[name]

    def _unlist(self, host: str, keys: set[ResourceKey]) -> None:
        """Take `keys` out of what `host` was given (and `host` out of their holders)."""
        if not keys:
            return
        self.touched.update(keys)
        left = {k for k in self.listed.get(host, ()) if k not in keys}
        if left:
            self.listed[host] = left
        else:
            self.listed.pop(host, None)
        for key in keys:
            self._discard(self.holders, key, host)

    def _unlist_vpc(self, host: str, vpc: str) -> None:
        """Take `vpc`'s VPC-wide ids out of what `host` was given."""
        self._unlist(host, {k for k in self.listed.get(host, ()) if k[0] in VPC_WIDE and self._vpc(k) == vpc})

    def _replace_full_tables(self, host: str, given: list[ResourceKey], full: set[ResourceKey]) -> None:
        """`update_type FULL` on a host-specific state listed for `host` (`full`: the input's
        FULL states): the host's table of that type becomes what the message lists of it, as
        on the ACA. (VPC-wide types are left alone: on the multicast channel FULL scopes to
        the VPC on every follower.)"""
        mine = set(given)
        types = {key[0] for key in mine & full}
        if not types:
            return  # nothing FULL listed for this host: no need to walk its whole list
        dropped = {k for k in self.listed.get(host, ()) if k[0] in types and k not in mine}
        self._unlist(host, dropped)
        for key in dropped:
            if key[0] == common.PORT:
                self._drop_port(host, key[1])

    def _set_port(self, host: str, port: str, vpc: str) -> None:
        """`port` is on `host`, in `vpc` (a port moved to another VPC leaves the old one)."""
        self._drop_port(host, port, keep=vpc)
        ports = self.host_ports[host].setdefault(vpc, set())
        if port not in ports:
            ports.add(port)
            self.vpc_ports[vpc] += 1

    def _drop_port(self, host: str, port: str, keep: str | None = None) -> None:
        """`port` is no longer on `host` (in any VPC but `keep`): O(the host's VPCs)."""
        ports = self.host_ports.get(host)
        if not ports:
            return
        for vpc in [v for v, ids in ports.items() if v != keep and port in ids]:
            ports[vpc].discard(port)
            self.vpc_ports[vpc] -= 1
            if not self.vpc_ports[vpc]:
                del self.vpc_ports[vpc]
            if not ports[vpc]:
                del ports[vpc]
        if not ports:
            del self.host_ports[host]

    def _vpc(self, key: ResourceKey) -> str:
        stored = self.resources.get(key)
        return stored.vpc if stored is not None else ""

    def _store(self, key: ResourceKey, stored: Stored, state: Any) -> None:
        """Hold `stored` (whose state is `state`) as `key`, in the VPC and IP indexes too (`_unindex` undoes it)."""
        self.resources[key] = stored
        if key[0] in _ADDRESSED:
            for ip in state.configuration.fixed_ips:
                if ip.ip_address:
                    self.addresses[sys.intern(ip.ip_address)].add(key)
        if key[0] in VPC_WIDE and stored.vpc:
            self.vpc_wide[stored.vpc][key] = stored

    def _unindex(self, key: ResourceKey, stored: Stored) -> None:
        """Remove `stored` (the state of `key` being replaced or deleted) from the VPC and IP indexes."""
        if stored.vpc:
            self._discard(self.vpc_wide, stored.vpc, key)
        if key[0] in _ADDRESSED:
            for ip in stored.state.configuration.fixed_ips:
                self._discard(self.addresses, ip.ip_address, key)

    def _forget(self, key: ResourceKey) -> None:
        self.touched.add(key)
        stored = self.resources.pop(key, None)
        if stored is not None:
            self._unindex(key, stored)
        for host in self.holders.pop(key, set()):
            self._discard(self.listed, host, key)
            if key[0] == common.PORT:
                self._drop_port(host, key[1])


