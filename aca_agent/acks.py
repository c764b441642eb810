"""Progress acknowledgements: what applying a batch did, one `gsmq.v1.Ack` per host that moved.

`Progress` gathers the `Result`s of a batch; `acks()` then gives, for every host with a
result, its watermarks (read from the applier: the unicast one, and each VPC whose
multicast moved), the resources that did not succeed and a timing summary. Work per
result is O(1), plus O(its statuses) once per statuses list (the followers of a VPC
message share one); the ack costs O(what it carries), whatever the batch covered.
See docs/internals.md, "Acknowledgements".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from aca_agent.applier import Applier, Cursor, HostState, ResourceStatus, Result
from aca_agent.counters import Counters
from alcor.schema import common_pb2 as common
from gsmq import pbwire
from gsmq.v1 import ack_pb2


def elapse_bucket(us: int) -> int:
    """The `Timing.elapse_buckets` bucket of an elapse: b with 2^(b/8) <= us < 2^((b+1)/8)."""
    return int(8 * math.log2(us)) if us >= 1 else 0


def bucket_floor_us(bucket: int) -> float:
    """The smallest elapse a bucket counts, in microseconds."""
    return float(2 ** (bucket / 8))


class _Statuses(NamedTuple):
    """What the acks take from one statuses list: its slowest times and its failures."""

    max_dataplane_us: int
    max_config_us: int
    failed: tuple[ResourceStatus, ...]


def _statuses(statuses: list[ResourceStatus], read: dict[int, _Statuses]) -> _Statuses:
    """What `statuses` holds, read once per `read` (keyed by identity: the caller keeps the lists alive)."""
    s = read.get(id(statuses))
    if s is None:
        s = read[id(statuses)] = _read(statuses)
    return s


def _read(statuses: list[ResourceStatus]) -> _Statuses:
    dataplane_us = config_us = 0
    failed: tuple[ResourceStatus, ...] = ()
    for s in statuses:
        dataplane_us, config_us = max(dataplane_us, s.dataplane_us), max(config_us, s.config_us)
        if s.status != common.SUCCESS:
            failed += (s,)
    return _Statuses(dataplane_us, config_us, failed)


class Progress:
    """The acks of one batch, built from its results and the applier's watermarks.

    `add` only files a result under its host; the acks sum each host's results up, reading
    each statuses list once (by identity: the results hold their lists until then)."""

    __slots__ = ("_hosts",)

    def __init__(self) -> None:
        self._hosts: dict[str, Result | list[Result]] = {}  # a list only for a host with 2+ results

    def add(self, result: Result) -> None:
        got = self._hosts.get(result.host)
        if got is None:
            self._hosts[result.host] = result
        elif isinstance(got, list):
            got.append(result)
        else:
            self._hosts[result.host] = [got, result]

    def __len__(self) -> int:
        return len(self._hosts)

    def acks(self, applier: Applier) -> list[ack_pb2.Ack]:
        """One Ack per host with a result since the last call, then start over."""
        read: dict[int, _Statuses] = {}  # id(statuses list) -> what it holds
        out = [_ack(_state(got), got, read, applier.counters) for got in self._hosts.values()]
        self._hosts = {}
        return out

    def records(self, applier: Applier) -> list[tuple[str, bytes]]:
        """`acks()` as the (key, value) of the records that carry them (`Sink.send_values`:
        an ack record has no headers, its key is the host id; docs/internals.md,
        "Acknowledgements"), each Ack serialized as soon as it is built (thousands of
        messages alive at once cost more to build than one at a time).

        The followers of one shared apply (one result each, same statuses list, times and
        cursor) differ only in their host fields: the rest of their ack is serialized once
        and each record is their own host fields followed by it (protobuf merges the two
        parts into the one Ack that `_ack` builds). They come one after the other (as the
        apply gave them): each result is compared with the one before only."""
        read: dict[int, _Statuses] = {}
        tails: list[_Tail] = []
        last: _Tail | None = None
        counters = applier.counters
        out = []
        for host, got in self._hosts.items():
            if isinstance(got, Result) and got.vpc and not got.follows and (cursor := _cursor(got)) is not None:
                if last is not None and last.fits(got, cursor):
                    last.more += 1
                    out.append((host, _host_part(got.state) + last.rest))
                    continue
                ack = _ack(got.state, got, read, counters)
                last = _Tail(_rest(ack), got, cursor)
                tails.append(last)
            else:
                ack = _ack(_state(got), got, read, counters)
            out.append((host, ack.SerializePartialToString()))
        for t in tails:  # the acks that shared a rest into the histograms, all at once
            if n := t.more:
                _count(counters, _buckets(t.first.elapse_us, n), n * (t.first.elapse_us or 0), n * t.first.total_us, n)
        self._hosts = {}
        return out


def _cursor(got: Result) -> Cursor | None:
    """The host's cursor in the VPC of its one result: the one the result gave it, if any."""
    return got.cursor if got.cursor is not None else got.state.cursors.get(got.vpc)


