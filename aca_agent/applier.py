"""The ACA's semantics, pure logic shared by the single-host daemon and the simulator.

`Applier` holds, for every host it serves, what is pending, which VPCs the host follows
(with the multicast cursor of each), and the host's unicast sequence; the resources
themselves live in the `DataPlane`. It knows nothing of Kafka or gRPC: callers hand it
decoded `GoalStateV2` messages and their headers, and get per-host `Result`s back.
See docs/internals.md for the conventions implemented here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

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
    order,
    own_neighbor,
    state_map,
    subnets_of,
    vpc_of,
)

log = structlog.get_logger()
_UINT32_MAX = 0xFFFFFFFF


class ResourceStatus(NamedTuple):
    """One line of a reply; times in microseconds."""

    resource_id: str
    resource_type: int
    operation_type: int
    status: int
    dataplane_us: int = 0
    config_us: int = 0
    elapse_us: int = 0


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a host stands on a followed VPC's multicast stream (see `gs-follow`)."""

    partition: int
    offset: int  # first offset of `partition` to read for this VPC
    seq: int  # last VPC sequence number included or applied
    epoch: str = ""
    acked: int = -1  # the watermark: every VPC sequence up to it is applied (-1: `seq`); stays below a gap

    @property
    def watermark(self) -> int:
        return self.seq if self.acked < 0 else self.acked


@dataclass(frozen=True, slots=True)
class FollowChange:
    """A host started (with the cursor from `gs-follow`, if any) or stopped following a VPC."""

    host: str
    vpc: str
    follow: bool
    cursor: Cursor | None = None


@dataclass(slots=True)
class Result:
    """What applying one message did for one host: what its ack reports."""

    host: str
    statuses: list[ResourceStatus]
    total_us: int = 0
    applied_ns: int = 0
    resync: bool = False  # the host saw a sequence gap: ask the DPM for its full state
    vpc: str = ""  # the message: a multicast one of this VPC, or (empty) a unicast one
    seq: int = 0  # its gs-seq (0: none)
    elapse_us: int | None = None  # gs-sent-ns -> applied (None: no gs-sent-ns)


@dataclass(slots=True)
class _Pending:
    state: Any
    missing: set[str]  # subnet ids not yet known to the host


@dataclass(slots=True)
class HostState:
    """Everything the applier knows about one host besides its data-plane tables."""

    host: str
    pending: dict[ResourceKey, _Pending] = field(default_factory=dict)
    waiting: dict[str, set[ResourceKey]] = field(default_factory=dict)  # subnet id -> pending keys
    port_vpc: dict[str, str] = field(default_factory=dict)  # port id (applied or pending) -> vpc
    vpc_ports: dict[str, set[str]] = field(default_factory=dict)  # followed vpc -> its port ids
    cursors: dict[str, Cursor] = field(default_factory=dict)
    epoch: str | None = None  # unicast gs-epoch / gs-seq last seen
    seq: int = 0
    applied: int = 0  # the unicast watermark of `epoch`: every gs-seq up to it is applied; stays below a gap


def follow_cursors(headers: Mapping[str, str]) -> dict[str, Cursor]:
    """The `gs-follow` positions of a message as cursors of its epoch (HeaderError when malformed)."""
    epoch = headers.get(wire.EPOCH, "")
    return {vpc: Cursor(p.partition, p.offset, p.seq, epoch) for vpc, p in wire.decode_follow(headers.get(wire.FOLLOW, "")).items()}


