"""The ACA's semantics, pure logic shared by the single-host daemon and the simulator.

`Applier` holds, for every host it serves, what is pending, which VPCs the host follows
(with the multicast cursor of each), and the host's unicast sequence; the resources
themselves live in the `DataPlane`. It knows nothing of Kafka or gRPC: callers hand it
decoded `GoalStateV2` messages and their headers, and get per-host `Result`s back.
See docs/internals.md for the conventions implemented here.

The followers of a VPC served here share one `VpcTable` (docs/internals.md, "Following a
VPC"): a multicast message is applied to it once, O(its resources), and each follower
gets O(1) bookkeeping (cursor, watermark, a `Result` naming the shared statuses, minus its
own neighbors when it owns one of the message). A host's view (`table`, `host_state`,
`pending_states`) = its own tables + the shared tables of the VPCs it follows, minus its
own neighbors. The single-host agent runs the same code with one follower per table.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog

from aca_agent.counters import Counters
from aca_agent.dataplane import DataPlane
from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from gsmq import wire
from gsmq.resources import (
    APPLY_ORDER,
    APPLY_RANK,
    MAP_FIELD,
    NEEDS_SUBNET,
    VPC_WIDE,
    Order,
    ResourceKey,
    is_full,
    iter_states,
    listing_keys,
    order,
    own_neighbor,
    piece_id,
    read_bundle,
    state_map,
    subnets_of,
    vpc_of,
)

log = structlog.get_logger()
_UINT32_MAX = 0xFFFFFFFF
# A join's piece its VPC's table knows: ((type, id, state), the VPC).
Known = tuple[tuple[int, str, Any], str]
# A table's `known` pieces are dropped once they pass twice the states it holds plus this
# (superseded revisions and deleted states are kept until then).
_KNOWN_SLACK: Final = 64


@dataclass(init=False, slots=True)
class ResourceStatus:
    """One line of a reply; times in microseconds."""

    resource_id: Final[str]
    resource_type: Final[int]
    operation_type: Final[int]
    status: Final[int]
    dataplane_us: Final[int]
    config_us: Final[int]
    elapse_us: Final[int]

    def __init__(self, resource_id: str, resource_type: int, operation_type: int, status: int, dataplane_us: int = 0,
                 config_us: int = 0, elapse_us: int = 0) -> None:
        self.resource_id = resource_id
        self.resource_type = resource_type
        self.operation_type = operation_type
        self.status = status
        self.dataplane_us = dataplane_us
        self.config_us = config_us
        self.elapse_us = elapse_us

    def with_status(self, status: int) -> ResourceStatus:
        return ResourceStatus(self.resource_id, self.resource_type, self.operation_type, status, self.dataplane_us,
                              self.config_us, self.elapse_us)


@dataclass(init=False, slots=True)
class Cursor:
    """Where a host stands on a followed VPC's multicast stream (see `gs-follow`). A VPC
    message moves the host's cursor in place (`move`): a region's million cursors are not
    made anew for every message (each new one a tracked object for the garbage collector,
    each old one an untracking in a cold heap)."""

    partition: Final[int]
    offset: Final[int]  # first offset of `partition` to read for this VPC
    seq: int  # last VPC sequence number included or applied
    epoch: str
    acked: int  # the watermark: every VPC sequence up to it is applied (-1: `seq`); stays below a gap

    def __init__(self, partition: int, offset: int, seq: int, epoch: str = "", acked: int = -1) -> None:
        self.partition = partition
        self.offset = offset
        self.seq = seq
        self.epoch = epoch
        self.acked = acked

    @property
    def watermark(self) -> int:
        return self.seq if self.acked < 0 else self.acked

    def move(self, seq: int, epoch: str, acked: int) -> Cursor:
        self.seq, self.epoch, self.acked = seq, epoch, acked
        return self


@dataclass(init=False, slots=True)
class FollowChange:
    """A host started (with the cursor from `gs-follow`, if any) or stopped following a VPC."""

    host: Final[str]
    vpc: Final[str]
    follow: Final[bool]
    cursor: Final[Cursor | None]

    def __init__(self, host: str, vpc: str, follow: bool, cursor: Cursor | None = None) -> None:
        self.host = host
        self.vpc = vpc
        self.follow = follow
        self.cursor = cursor


@dataclass(init=False, slots=True)
class Result:
    """What applying one message did for one host: what its ack reports."""

    state: HostState
    statuses: list[ResourceStatus]
    total_us: int
    applied_ns: int
    resync: bool  # the host saw a sequence gap: ask the DPM for its full state
    vpc: str  # the message: a multicast one of this VPC, or (empty) a unicast one
    seq: int  # its gs-seq (0: none)
    elapse_us: int | None  # gs-sent-ns -> applied (None: no gs-sent-ns)
    follows: tuple[str, ...]  # a host message's gs-follow VPCs: their cursors moved (the ack reports them)
    # A VPC message's: the host's cursor in `vpc`, which it moved (None: none moved). Until
    # the host's next result it stands where the message left it: only applying a message moves one.
    cursor: Cursor | None

    def __init__(self, state: HostState, statuses: list[ResourceStatus], total_us: int = 0, applied_ns: int = 0,
                 resync: bool = False, vpc: str = "", seq: int = 0, elapse_us: int | None = None,
                 follows: tuple[str, ...] = (), cursor: Cursor | None = None) -> None:
        self.state = state
        self.statuses = statuses
        self.total_us = total_us
        self.applied_ns = applied_ns
        self.resync = resync
        self.vpc = vpc
        self.seq = seq
        self.elapse_us = elapse_us
        self.follows = follows
        self.cursor = cursor

    @property
    def host(self) -> str:
        return self.state.host


@dataclass(init=False, slots=True)
class _Pending:
    state: Any
    missing: set[str]  # subnet ids not yet known to the host

    def __init__(self, state: Any, missing: set[str]) -> None:
        self.state = state
        self.missing = missing


@dataclass(init=False, slots=True)
class HostState:
    """Everything the applier knows about one host besides its data-plane tables.

    VPC ids and epochs are interned where they come in (a message's headers, a port's
    state), so the keys of every host's `cursors`, `vpc_ports` and `shared` are one object
    per VPC: a VPC message's lookups for each follower match by identity, without reading
    each host's own copy of the id (a cache miss apiece in a region of a million hosts)."""

    host: str
    pending: dict[ResourceKey, _Pending]
    waiting: dict[str, set[ResourceKey]]  # subnet id -> pending keys
    port_vpc: dict[str, str]  # port id (applied or pending) -> vpc
    vpc_ports: dict[str, set[str]]  # followed vpc -> its port ids
    cursors: dict[str, Cursor]
    epoch: str | None  # unicast gs-epoch / gs-seq last seen
    seq: int
    applied: int  # the unicast watermark of `epoch`: every gs-seq up to it is applied; stays below a gap
    incarnation: int  # the newest DPM incarnation seen in a unicast gs-epoch (0: none yet)
    shared: set[str]  # followed VPCs whose VPC-wide states the host sees in their `VpcTable`
    # Its acks' host fields (host id, `epoch`, `applied`, `seq`) serialized, built once by
    # aca_agent.acks; b"" until then, and again whenever `_check_seq` moves one of them.
    ack_head: bytes

    def __init__(self, host: str) -> None:
        self.host = host
        self.pending = {}
        self.waiting = {}
        self.port_vpc = {}
        self.vpc_ports = {}
        self.cursors = {}
        self.epoch = None
        self.seq = 0
        self.applied = 0
        self.incarnation = 0
        self.shared = set()
        self.ack_head = b""