def _state(got: Result | list[Result]) -> HostState:
    return got.state if isinstance(got, Result) else got[0].state


# What an ack says of its host alone; `Progress.records` serializes the rest once per shared apply.
_HOST_FIELDS = ("host_id", "epoch", "unicast_seq", "unicast_seen")


def _host_part(hs: HostState) -> bytes:
    """The `_HOST_FIELDS` of the host's ack, serialized as `_ack` sets them (proto3 leaves
    zeros out), from the wire format; kept in `hs.ack_head` until one of them changes."""
    if hs.ack_head:
        return hs.ack_head
    out = pbwire.field(_HOST_ID, hs.host.encode()) if hs.host else b""
    if hs.epoch:
        out += _epoch_field(hs.epoch)
    if hs.applied:
        out += pbwire.number_field(_UNICAST_SEQ, hs.applied)
    if hs.seq:
        out += pbwire.number_field(_UNICAST_SEEN, hs.seq)
    hs.ack_head = out
    return out


_HOST_ID, _UNICAST_SEQ, _UNICAST_SEEN = (ack_pb2.Ack.HOST_ID_FIELD_NUMBER, ack_pb2.Ack.UNICAST_SEQ_FIELD_NUMBER,
                                         ack_pb2.Ack.UNICAST_SEEN_FIELD_NUMBER)


@functools.lru_cache(maxsize=16)
def _epoch_field(epoch: str) -> bytes:
    return pbwire.field(ack_pb2.Ack.EPOCH_FIELD_NUMBER, epoch.encode())


def _rest(ack: ack_pb2.Ack) -> bytes:
    """`ack` without its `_HOST_FIELDS`, serialized."""
    rest = ack_pb2.Ack()
    rest.CopyFrom(ack)
    for name in _HOST_FIELDS:
        rest.ClearField(name)
    return rest.SerializePartialToString()


class _Tail:
    """The rest of the acks of one shared apply, serialized; the result and cursor of the
    first host acked with it, and how many more were."""

    __slots__ = ("cursor", "first", "more", "rest")

    def __init__(self, rest: bytes, first: Result, cursor: Cursor) -> None:
        self.rest, self.first, self.cursor, self.more = rest, first, cursor, 0

    def fits(self, got: Result, cursor: Cursor) -> bool:
        """Whether `got` (a single result of a VPC message, the host's cursor there after it)
        acks with the same rest: same message, statuses list, times and watermarks."""
        first, mine = self.first, self.cursor
        return (got.statuses is first.statuses and got.vpc == first.vpc and got.seq == first.seq
                and got.applied_ns == first.applied_ns and got.total_us == first.total_us and got.elapse_us == first.elapse_us
                and cursor.epoch == mine.epoch and cursor.seq == mine.seq and cursor.watermark == mine.watermark)