def _us(ns: int) -> int:
    return min(max(ns // 1000, 0), _UINT32_MAX)


class Applier:
    """Applies goal states to the hosts it serves and says, per resource, what happened."""

    def __init__(self, dataplane: DataPlane, hosts: Iterable[str], counters: Counters | None = None) -> None:
        self.dataplane = dataplane
        self.hosts: dict[str, HostState] = {host: HostState(host) for host in hosts}
        self.followers: dict[str, set[str]] = {}  # vpc -> served hosts following it
        self.counters = counters or Counters()
        self._changes: list[FollowChange] = []

    # ---- entry points -------------------------------------------------------------

    def apply_unicast(self, host: str, goal: gs.GoalStateV2, headers: Mapping[str, str]) -> Result | None:
        """A message for one host (key = host): apply what `host_resources[host]` lists
        (everything in the message when host_resources is empty). None: not served.
        HeaderError (nothing applied) when a header breaks the wire conventions."""
        hs = self.hosts.get(host)
        if hs is None:
            return None
        seq, sent_ns, follow = wire.number_header(headers, wire.SEQ), wire.number_header(headers, wire.SENT_NS), follow_cursors(headers)
        start = time.perf_counter_ns()
        resync = self._check_seq(hs, headers, seq)
        if len(goal.host_resources):
            entries = self._entries(goal, goal.host_resources[host].resources if host in goal.host_resources else ())
        else:
            entries = self._all_entries(goal, host)
        full = headers.get(wire.FULL) == "1"
        statuses = self._apply(hs, entries, sent_ns, whole=full, follow=follow)
        return self._result(hs, statuses, start, resync, "", seq, sent_ns)

    def apply_multicast(
        self, vpc: str, goal: gs.GoalStateV2, headers: Mapping[str, str], partition: int, offset: int
    ) -> list[Result]:
        """A VPC-wide message: apply it for every served host that follows `vpc` and has
        not applied it yet (offset >= the cursor's offset, gs-seq > the cursor's seq).
        HeaderError (nothing applied) when a header breaks the wire conventions."""
        seq, sent_ns = wire.number_header(headers, wire.SEQ), wire.number_header(headers, wire.SENT_NS)
        hosts = self.followers.get(vpc)
        if not hosts:
            self.counters.messages_skipped += 1
            return []
        epoch = headers.get(wire.EPOCH, "")
        entries: list[tuple[int, str, Any]] | None = None
        results: list[Result] = []
        for host in list(hosts):
            hs = self.hosts[host]
            cursor = hs.cursors.get(vpc)
            if cursor is None or (cursor.partition == partition and offset < cursor.offset):
                continue
            resync = False
            if seq is not None:
                if epoch == cursor.epoch:
                    if seq <= cursor.seq:
                        continue
                    resync = seq > cursor.seq + 1
                    if resync:
                        log.warning("multicast_gap", host=host, vpc=vpc, expected=cursor.seq + 1, got=seq)
                    acked = -1 if not resync and cursor.watermark == cursor.seq else cursor.watermark
                else:  # a new DPM incarnation numbers from 1
                    resync = seq != 1
                    acked = 0 if resync else -1
                hs.cursors[vpc] = Cursor(cursor.partition, cursor.offset, seq, epoch, acked)
            if entries is None:
                entries = self._all_entries(goal, None)
            start = time.perf_counter_ns()
            mine = [e for e in entries if not own_neighbor(e[0], e[2], host)]
            statuses = self._apply(hs, mine, sent_ns, whole=False, follow={}, scope_vpc=vpc)
            results.append(self._result(hs, statuses, start, resync, vpc, seq or 0, sent_ns))
        return results

    def apply_direct(self, goal: gs.GoalStateV2) -> list[Result]:
        """The gRPC fast path: apply, for every served host in `host_resources`, what it lists."""
        results = []
        for host, listed in goal.host_resources.items():
            hs = self.hosts.get(host)
            if hs is None:
                continue
            start = time.perf_counter_ns()
            statuses = self._apply(hs, self._entries(goal, listed.resources), None, whole=False, follow={})
            results.append(self._result(hs, statuses, start, False))
        return results

    def take_follow_changes(self) -> list[FollowChange]:
        """Follow/unfollow changes since the last call (the consumer assigns partitions from them)."""
        changes, self._changes = self._changes, []
        return changes

    def pending_count(self) -> int:
        return sum(len(hs.pending) for hs in self.hosts.values())

    def followed(self, host: str) -> set[str]:
        return set(self.hosts[host].vpc_ports)

    def host_state(self, host: str) -> gs.GoalStateV2:
        """The host's tables as one GoalStateV2 whose host_resources[host] lists every resource."""
        goal = gs.GoalStateV2()
        listed = goal.host_resources[host]
        for rtype in APPLY_ORDER:
            target = state_map(goal, rtype)
            for rid, state in self.dataplane.table(host, rtype).items():
                target[rid].CopyFrom(state)
                listed.resources.add(type=rtype, id=rid)
        return goal

    # ---- message level ------------------------------------------------------------

    def _check_seq(self, hs: HostState, headers: Mapping[str, str], seq: int | None) -> bool:
        """Track the host's gs-seq (`seq`) per gs-epoch and its watermark; True when a gap
        shows (resync needed). A full state closes any gap; the first message this process
        sees starts the watermark; a new epoch numbers from 1."""
        if seq is None:
            return False
        epoch = headers.get(wire.EPOCH, "")
        if headers.get(wire.FULL) == "1" or hs.epoch is None:
            hs.epoch, hs.seq, hs.applied = epoch, seq, seq
            return False
        if hs.epoch != epoch:
            gap = seq != 1
            hs.epoch, hs.seq, hs.applied = epoch, seq, 0 if gap else seq
        elif seq <= hs.seq:
            return False  # a copy of one seen already
        else:
            gap = seq > hs.seq + 1
            if not gap and hs.applied == hs.seq:
                hs.applied = seq
            hs.seq = seq
        if gap:
            log.warning("sequence_gap", host=hs.host, epoch=epoch, watermark=hs.applied, got=seq)
        return gap

    @staticmethod
    def _entries(goal: gs.GoalStateV2, listed: Iterable[Any]) -> list[tuple[int, str, Any]]:
        """(type, id, state or None) of the listed resources, parents first."""
        out = []
        for item in listed:
            states = state_map(goal, item.type) if item.type in MAP_FIELD else {}
            out.append((int(item.type), str(item.id), states.get(item.id)))
        out.sort(key=lambda e: APPLY_RANK.get(e[0], len(APPLY_RANK)))
        return out

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
    ) -> list[ResourceStatus]:
        before = set(hs.vpc_ports)
        statuses: list[ResourceStatus] = []
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
        while new_subnets:
            for key in hs.waiting.pop(new_subnets.pop(), set()):
                pend = hs.pending.get(key)
                if pend is None:
                    continue
                pend.missing.difference_update(self.dataplane.table(hs.host, common.SUBNET))
                if not pend.missing:
                    del hs.pending[key]
                    statuses.append(self._apply_one(hs, key[0], key[1], pend.state, sent_ns))
        self._follow_diff(hs, before, follow, whole)
        return statuses

    def _result(self, hs: HostState, statuses: list[ResourceStatus], start_ns: int, resync: bool,
                vpc: str = "", seq: int | None = None, sent_ns: int | None = None) -> Result:
        self.counters.messages_applied += 1
        now = time.time_ns()
        elapse = _us(now - sent_ns) if sent_ns else None
        return Result(hs.host, statuses, _us(time.perf_counter_ns() - start_ns), now, resync, vpc, seq or 0, elapse)

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
        """Subnets a state refers to (`resources.subnets_of`) that the host does not have."""
        subnets = self.dataplane.table(hs.host, common.SUBNET)
        return {s for s in subnets_of(rtype, state) if s not in subnets}

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
            self.followers.setdefault(vpc, set()).add(hs.host)
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

    def _unfollow(self, hs: HostState, vpc: str) -> None:
        """The host's last port in `vpc` left: drop the VPC's shared states from the host."""
        for rtype in VPC_WIDE:
            table = self.dataplane.table(hs.host, rtype)
            stale = [rid for rid, state in table.items() if vpc_of(rtype, state) == vpc]
            stale += [rid for (ptype, rid), p in hs.pending.items() if ptype == rtype and vpc_of(rtype, p.state) == vpc]
            for rid in stale:
                self._remove(hs, rtype, rid)
        hs.cursors.pop(vpc, None)
        hosts = self.followers.get(vpc)
        if hosts is not None:
            hosts.discard(hs.host)
            if not hosts:
                del self.followers[vpc]
        self._changes.append(FollowChange(hs.host, vpc, False))
        log.debug("vpc_unfollowed", host=hs.host, vpc=vpc)