def table_scope(vpc: str) -> str:
    """The data-plane scope (a pseudo host id) of a VPC's shared table."""
    return f"vpc/{vpc}"


@dataclass(init=False, slots=True)
class VpcTable:
    """The VPC-wide states (SUBNET, NEIGHBOR, SECURITYGROUP) of one followed VPC, held once
    for every served host that follows it with a cursor (see docs/internals.md, "Following
    a VPC"). `scope` is its pseudo host: the data plane keeps the states under
    `table_scope(vpc)`, pending ones wait in `scope.pending`. The table holds every neighbor
    of the VPC (a host's own ones included, a host's view leaves them out).

    `seq`/`epoch`: the last multicast message applied to the table. `since`: for a state
    (or a deletion: the key is absent) the VPC position it came from, when the table got it
    from a join or resync bundle at a position ahead of `seq`, or from a multicast message or
    deletion; a multicast message never changes a state the table got from a later position."""

    vpc: str
    scope: HostState
    epoch: str
    seq: int
    since: dict[ResourceKey, int]
    followers: set[str]
    # (seq, epoch, statuses) of the last message applied to the table: another follower's
    # copy of it (the gRPC channel sends one per host) reports the same (failures included),
    # its PENDING ones as they stand now.
    done: tuple[int, str, list[ResourceStatus]] | None
    # A join bundle's piece (`resources.read_bundle`) -> the (type, id, state) it parses
    # to, the state being the object the table programmed from it: a later bundle carrying
    # those bytes takes it without parsing them or comparing it. Only ever an equal parse,
    # whatever the table holds since; emptied when it outgrows the table (`_KNOWN_SLACK`).
    known: dict[bytes, tuple[int, str, Any]]

    def __init__(self, vpc: str, scope: HostState, epoch: str = "", seq: int = 0) -> None:
        self.vpc = vpc
        self.scope = scope
        self.epoch = epoch
        self.seq = seq
        self.since = {}
        self.followers = set()
        self.done = None
        self.known = {}


def follow_cursors(headers: Mapping[str, str]) -> dict[str, Cursor]:
    """The `gs-follow` positions of a message as cursors of its epoch (HeaderError when malformed)."""
    epoch = sys.intern(headers.get(wire.EPOCH, ""))
    return {sys.intern(vpc): Cursor(p.partition, p.offset, p.seq, epoch)
            for vpc, p in wire.decode_follow(headers.get(wire.FOLLOW, "")).items()}