def _ack(hs: HostState, got: Result | list[Result], read: dict[int, _Statuses], counters: Counters) -> ack_pb2.Ack:
    """One host's ack: its watermarks, and its results summed up (also into the counters'
    histograms). Fields are set one by one, the cheapest way to fill a message (keyword
    arguments and `update` cost more)."""
    failures: list[tuple[Result, tuple[ResourceStatus, ...]]] = []
    if isinstance(got, Result):  # most hosts: one result a batch
        s = _statuses(got.statuses, read)
        messages, resources, apply_us, last_applied_ns = 1, len(got.statuses), got.total_us, got.applied_ns
        max_dataplane_us, max_config_us, max_elapse_us = s.max_dataplane_us, s.max_config_us, got.elapse_us or 0
        vpcs: Iterable[str] = (got.vpc,) if got.vpc else ()
        if got.follows:  # a join or resync moved these cursors: their watermarks go in the ack too
            vpcs = sorted({*vpcs, *got.follows})
        buckets = _buckets(got.elapse_us, 1)
        elapse_sum = got.elapse_us or 0
        if s.failed:
            failures.append((got, s.failed))
    else:
        messages, resources = len(got), 0
        apply_us = last_applied_ns = max_elapse_us = max_dataplane_us = max_config_us = elapse_sum = 0
        buckets = {}
        in_vpcs: set[str] = set()
        for r in got:
            s = _statuses(r.statuses, read)
            resources += len(r.statuses)
            apply_us += r.total_us
            last_applied_ns = max(last_applied_ns, r.applied_ns)
            max_dataplane_us, max_config_us = max(max_dataplane_us, s.max_dataplane_us), max(max_config_us, s.max_config_us)
            if r.vpc:
                in_vpcs.add(r.vpc)
            in_vpcs.update(r.follows)
            if r.elapse_us is not None:
                elapse_sum += r.elapse_us
                max_elapse_us = max(max_elapse_us, r.elapse_us)
                b = elapse_bucket(r.elapse_us)
                buckets[b] = buckets.get(b, 0) + 1
            if s.failed:
                failures.append((r, s.failed))
        vpcs = sorted(in_vpcs)
    ack = ack_pb2.Ack()
    ack.host_id = hs.host
    ack.epoch = hs.epoch or ""
    ack.unicast_seq = hs.applied
    ack.unicast_seen = hs.seq
    for vpc in vpcs:
        cursor = hs.cursors.get(vpc)
        if cursor is not None:
            v = ack.vpcs.add()
            v.vpc_id, v.epoch, v.seq, v.seen = vpc, cursor.epoch, cursor.watermark, cursor.seq
    for r, failed in failures:
        for f in failed:
            ack.failures.add(vpc_id=r.vpc, seq=r.seq, resource_type=f.resource_type, resource_id=f.resource_id,
                             operation_type=f.operation_type, status=f.status)
    t = ack.timing
    t.messages, t.resources, t.apply_us = messages, resources, apply_us
    t.max_dataplane_us, t.max_config_us, t.max_elapse_us = max_dataplane_us, max_config_us, max_elapse_us
    t.last_applied_ns = last_applied_ns
    for b, n in buckets.items():
        t.elapse_buckets[b] = n
    _count(counters, buckets, elapse_sum, apply_us, messages)
    return ack


def _buckets(elapse_us: int | None, n: int) -> dict[int, int]:
    """The elapse buckets of n messages applied with the same publish -> applied time."""
    return {elapse_bucket(elapse_us): n} if elapse_us is not None else {}


def _count(counters: Counters, buckets: Mapping[int, int], elapse_sum: int, apply_us: int, messages: int) -> None:
    """An ack's times into the counters' histograms."""
    totals = counters.elapse_buckets
    for b, n in buckets.items():
        totals[b] = totals.get(b, 0) + n
    counters.elapse_us_sum += elapse_sum
    b = elapse_bucket(apply_us // messages)
    counters.apply_buckets[b] = counters.apply_buckets.get(b, 0) + messages
    counters.apply_us_sum += apply_us

