"""What goes on which channel, and which replies a request waits for. Pure logic.

Strategies (docs/internals.md): `vpc-multicast` sends host-specific states per host and
VPC-wide states once per VPC; `unicast-only` and `topic-per-host` send every host its
own copy of everything listed for it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from operator import itemgetter

from alcor.schema import common_pb2 as common
from dpm_server.inputs import Input, within
from dpm_server.snapshot import Change, Snapshot, Stored
from gsmq.resources import VPC_WIDE, ResourceKey, head, host_listing
from gsmq.wire import Strategy


@dataclass(init=False)
class Outgoing:
    """One message to publish: to a host (unicast / its topic) or to a VPC (multicast)."""

    multicast: bool
    key: str  # host id, or VPC id for multicast
    fresh: list[ResourceKey]  # from the input
    # From the snapshot (joined VPCs), as `plan` found them: encode the message before the snapshot changes.
    stored: dict[ResourceKey, Stored]
    follow: list[str]  # VPCs the host starts following
    expect: set[str]  # hosts whose reply to it the request awaits

    def __init__(self, multicast: bool, key: str, fresh: list[ResourceKey] | None = None,
                 stored: dict[ResourceKey, Stored] | None = None, follow: list[str] | None = None,
                 expect: set[str] | None = None) -> None:
        self.multicast = multicast
        self.key = key
        self.fresh = [] if fresh is None else fresh
        self.stored = {} if stored is None else stored
        self.follow = [] if follow is None else follow
        self.expect = set() if expect is None else expect


def plan(strategy: str, snapshot: Snapshot, change: Change, data: Input) -> list[Outgoing]:
    """The messages one input becomes, multicast first (their order matters for follow offsets)."""
    if strategy != Strategy.VPC_MULTICAST:
        return [Outgoing(False, host, fresh=keys, expect={host}) for host, keys in data.listing().items() if keys]
    out: list[Outgoing] = []
    by_vpc: dict[str, list[ResourceKey]] = defaultdict(list)
    for key in data.states:
        if key[0] in VPC_WIDE and data.vpc(key):
            by_vpc[data.vpc(key)].append(key)
    fresh: dict[str, dict[ResourceKey, None]] = {}  # host -> what its unicast message carries from the input
    for group in data.groups:
        wide: dict[str, list[ResourceKey]] = defaultdict(list)
        own = []
        for key in group.keys:
            vpc = data.vpc(key) if key in data.states and key[0] in VPC_WIDE else ""
            if vpc:
                wide[vpc].append(key)
            else:
                own.append(key)
        for host in group.hosts if own else ():
            fresh.setdefault(host, {}).update(dict.fromkeys(own))
        for vpc, keys in wide.items():
            # a member gets them by multicast, except a DELETE for a VPC it joins now (not in its bundle)
            deleted = [k for k in keys if data.states[k].operation_type == common.DELETE]
            for host in snapshot.outside(vpc, group.hosts):
                fresh.setdefault(host, {}).update(dict.fromkeys(keys))
            for host in group.hosts & change.joiners(vpc) if deleted else ():
                fresh.setdefault(host, {}).update(dict.fromkeys(deleted))
    for vpc, keys in by_vpc.items():
        before = change.members_of(vpc, snapshot)
        if before:  # joining hosts get these states in their unicast bundle
            expect = within(data.targeted.get(vpc, set()), before, snapshot.members.get(vpc, set()))
            out.append(Outgoing(True, vpc, fresh=keys, expect=expect))
    for host in sorted(fresh.keys() | change.joined.keys()):
        joined = change.joined.get(host, set())
        stored = dict(sorted((pair for vpc in joined for pair in snapshot.vpc_view(vpc, host)), key=itemgetter(0)))
        keys = list(fresh.get(host, ()))
        if keys or stored:
            out.append(Outgoing(False, host, fresh=keys, stored=stored, follow=sorted(joined), expect={host}))
    return out


def encode(out: Outgoing, data: Input, snapshot: Snapshot) -> bytes:
    """The GoalStateV2 bytes of `out`: listed for its host when unicast, pieces concatenated."""
    fresh = set(out.fresh) if out.stored else set()
    stored = [held for k, held in out.stored.items() if k not in fresh]
    parts = [head(data.format_version)]
    if not out.multicast:
        parts.append(host_listing(out.key, [*(data.refs[k] for k in out.fresh), *(held.ref for held in stored)]))
    parts += [data.pieces[k] for k in out.fresh]
    parts += [held.piece for held in stored]
    return b"".join(parts)