def _us(ns: int) -> int:
    return min(max(ns // 1000, 0), _UINT32_MAX)


def _stamp(start_ns: int, sent_ns: int | None) -> tuple[int, int, int | None]:
    """An apply's times: how long it took since `start_ns` (us), when it ended (ns since the
    epoch), and publish -> applied (us; None without a gs-sent-ns)."""
    applied_ns = time.time_ns()
    return _us(time.perf_counter_ns() - start_ns), applied_ns, (_us(applied_ns - sent_ns) if sent_ns else None)


class Applier:
    """Applies goal states to the hosts it serves and says, per resource, what happened."""

    def __init__(self, dataplane: DataPlane, hosts: Iterable[str], counters: Counters | None = None) -> None:
        self.dataplane = dataplane
        self.hosts: dict[str, HostState] = {host: HostState(host) for host in hosts}
        self.followers: dict[str, dict[str, HostState]] = {}  # vpc -> served hosts following it (by id)
        self.tables: dict[str, VpcTable] = {}  # vpc -> its shared table (while a host follows it with a cursor)
        self.counters = counters or Counters()
        self._changes: list[FollowChange] = []

    # ---- entry points -------------------------------------------------------------

    def apply_unicast(self, host: str, goal: gs.GoalStateV2, headers: Mapping[str, str], raw: bytes | None = None) -> Result | None:
        """A message for one host (key = host): apply what `host_resources[host]` lists
        (everything in the message when host_resources is empty). None: not served.
        HeaderError (nothing applied) when a header breaks the wire conventions. `raw`: the
        bytes `goal` was parsed from, if any: a join's pieces the VPC's table has seen
        before are taken from its `known` states."""
        hs = self.hosts.get(host)
        if hs is None:
            return None
        seq, sent_ns, follow = wire.number_header(headers, wire.SEQ), wire.number_header(headers, wire.SENT_NS), follow_cursors(headers)
        full = headers.get(wire.FULL) == "1"
        epoch = headers.get(wire.EPOCH, "")
        if full or epoch != hs.epoch:
            self._check_incarnation(hs, epoch, full)
        start = time.perf_counter_ns()
        if seq is not None and epoch == hs.epoch and seq <= hs.seq:
            # Seen already, or passed by a newer message (one that came by the other channel,
            # or a resync): never applied after it, a full state neither. A gap it leaves was
            # reported when the newer one came, and the resync closes it.
            self.counters.stale_messages += 1
            return Result(hs, [], 0, time.time_ns(), False, "", seq, None)
        resync = self._check_seq(hs, headers, seq)
        known: dict[ResourceKey, Known] = {}
        fresh: dict[ResourceKey, bytes] = {}
        if len(goal.host_resources):
            bundle = read_bundle(raw, host) if follow and raw is not None else None
            if bundle is not None:
                keys, pieces = bundle
                known, fresh = self._pieces(pieces, follow)
                self.counters.bundle_states_known += len(known)
            else:
                keys = listing_keys(goal.host_resources[host]) if host in goal.host_resources else []
            entries = self._entries(goal, keys, known)
        else:
            entries = self._all_entries(goal, host)
        statuses = self._apply(hs, entries, sent_ns, whole=full, follow=follow, known=known, fresh=fresh)
        result = self._result(hs, statuses, _stamp(start, sent_ns), resync, "", seq)
        if follow:
            result.follows = tuple(sorted(follow))
        return result

    def apply_multicast(
        self, vpc: str, goal: gs.GoalStateV2, headers: Mapping[str, str], partition: int, offset: int,
        only: str | None = None,
    ) -> list[Result]:
        """A VPC-wide message: apply it for every served host that follows `vpc` (or for
        `only`, if it does) and has not applied it yet (offset >= the cursor's offset, gs-seq
        > the cursor's seq). The shared table is applied once: a later follower's copy is
        bookkeeping. HeaderError (nothing applied) when a header breaks the wire conventions."""
        seq, sent_ns = wire.number_header(headers, wire.SEQ), wire.number_header(headers, wire.SENT_NS)
        vpc = sys.intern(vpc)  # see HostState: each follower's lookups below then match by identity
        followers = self.followers.get(vpc) or {}
        if only is not None:
            followers = {only: followers[only]} if only in followers else {}
        hosts = list(followers.values())
        if not hosts:
            self.counters.messages_skipped += 1
            return []
        epoch = sys.intern(headers.get(wire.EPOCH, ""))
        movers: list[tuple[HostState, bool, Cursor | None]] = []
        for hs in hosts:
            cursor = hs.cursors.get(vpc)
            if cursor is None or (cursor.partition == partition and offset < cursor.offset):
                continue
            resync, moved = False, None
            if seq is not None:
                if epoch == cursor.epoch:
                    if seq <= cursor.seq:
                        continue
                    resync = seq > cursor.seq + 1
                    if resync:
                        log.debug("multicast_gap", host=hs.host, vpc=vpc, expected=cursor.seq + 1, got=seq)
                    acked = -1 if not resync and cursor.watermark == cursor.seq else cursor.watermark
                else:  # a new DPM incarnation numbers from 1
                    resync = seq != 1
                    acked = 0 if resync else -1
                moved = cursor.move(seq, epoch, acked)
            movers.append((hs, resync, moved))
        if not movers:
            return []
        results: list[Result] = []
        table = self.tables.get(vpc)
        shared = [mover for mover in movers if table is not None and vpc in mover[0].shared]
        entries: list[tuple[int, str, Any]] | None = None  # the message's states, read only when needed
        if table is not None and shared:
            start = time.perf_counter_ns()
            released: dict[str, list[ResourceStatus]] = {}
            if seq is None or table.epoch != epoch or table.seq < seq:
                entries = self._all_entries(goal, None)
                common_statuses = self._apply_table(table, entries, seq, epoch, sent_ns, released)
                table.done = (seq, epoch, common_statuses) if seq is not None else None
            elif table.done is not None and table.done[:2] == (seq, epoch):  # another follower's copy of that message
                common_statuses = table.done[2]
                if any(s.status == common.PENDING for s in common_statuses):
                    common_statuses = [s.with_status(self._held(table, s.resource_type, s.resource_id))
                                       if s.status == common.PENDING else s for s in common_statuses]
            else:  # the table is ahead of these followers (a later join or resync built it): bookkeeping only
                entries = self._all_entries(goal, None)
                common_statuses = [self._shared_status(table, rtype, rid, state) for rtype, rid, state in entries]
            owners = self._neighbor_owners(table, common_statuses)
            owning = set(owners.values())
            # The followers applied the table together: they share its times (and so, mostly,
            # the rest of their acks: see aca_agent.acks).
            stamp = _stamp(start, sent_ns)
            for hs, resync, moved in shared:
                # One list for every follower that owns none of the neighbors and had nothing
                # released: its ack reads the list once, whatever number of followers it names.
                mine = common_statuses
                if hs.host in owning:
                    mine = [s for s in mine if owners.get(s.resource_id) != hs.host or s.resource_type != common.NEIGHBOR]
                if hs.host in released:
                    mine = mine + released[hs.host]
                results.append(self._result(hs, mine, stamp, resync, vpc, seq, moved))
        for hs, resync, moved in movers:
            if table is not None and vpc in hs.shared:
                continue
            start = time.perf_counter_ns()
            entries = self._all_entries(goal, None) if entries is None else entries
            mine_entries = [e for e in entries if not own_neighbor(e[0], e[2], hs.host)]
            statuses = self._apply(hs, mine_entries, sent_ns, whole=False, follow={}, scope_vpc=vpc)
            results.append(self._result(hs, statuses, _stamp(start, sent_ns), resync, vpc, seq, moved))
        return results

    def apply_direct(self, goal: gs.GoalStateV2) -> list[Result]:
        """The gRPC fast path: apply, for every served host in `host_resources`, what it lists."""
        results = []
        for host, resources in goal.host_resources.items():
            hs = self.hosts.get(host)
            if hs is None:
                continue
            start = time.perf_counter_ns()
            statuses = self._apply(hs, self._entries(goal, listing_keys(resources), {}), None, whole=False, follow={})
            results.append(self._result(hs, statuses, _stamp(start, None), False))
        return results

    def follow_changes_waiting(self) -> bool:
        return bool(self._changes)

    def take_follow_changes(self) -> list[FollowChange]:
        """Follow/unfollow changes since the last call (the consumer assigns partitions from them)."""
        changes, self._changes = self._changes, []
        return changes

    def pending_count(self) -> int:
        """Pending states: each host's own, and each shared table's once."""
        return sum(len(hs.pending) for hs in self.hosts.values()) + sum(len(t.scope.pending) for t in self.tables.values())

    def followed(self, host: str) -> set[str]:
        return set(self.hosts[host].vpc_ports)

    def table(self, host: str, rtype: int) -> Mapping[str, Any]:
        """The host's applied resources of one type (id -> state): its own table plus, for a
        VPC-wide type, the shared tables of the VPCs it follows minus its own neighbors."""
        hs = self.hosts[host]
        own = self.dataplane.table(host, rtype)
        if rtype not in VPC_WIDE or not hs.shared:
            return own
        out: dict[str, Any] = {}
        for vpc in sorted(hs.shared):
            out.update((rid, state) for rid, state in self.dataplane.table(table_scope(vpc), rtype).items()
                       if not own_neighbor(rtype, state, host))
        out.update(own)
        return out

    def pending_states(self, host: str) -> dict[ResourceKey, Any]:
        """The host's pending states (key -> state), shared ones of followed VPCs included."""
        hs = self.hosts[host]
        out: dict[ResourceKey, Any] = {}
        for vpc in sorted(hs.shared):
            table = self.tables.get(vpc)
            if table is not None:
                out.update((k, p.state) for k, p in table.scope.pending.items() if not own_neighbor(k[0], p.state, host))
        out.update((k, p.state) for k, p in hs.pending.items())
        return out

    def host_state(self, host: str) -> gs.GoalStateV2:
        """The host's tables as one GoalStateV2 whose host_resources[host] lists every resource."""
        goal = gs.GoalStateV2()
        listing = goal.host_resources[host]
        for rtype in APPLY_ORDER:
            target = state_map(goal, rtype)
            for rid, state in self.table(host, rtype).items():
                target[rid].CopyFrom(state)
                listing.resources.add(type=rtype, id=rid)
        return goal

    # ---- message level ------------------------------------------------------------

    @staticmethod
    def _check_incarnation(hs: HostState, epoch: str, full: bool) -> None:
        """No silent wipe: a full state replaces the host's tables only when its gs-epoch is a
        DPM incarnation (`wire.make_epoch`) no older than the newest this host has seen;
        else HeaderError (dead-lettered, nothing applied). Any message's epoch moves the newest."""
        incarnation = wire.epoch_incarnation(epoch)
        if full and incarnation is None:
            raise wire.HeaderError(f"a full state without a DPM incarnation in gs-epoch is refused: {epoch[:40]!r}")
        if full and incarnation is not None and incarnation < hs.incarnation:
            raise wire.HeaderError(f"a full state from DPM incarnation {incarnation} is refused: host {hs.host} has seen {hs.incarnation}")
        if incarnation is not None and incarnation > hs.incarnation:
            hs.incarnation = incarnation

    def _check_seq(self, hs: HostState, headers: Mapping[str, str], seq: int | None) -> bool:
        """Track the host's gs-seq (`seq`) per gs-epoch and its watermark; True when a gap
        shows (resync needed). A full state closes any gap; the first message this process
        sees starts the watermark; a new epoch numbers from 1."""
        if seq is None:
            return False
        hs.ack_head = b""
        epoch = headers.get(wire.EPOCH, "")
        if headers.get(wire.FULL) == "1" or hs.epoch is None:
            hs.epoch, hs.seq, hs.applied = epoch, seq, seq
            return False
        if hs.epoch != epoch:
            gap = seq != 1
            hs.epoch, hs.seq, hs.applied = epoch, seq, 0 if gap else seq
        else:  # seq > hs.seq: `apply_unicast` skipped the others
            gap = seq > hs.seq + 1
            if not gap and hs.applied == hs.seq:
                hs.applied = seq
            hs.seq = seq
        if gap:
            log.debug("sequence_gap", host=hs.host, epoch=epoch, watermark=hs.applied, got=seq)
        return gap

    @staticmethod
    def _entries(goal: gs.GoalStateV2, keys: list[ResourceKey],
                 known: Mapping[ResourceKey, Known]) -> list[tuple[int, str, Any]]:
        """(type, id, state or None) of the listed resources, parents first; those in `known`
        as they are there."""
        out = []
        for rtype, rid in keys:
            hit = known.get((rtype, rid)) if known else None
            if hit is not None:
                out.append(hit[0])
                continue
            states = state_map(goal, rtype) if rtype in MAP_FIELD else {}
            out.append((rtype, rid, states.get(rid)))
        out.sort(key=lambda e: APPLY_RANK.get(e[0], len(APPLY_RANK)))
        return out

    def _pieces(self, pieces: list[tuple[int, bytes]],
                follow: Mapping[str, Cursor]) -> tuple[dict[ResourceKey, Known], dict[ResourceKey, bytes]]:
        """A join's VPC-wide pieces (`resources.read_bundle`): those a followed VPC's table
        knows (`Known`), and the bytes of the others (by key; the last piece of a key wins,
        as in parsing). Nothing when a piece is not read here."""
        tables = [t for vpc in follow if (t := self.tables.get(vpc)) is not None]
        known: dict[ResourceKey, Known] = {}
        fresh: dict[ResourceKey, bytes] = {}
        for rtype, piece in pieces:
            entry = None
            for table in tables:
                entry = table.known.get(piece)
                if entry is not None:
                    key = (entry[0], entry[1])
                    known[key] = (entry, table.vpc)
                    fresh.pop(key, None)
                    break
            if entry is not None:
                continue
            rid = piece_id(piece)
            if rid is None:
                return {}, {}
            key = (rtype, rid)
            fresh[key] = piece
            known.pop(key, None)
        return known, fresh

    @staticmethod
    def _all_entries(goal: gs.GoalStateV2, host: str | None) -> list[tuple[int, str, Any]]:
        """Every state of the message, parents first (minus the host's own neighbors)."""
        out = [(rtype, rid, state) for rtype, rid, state in iter_states(goal) if host is None or not own_neighbor(rtype, state, host)]
        out.sort(key=lambda e: APPLY_RANK[e[0]])
        return out

    def _apply(
        self,
        hs: HostState,
        entries: list[tuple[int, str, Any]],
        sent_ns: int | None,
        *,
        whole: bool,
        follow: dict[str, Cursor],
        scope_vpc: str | None = None,
        known: Mapping[ResourceKey, Known] | None = None,
        fresh: Mapping[ResourceKey, bytes] | None = None,
    ) -> list[ResourceStatus]:
        before = set(hs.vpc_ports)
        statuses: list[ResourceStatus] = []
        # VPC-wide states of the VPCs the message follows go to their shared tables. Those of
        # a VPC whose table the host shared before (a unicast message without gs-follow for it,
        # planned before the host joined: the join or resync that made it follow came from a
        # later snapshot, so the table holds them or what came after) are passed over, each
        # with the table's status: the host's own tables never take them, their states would
        # hide the table's. A full state replaces the host's tables: nothing is passed over.
        shared = hs.shared if not whole else set()
        if follow or shared:
            bundles: dict[str, list[tuple[int, str, Any]]] = {vpc: [] for vpc in follow}
            rest = []
            for entry in entries:
                rtype, rid, state = entry
                hit = known.get((rtype, rid)) if known else None
                if hit is not None and hit[0][2] is state:  # the state (not the tuple: compiled, tuples are values)
                    vpc = hit[1]
                else:
                    vpc = vpc_of(rtype, state) if rtype in VPC_WIDE and state is not None and state.HasField("configuration") else ""
                if vpc in bundles:
                    bundles[vpc].append(entry)
                elif vpc in shared and (table := self.tables.get(vpc)) is not None:
                    statuses.append(self._shared_status(table, rtype, rid, state))
                else:
                    rest.append(entry)
            entries = rest
            for vpc, cursor in sorted(follow.items()):
                statuses += self._merge(hs, vpc, bundles[vpc], cursor, sent_ns, fresh or {})
        seen: dict[int, set[str]] = {}
        full_types: set[int] = set()
        new_subnets: list[str] = []
        for rtype, rid, state in entries:
            seen.setdefault(rtype, set()).add(rid)
            if state is not None and is_full(rtype, state):
                full_types.add(rtype)
            status = self._apply_one(hs, rtype, rid, state, sent_ns)
            statuses.append(status)
            if rtype == common.SUBNET and status.status == common.SUCCESS and hs.waiting:
                new_subnets.append(rid)
        if whole:
            full_types = set(MAP_FIELD)
        for rtype in full_types:
            self._replace_table(hs, rtype, seen.get(rtype, set()), scope_vpc)
        statuses += self._release(hs, new_subnets, sent_ns)
        self._follow_diff(hs, before, follow, whole)
        return statuses

    def _release(self, hs: HostState, subnets: Iterable[str], sent_ns: int | None) -> list[ResourceStatus]:
        """Apply the host's (or a table's) pending states that waited for `subnets` and now have every subnet."""
        statuses: list[ResourceStatus] = []
        for subnet in subnets:
            for key in hs.waiting.pop(subnet, set()):
                pend = hs.pending.get(key)
                if pend is None:
                    continue
                pend.missing = {s for s in pend.missing if not self._subnet_known(hs, s)}
                if not pend.missing:
                    del hs.pending[key]
                    statuses.append(self._apply_one(hs, key[0], key[1], pend.state, sent_ns))
        return statuses

    # ---- shared VPC tables ----------------------------------------------------------

    def _subnet_known(self, hs: HostState, subnet: str) -> bool:
        """Whether the host (or table scope) holds `subnet`: in its own table or a followed VPC's shared one."""
        if subnet in self.dataplane.table(hs.host, common.SUBNET):
            return True
        return any(subnet in self.dataplane.table(table_scope(vpc), common.SUBNET) for vpc in hs.shared)

    @staticmethod
    def _valid(rid: str, state: Any) -> bool:
        return state is not None and bool(rid) and state.HasField("configuration") and bool(state.configuration.id)

    def _shared_status(self, table: VpcTable, rtype: int, rid: str, state: Any) -> ResourceStatus:
        """A state the table already holds from a later position: SUCCESS (PENDING while it waits)."""
        if not self._valid(rid, state):
            return ResourceStatus(rid, rtype, int(state.operation_type) if state is not None else common.INFO, common.INVALID_ARG)
        return ResourceStatus(rid, rtype, int(state.operation_type), self._held(table, rtype, rid))

    @staticmethod
    def _held(table: VpcTable, rtype: int, rid: str) -> int:
        """The status of a valid state the table holds: PENDING while it waits, else SUCCESS."""
        return common.PENDING if (rtype, rid) in table.scope.pending else common.SUCCESS

    def _neighbor_owners(self, table: VpcTable, statuses: list[ResourceStatus]) -> dict[str, str]:
        """neighbor id -> the host it is located on, for the neighbors named in `statuses`."""
        owners: dict[str, str] = {}
        held = self.dataplane.table(table.scope.host, common.NEIGHBOR)
        for s in statuses:
            if s.resource_type != common.NEIGHBOR:
                continue
            state = held.get(s.resource_id)
            if state is None:
                pend = table.scope.pending.get((common.NEIGHBOR, s.resource_id))
                state = pend.state if pend is not None else None
            if state is not None:
                owners[s.resource_id] = str(state.configuration.host_ip_address)
        return owners

    def _bundle_holds_table(self, table: VpcTable, in_bundle: set[ResourceKey], entries: int, held_known: int,
                            others: list[ResourceKey], applied: int) -> bool:
        """Whether every key the table holds (`applied` states, and pending ones) is one of a
        bundle's distinct keys, by counting: those `_merge` found held as they were, and the
        others it left in the table. Then no state of the table is missing from the bundle."""
        if len(in_bundle) != entries:
            return False
        pending = table.scope.pending
        present = held_known + sum(1 for key in others if key in pending or key[1] in self.dataplane.table(table.scope.host, key[0]))
        return present == applied + sum(1 for key in pending if key[0] in VPC_WIDE)

    def _table_keys(self, table: VpcTable, rtypes: Iterable[int]) -> list[tuple[ResourceKey, Any]]:
        """(key, state) of everything the table holds of `rtypes`, applied or pending."""
        out = [((rtype, rid), state) for rtype in rtypes for rid, state in self.dataplane.table(table.scope.host, rtype).items()]
        out += [(key, p.state) for key, p in table.scope.pending.items() if key[0] in rtypes]
        return out

    def _release_shared(self, table: VpcTable, subnets: list[str], sent_ns: int | None,
                        released: dict[str, list[ResourceStatus]]) -> list[ResourceStatus]:
        """Subnets new in a shared table release its pending states and its followers' (reported in `released`)."""
        if not subnets:
            return []
        statuses = self._release(table.scope, subnets, sent_ns)
        for host in table.followers:
            hs = self.hosts[host]
            if hs.waiting:
                got = self._release(hs, subnets, sent_ns)
                if got:
                    released.setdefault(host, []).extend(got)
        return statuses

    def _apply_table(self, table: VpcTable, entries: list[tuple[int, str, Any]], seq: int | None, epoch: str,
                     sent_ns: int | None, released: dict[str, list[ResourceStatus]]) -> list[ResourceStatus]:
        """Apply a multicast message once to the VPC's shared table (every state, own neighbors included)."""
        if table.epoch != epoch:  # a new DPM incarnation: positions of the old one mean nothing
            table.epoch, table.seq, table.since = epoch, 0, {}
        m = seq or 0
        if seq is not None:
            table.seq = seq
        statuses: list[ResourceStatus] = []
        seen: dict[int, set[str]] = {}
        full_types: set[int] = set()
        new_subnets: list[str] = []
        for rtype, rid, state in entries:
            key = (rtype, rid)
            seen.setdefault(rtype, set()).add(rid)
            if state is not None and is_full(rtype, state):
                full_types.add(rtype)
            if m and table.since.get(key, 0) > m and self._valid(rid, state):
                statuses.append(self._shared_status(table, rtype, rid, state))
                continue
            status = self._apply_one(table.scope, rtype, rid, state, sent_ns)
            statuses.append(status)
            if m and status.status in (common.SUCCESS, common.PENDING):
                table.since[key] = m
            if rtype == common.SUBNET and status.status == common.SUCCESS:
                new_subnets.append(rid)
        for rtype in full_types:  # FULL scopes to the VPC: the table is the VPC's
            keep = seen.get(rtype, set())
            for key, _ in self._table_keys(table, (rtype,)):
                if key[1] not in keep and table.since.get(key, 0) <= m:
                    self._remove(table.scope, key[0], key[1])
                    if m:
                        table.since[key] = m
        statuses += self._release_shared(table, new_subnets, sent_ns, released)
        return statuses

    def _merge(self, hs: HostState, vpc: str, entries: list[tuple[int, str, Any]], cursor: Cursor,
               sent_ns: int | None, fresh: Mapping[ResourceKey, bytes]) -> list[ResourceStatus]:
        """A join or resync bundle: the VPC-wide states of `vpc` as of position `cursor.seq`
        (minus the host's own neighbors). Creates the VPC's shared table, or merges into it:
        a state the table got from a later position stays, the others become the bundle's
        (a state the bundle lacks was deleted by then, unless it is the host's own neighbor).
        `fresh`: the bytes of states parsed from the bundle; those the table then holds
        become `known`."""
        table = self.tables.get(vpc)
        if table is None:
            table = self.tables[vpc] = VpcTable(vpc, HostState(table_scope(vpc)), cursor.epoch, cursor.seq)
        elif table.epoch != cursor.epoch:  # a new DPM incarnation: this bundle is the table now
            table.epoch, table.seq, table.since = cursor.epoch, cursor.seq, {}
        if hs.host not in table.followers:
            self._drop_private(hs, vpc)
            table.followers.add(hs.host)
            hs.shared.add(vpc)
        pos = cursor.seq
        # The table's states by type, read once: the bundle names each key once, and the
        # loop changes only the key at hand.
        held_tables = {rtype: self.dataplane.table(table.scope.host, rtype) for rtype in VPC_WIDE}
        since, pending = table.since, table.scope.pending
        statuses: list[ResourceStatus] = []
        in_bundle: set[ResourceKey] = set()
        new_subnets: list[str] = []
        held_known = 0  # keys the loop found held as they are (known pieces): the table still holds them after it
        others: list[ResourceKey] = []  # the other keys
        for rtype, rid, state in entries:
            key = (rtype, rid)
            in_bundle.add(key)
            pend = pending.get(key)
            held = pend.state if pend is not None else held_tables[rtype].get(rid)
            if held is state and state is not None:  # the very object the table holds (a known piece): valid, the same
                if since.get(key, 0) <= pos:
                    since[key] = pos
                statuses.append(ResourceStatus(rid, rtype, int(state.operation_type), common.PENDING if pend else common.SUCCESS))
                held_known += 1
                continue
            others.append(key)
            op = int(state.operation_type) if state is not None else common.INFO  # each field read costs a lookup
            if not self._valid(rid, state):
                statuses.append(ResourceStatus(rid, rtype, op, common.INVALID_ARG))
                continue
            if since.get(key, 0) > pos:  # the table has it from a later position
                statuses.append(self._shared_status(table, rtype, rid, state))
                continue
            since[key] = pos
            if op == common.DELETE:
                self._remove(table.scope, rtype, rid)
                statuses.append(ResourceStatus(rid, rtype, op, common.SUCCESS))
                continue
            if held is not None and held == state:
                statuses.append(ResourceStatus(rid, rtype, op, common.PENDING if pend else common.SUCCESS))
                if pend is None and fresh and (piece := fresh.get(key)) is not None:
                    table.known[piece] = (rtype, rid, held)
                continue
            if held is not None:
                self._remove(table.scope, rtype, rid)
            status = self._apply_one(table.scope, rtype, rid, state, sent_ns)
            statuses.append(status)
            if status.status == common.SUCCESS:
                if rtype == common.SUBNET:
                    new_subnets.append(rid)
                now = self.dataplane.table(table.scope.host, rtype).get(rid) if fresh else None
                if now is not None and (piece := fresh.get(key)) is not None:
                    table.known[piece] = (rtype, rid, now)
        applied = sum(len(self.dataplane.table(table.scope.host, t)) for t in VPC_WIDE)
        if not self._bundle_holds_table(table, in_bundle, len(entries), held_known, others, applied):
            for key, state in self._table_keys(table, sorted(VPC_WIDE)):
                if key not in in_bundle and since.get(key, 0) <= pos and not own_neighbor(key[0], state, hs.host):
                    self._remove(table.scope, key[0], key[1])  # deleted by `pos`
                    since[key] = pos
            applied = sum(len(self.dataplane.table(table.scope.host, t)) for t in VPC_WIDE)
        if fresh and len(table.known) > 2 * applied + _KNOWN_SLACK:
            table.known = {}
        released: dict[str, list[ResourceStatus]] = {}
        shared = self._release_shared(table, new_subnets, sent_ns, released)
        owners = self._neighbor_owners(table, shared)
        statuses += [s for s in shared if s.resource_type != common.NEIGHBOR or owners.get(s.resource_id) != hs.host]
        statuses += released.get(hs.host, [])
        return statuses

    def _drop_private(self, hs: HostState, vpc: str) -> None:
        """The host's own VPC-wide states of `vpc` give way to the VPC's shared table."""
        for rtype in VPC_WIDE:
            table = self.dataplane.table(hs.host, rtype)
            stale = [rid for rid, state in table.items() if vpc_of(rtype, state) == vpc]
            stale += [rid for (ptype, rid), p in hs.pending.items() if ptype == rtype and vpc_of(rtype, p.state) == vpc]
            for rid in stale:
                self._remove(hs, rtype, rid)

    def _detach(self, hs: HostState, vpc: str) -> None:
        """The host no longer sees `vpc`'s shared table; the last follower drops it."""
        hs.shared.discard(vpc)
        table = self.tables.get(vpc)
        if table is None:
            return
        table.followers.discard(hs.host)
        if not table.followers:
            for key, _ in self._table_keys(table, sorted(VPC_WIDE)):
                self._remove(table.scope, key[0], key[1])
            del self.tables[vpc]

    def _result(self, hs: HostState, statuses: list[ResourceStatus], stamp: tuple[int, int, int | None], resync: bool,
                vpc: str = "", seq: int | None = None, cursor: Cursor | None = None) -> Result:
        """`stamp`: the apply's times (`_stamp`; one for all the followers of a shared apply)."""
        self.counters.messages_applied += 1
        total_us, applied_ns, elapse_us = stamp
        return Result(hs, statuses, total_us, applied_ns, resync, vpc, seq or 0, elapse_us, cursor=cursor)

    # ---- resource level -----------------------------------------------------------

    def _apply_one(self, hs: HostState, rtype: int, rid: str, state: Any, sent_ns: int | None) -> ResourceStatus:
        start = time.perf_counter_ns()
        if state is None or not rid or not state.HasField("configuration") or not state.configuration.id:
            op = int(state.operation_type) if state is not None else common.INFO
            return ResourceStatus(rid, rtype, op, common.INVALID_ARG)
        op = int(state.operation_type)
        key = (rtype, rid)
        config = state.configuration
        current = self.dataplane.table(hs.host, rtype).get(rid)
        pend = hs.pending.get(key)
        dp_ns = 0
        if op == common.DELETE:
            status = common.SUCCESS
            if pend is not None and order(state, pend.state) is Order.NEWER:
                self._drop_pending(hs, key)
            if current is not None:
                if order(state, current) is Order.OLDER:
                    self.counters.out_of_order += 1
                    status = common.OUT_OF_ORDER
                else:
                    t0 = time.perf_counter_ns()
                    self.dataplane.remove(hs.host, rtype, rid)
                    dp_ns = time.perf_counter_ns() - t0
            if rtype == common.PORT and key not in hs.pending and rid not in self.dataplane.table(hs.host, rtype):
                self._untrack_port(hs, rid)
        else:
            verdict = order(state, pend.state if pend is not None else current)
            if verdict is Order.SAME:
                self.counters.duplicates += 1
                status = common.PENDING if pend is not None else common.SUCCESS
            elif verdict is Order.OLDER:
                self.counters.out_of_order += 1
                status = common.OUT_OF_ORDER
            elif verdict is Order.CONFLICT:
                self.counters.conflicts += 1
                status = common.INVALID_ARG
            else:
                missing = self._missing_parents(hs, rtype, state) if rtype in NEEDS_SUBNET else None
                if missing:
                    self._drop_pending(hs, key)
                    hs.pending[key] = _Pending(state, missing)
                    for subnet in missing:
                        hs.waiting.setdefault(subnet, set()).add(key)
                    status = common.PENDING
                else:
                    if pend is not None:
                        self._drop_pending(hs, key)
                    t0 = time.perf_counter_ns()
                    self.dataplane.program(hs.host, rtype, rid, state)
                    dp_ns = time.perf_counter_ns() - t0
                    status = common.SUCCESS
                if rtype == common.PORT:
                    self._track_port(hs, rid, str(config.vpc_id))
        end = time.perf_counter_ns()
        elapse = _us(time.time_ns() - sent_ns) if sent_ns else 0
        return ResourceStatus(rid, rtype, op, status, _us(dp_ns), _us(end - start - dp_ns), elapse)

    def _missing_parents(self, hs: HostState, rtype: int, state: Any) -> set[str]:
        """Subnets a state refers to (`resources.subnets_of`) that the host does not have
        (in its own table or the shared table of a VPC it follows)."""
        return {s for s in subnets_of(rtype, state) if not self._subnet_known(hs, s)}

    def _drop_pending(self, hs: HostState, key: ResourceKey) -> None:
        pend = hs.pending.pop(key, None)
        if pend is None:
            return
        for subnet in pend.missing:
            keys = hs.waiting.get(subnet)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del hs.waiting[subnet]

    def _remove(self, hs: HostState, rtype: int, rid: str) -> None:
        """Take a resource out of the host (table and pending) as a replacement or unfollow does."""
        self.dataplane.remove(hs.host, rtype, rid)
        self._drop_pending(hs, (rtype, rid))
        if rtype == common.PORT:
            self._untrack_port(hs, rid)

    def _replace_table(self, hs: HostState, rtype: int, keep: set[str], scope_vpc: str | None) -> None:
        """FULL: remove the host's resources of `rtype` (of `scope_vpc` only, if given) not in `keep`."""
        table = self.dataplane.table(hs.host, rtype)
        stale = [rid for rid, state in table.items() if rid not in keep and (scope_vpc is None or vpc_of(rtype, state) == scope_vpc)]
        stale += [
            rid
            for (ptype, rid), pend in hs.pending.items()
            if ptype == rtype and rid not in keep and (scope_vpc is None or vpc_of(rtype, pend.state) == scope_vpc)
        ]
        for rid in stale:
            self._remove(hs, rtype, rid)

    # ---- following VPCs -----------------------------------------------------------

    def _track_port(self, hs: HostState, rid: str, vpc: str) -> None:
        vpc = sys.intern(vpc)
        old = hs.port_vpc.get(rid)
        if old == vpc:
            return
        if old is not None:
            self._untrack_port(hs, rid)
        if vpc:
            hs.port_vpc[rid] = vpc
            hs.vpc_ports.setdefault(vpc, set()).add(rid)

    def _untrack_port(self, hs: HostState, rid: str) -> None:
        vpc = hs.port_vpc.pop(rid, None)
        if vpc is None:
            return
        ports = hs.vpc_ports.get(vpc)
        if ports is not None:
            ports.discard(rid)
            if not ports:
                del hs.vpc_ports[vpc]

    def _follow_diff(self, hs: HostState, before: set[str], follow: dict[str, Cursor], whole: bool) -> None:
        """Start/stop following VPCs whose first port came / last port left, and take the
        cursors of `gs-follow`. For a VPC already followed only a resync (`whole`) or a
        cursor ahead of ours moves it: the resync replaced the tables as of its seq."""
        after = hs.vpc_ports.keys()
        for vpc in after - before:
            self.followers.setdefault(vpc, {})[hs.host] = hs
        for vpc in set(after) & (set(follow) | (after - before)):
            cursor = follow.get(vpc)
            mine = hs.cursors.get(vpc)
            stale = mine is not None and cursor is not None and mine.epoch == cursor.epoch and mine.seq >= cursor.seq
            if stale and vpc in before and not whole:
                continue  # a stale gs-follow on a later message: keep reading where we are
            if cursor is not None:
                hs.cursors[vpc] = cursor
            if cursor is not None or vpc not in before:
                self._changes.append(FollowChange(hs.host, vpc, True, cursor))
                log.debug("vpc_followed", host=hs.host, vpc=vpc, cursor=cursor)
        for vpc in before - after:
            self._unfollow(hs, vpc)
        for vpc in hs.shared - set(after):  # a bundle for a VPC the host does not follow after all
            self._detach(hs, vpc)

    def _unfollow(self, hs: HostState, vpc: str) -> None:
        """The host's last port in `vpc` left: drop the VPC's shared states from the host."""
        self._drop_private(hs, vpc)
        self._detach(hs, vpc)
        hs.cursors.pop(vpc, None)
        hosts = self.followers.get(vpc)
        if hosts is not None:
            hosts.pop(hs.host, None)
            if not hosts:
                del self.followers[vpc]
        self._changes.append(FollowChange(hs.host, vpc, False))
        log.debug("vpc_unfollowed", host=hs.host, vpc=vpc)

