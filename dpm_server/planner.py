"""What goes on which channel, and which replies a request waits for. Pure logic.

Strategies (docs/internals.md): `vpc-multicast` sends host-specific states per host and
VPC-wide states once per VPC; `unicast-only` and `topic-per-host` send every host its
own copy of everything listed for it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from dpm_server.snapshot import Change, Snapshot, piece_of
from gsmq.resources import VPC_WIDE, ResourceKey, iter_states, vpc_of
from gsmq.wire import Strategy


@dataclass
class Outgoing:
    """One message to publish: to a host (unicast / its topic) or to a VPC (multicast)."""

    multicast: bool
    key: str  # host id, or VPC id for multicast
    fresh: list[ResourceKey] = field(default_factory=list)  # from the input
    stored: list[ResourceKey] = field(default_factory=list)  # from the snapshot (joined VPCs)
    follow: list[str] = field(default_factory=list)  # VPCs the host starts following
    expect: set[str] = field(default_factory=set)  # hosts whose reply to it the request awaits


class Input:
    """A validated input message, with each resource serialized once."""

    def __init__(self, goal: gs.GoalStateV2) -> None:
        self.goal = goal
        self.states = {(rtype, rid): state for rtype, rid, state in iter_states(goal)}
        self.vpcs = {key: vpc_of(key[0], state) for key, state in self.states.items()}
        self.listed: dict[str, list[ResourceKey]] = {
            host: list(dict.fromkeys((int(r.type), r.id) for r in res.resources)) for host, res in goal.host_resources.items()
        }

    @cached_property
    def pieces(self) -> dict[ResourceKey, bytes]:
        """Each resource serialized once, as a GoalStateV2 holding only it."""
        return {key: piece_of(key[0], key[1], state) for key, state in self.states.items()}

    def vpc(self, key: ResourceKey) -> str:
        return self.vpcs[key]


def plan(strategy: str, snapshot: Snapshot, change: Change, data: Input) -> list[Outgoing]:
    """The messages one input becomes, multicast first (their order matters for follow offsets)."""
    if strategy != Strategy.VPC_MULTICAST:
        return [Outgoing(False, host, fresh=keys, expect={host}) for host, keys in data.listed.items() if keys]
    out: list[Outgoing] = []
    by_vpc: dict[str, list[ResourceKey]] = defaultdict(list)
    for key in data.states:
        if key[0] in VPC_WIDE and data.vpc(key):
            by_vpc[data.vpc(key)].append(key)
    wide = {key for keys in by_vpc.values() for key in keys}
    targeted: dict[str, set[str]] = defaultdict(set)  # vpc -> hosts listing its VPC-wide states here
    for host, keys in data.listed.items():
        for key in keys:
            if key in wide:
                targeted[data.vpc(key)].add(host)
    for vpc, keys in by_vpc.items():
        before = change.members_of(vpc, snapshot)
        if before:  # joining hosts get these states in their unicast bundle
            out.append(Outgoing(True, vpc, fresh=keys, expect=targeted[vpc] & before & snapshot.members.get(vpc, set())))
    for host, keys in data.listed.items():
        joined = change.joined.get(host, set())
        fresh = [k for k in keys if k[0] not in VPC_WIDE or host not in snapshot.members.get(data.vpc(k), ())
                 or _deleted_on_join(data, k, joined)]
        stored = sorted(k for vpc in joined for k in snapshot.vpc_wide.get(vpc, ()) if not snapshot.own_neighbor(k, host))
        if fresh or stored:
            out.append(Outgoing(False, host, fresh=fresh, stored=stored, follow=sorted(joined), expect={host}))
    return out


def _deleted_on_join(data: Input, key: ResourceKey, joined: set[str]) -> bool:
    """A VPC-wide DELETE for a VPC the host joins now is not in the stored bundle: send it."""
    return data.vpc(key) in joined and data.states[key].operation_type == common.DELETE


def encode(out: Outgoing, data: Input, snapshot: Snapshot) -> bytes:
    """The GoalStateV2 bytes of `out`: listed for its host when unicast, pieces concatenated."""
    fresh = set(out.fresh) if out.stored else set()
    stored = [k for k in out.stored if k not in fresh and k in snapshot.resources]
    head = gs.GoalStateV2(format_version=data.goal.format_version)
    if not out.multicast:
        listed = head.host_resources[out.key]
        for rtype, rid in [*out.fresh, *stored]:
            listed.resources.add(type=rtype, id=rid)
    parts = [head.SerializeToString(), *(data.pieces[k] for k in out.fresh)]
    parts += [snapshot.resources[k].piece for k in stored]
    return b"".join(parts)
