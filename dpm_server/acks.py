"""The ack tracker: how far every host got (watermarks from progress acks), which requests
that completes, failures merged, stragglers resynced, callers answered (docs/internals.md,
"Acknowledgements" and "The caller's reply").

A request waits for positions: the unicast gs-seq of its message to each host, and for
each of its multicast messages, the hosts of the VPC that must apply it (a `Fanout`). A
host's unicast waits queue behind its unicast watermark. A VPC's fanouts queue by gs-seq,
and only the first one still open (the head) counts the hosts behind it: an ack costs
O(log hosts) for each VPC it moves, whatever number of messages it covers, plus the
failures it carries. When the count reaches zero, the head and the fanouts after it that every host
of theirs passed complete at once, counted from the watermarks of the VPC's hosts (kept
in order as acks move them). A fanout held behind an earlier one that waits for a
slow or silent host completes with it, or at the straggler tick (`tick`).
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import structlog

from alcor.schema import common_pb2 as common
from alcor.schema import goalstateprovisioner_pb2 as gsp
from dpm_server import ackwire
from dpm_server.ackwire import AckFields, fields_of
from dpm_server.inputs import Input, base_of, out_of, same
from gsmq import wire
from gsmq.resources import ResourceKey
from gsmq.transport import Envelope, Record
from gsmq.v1 import ack_pb2
from gsmq.wire import MessageType, Token

log = structlog.get_logger()
HOSTS_LOGGED = 20  # a line about many hosts names at most this many

# How bad a status is, for merging the statuses of many hosts into one.
_SEVERITY: dict[int, int] = {common.SUCCESS: 0, common.PENDING: 1, common.OUT_OF_ORDER: 2, common.INVALID_ARG: 3, common.FAILURE: 4}


@dataclass(init=False)
class Merged:
    status: int
    operation_type: int

    def __init__(self, status: int = common.SUCCESS, operation_type: int = common.INFO) -> None:
        self.status = status
        self.operation_type = operation_type


@dataclass(init=False, eq=False)
class Pending:
    """One caller's request in flight: `unicast` {host: gs-seq of its message} and
    `multicast` [(message, hosts that must apply it)], as published; the tracker turns
    them into waits (`unicast` keeps the hosts still awaited)."""

    id: str
    data: Input
    on_done: Callable[[gsp.GoalStateOperationReply], None]
    unicast: dict[str, int]
    multicast: list[tuple[Token, set[str]]]
    started: float
    fanouts: list[Fanout]
    open: int  # unicast waits and fanouts not passed yet
    resynced: dict[str, float]  # host -> when its last resync (covering all it owes this request) was sent
    covered: set[str]  # hosts whose resync passed: they owe its fanouts nothing
    superseded: frozenset[ResourceKey]  # states stored together with newer revisions of them: OUT_OF_ORDER
    done: bool
    merged: dict[ResourceKey, Merged]
    total_us: int  # the largest apply time of an ack that moved the request on
    dataplane_us: int  # ... and of its slowest data-plane call, resource time, publish -> applied
    config_us: int
    elapse_us: int

    def __init__(self, id: str, data: Input, on_done: Callable[[gsp.GoalStateOperationReply], None],  # noqa: A002
                 superseded: frozenset[ResourceKey] = frozenset()) -> None:
        self.id = id
        self.data = data
        self.on_done = on_done
        self.unicast = {}
        self.multicast = []
        self.started = time.monotonic()
        self.fanouts = []
        self.open = 0
        self.resynced = {}
        self.covered = set()
        self.superseded = superseded
        self.done = False
        self.merged = {}
        self.total_us = self.dataplane_us = self.config_us = self.elapse_us = 0


_Times = ackwire.Times
_NO_TIMES: _Times = (0, 0, 0, 0)


@dataclass(init=False, slots=True, eq=False)
class Fanout:
    """A multicast message of `vpc` a request waits for, and the hosts that must apply it
    (never changed: the requests of one batch share them)."""

    request: Final[Pending]
    vpc: Final[str]
    seq: Final[int]
    hosts: Final[set[str]]
    passed: bool

    def __init__(self, request: Pending, vpc: str, seq: int, hosts: set[str]) -> None:
        self.request = request
        self.vpc = vpc
        self.seq = seq
        self.hosts = hosts
        self.passed = False


@dataclass(init=False, slots=True)
class VpcQueue:
    """One VPC's fanouts, ordered by gs-seq; those before `start` are passed (or given up).
    `behind` counts the hosts of the head (the first open one) that have not passed it,
    None when it must be counted again; `times` are the largest of the acks since the
    head last moved on. `members` are the hosts of every fanout it has queued, `marks`
    their watermarks in order, kept so as acks move them: a fanout's count is the marks
    before its gs-seq less those of members not among its hosts."""

    seqs: list[int]
    fanouts: list[Fanout]
    start: int
    behind: int | None
    times: _Times
    hosts: set[str] | None  # its last fanout's hosts: the next fanout with the same hosts shares them
    members: set[str]
    marks: list[int]
    held: set[str] | None  # a set known to lie within `members` (they only grow): what its parts join is there

    def __init__(self) -> None:
        self.seqs = []
        self.fanouts = []
        self.start = 0
        self.behind = None
        self.times = _NO_TIMES
        self.hosts = None
        self.members = set()
        self.marks = []
        self.held = None

    def moved(self, host: str, was: int, now: int) -> None:
        """`host`'s watermark went from `was` to `now`: move its mark. Members' marks are
        added when they join, and every move of a watermark of the VPC comes here."""
        if host in self.members:
            marks = self.marks
            del marks[bisect_left(marks, was)]
            insort(marks, now)

    def shared(self, hosts: set[str]) -> set[str]:
        """`hosts`, or the equal set of the last fanout (kept once, and joined to the members once)."""
        if self.hosts is not None and same(self.hosts, hosts):
            return self.hosts
        self.hosts = hosts
        return hosts

    def add(self, fanout: Fanout) -> None:
        """Keep the fanouts in gs-seq order: inputs of one batch share its messages, so the
        second input's fanouts of a VPC split in several messages come after the first's."""
        i = len(self.seqs)
        if self.seqs and fanout.seq < self.seqs[-1]:
            i = bisect_right(self.seqs, fanout.seq, self.start)
        self.seqs.insert(i, fanout.seq)
        self.fanouts.insert(i, fanout)
        if i == self.start:  # a new head
            self.behind = None

    def head(self) -> Fanout | None:
        """The first fanout still open, past those passed or given up; None when none is."""
        fanouts = self.fanouts
        while self.start < len(fanouts):
            fanout = fanouts[self.start]
            if not fanout.passed and not fanout.request.done:
                return fanout
            self.start += 1
            self.behind = None
        return None

    def compact(self) -> None:
        """Drop the fanouts before `start` when they are many."""
        if self.start > 64 and self.start * 2 > len(self.fanouts):
            del self.seqs[: self.start], self.fanouts[: self.start]
            self.start = 0


@dataclass(init=False, slots=True)
class HostProgress:
    """One host's unicast watermark (this DPM's epoch), the highest multicast gs-seq it has
    seen per VPC where an ack saw past its watermark there (a gap), and its unicast waits.
    Its VPC watermarks are kept by VPC (`AckTracker.marks`): a VPC's hosts are read
    together. `host` is the tracker's key for it (the inputs' interned id, as the requests
    first name it): an ack's lookups use it, and so match the tracker's keys and sets of
    hosts by identity."""

    host: str
    unicast: int
    unicast_seen: int
    vpcs_seen: dict[str, int] | None  # only where an ack saw past its watermark (a gap); None while none did
    heard: float  # when its last ack came
    # (seq, request, a resync covering all); None while nothing is awaited (an empty deque is 760 B)
    unicast_waits: deque[tuple[int, Pending, bool]] | None

    def __init__(self, host: str) -> None:
        self.host = host
        self.unicast = 0
        self.unicast_seen = 0
        self.vpcs_seen = None
        self.heard = float("-inf")
        self.unicast_waits = None

    def wait_unicast(self, seq: int, request: Pending, covers_all: bool) -> None:
        if self.unicast_waits is None:
            self.unicast_waits = deque()
        self.unicast_waits.append((seq, request, covers_all))


def decode_acks(messages: Iterable[Record], dead_letter_topic: str = "") -> tuple[list[AckFields], list[Envelope]]:
    """The acks among messages consumed from the reply topic (markers skipped), and a dead
    letter for each record refused (undecodable, not an ack, no host): a broken record is
    refused alone, never fatal to its batch. A record without gs-type is an Ack, as is one
    typed Ack (the reply topic's rule: `wire.message_type(..., reply=True)`). Read from
    the bytes (`ackwire.read`), or parsed when not of the usual form."""
    out: list[AckFields] = []
    refused: list[Envelope] = []
    for message in messages:
        kind = message.header(wire.MSG_TYPE)
        if kind is not None and kind != _ACK:
            if kind != _MARKER:
                refused.append(_refuse(message, dead_letter_topic, f"not an Ack on the reply topic: gs-type {kind[:40]!r}"))
            continue
        value = message.value
        ack = ackwire.read(value)
        if ack is None:
            try:
                parsed = ack_pb2.Ack.FromString(value)
            except Exception as exc:  # noqa: BLE001 - DecodeError and friends
                refused.append(_refuse(message, dead_letter_topic, f"undecodable Ack: {exc}"))
                continue
            if max(parsed.unicast_seq, parsed.unicast_seen) > wire.MAX_NUMBER or _past_max(parsed.vpcs):
                refused.append(_refuse(message, dead_letter_topic, "Ack with a sequence past 2^63-1"))
                continue
            ack = fields_of(parsed)
        if not ack.host_id:
            refused.append(_refuse(message, dead_letter_topic, "Ack without host_id"))
        else:
            out.append(ack)
    return out, refused


# gs-type values as plain strings (a member looked up on the StrEnum costs more, per record)
_ACK, _MARKER = MessageType.ACK.value, MessageType.MARKER.value


def _past_max(vpcs: Iterable[ack_pb2.VpcProgress]) -> bool:
    return any(v.seq > wire.MAX_NUMBER or v.seen > wire.MAX_NUMBER for v in vpcs)


def _refuse(record: Record, topic: str, reason: str) -> Envelope:
    message = record.envelope()
    log.warning("reply_refused", partition=message.partition, offset=message.offset, error=reason)
    return wire.dead_letter(message, topic, reason)


class AckTracker:
    """Completes requests as watermarks pass their positions; resyncs stragglers; fails the silent.

    A straggler is a host that has not passed a request's positions after `retry_after`, or
    after the usual time when hosts are slow (TCP's retransmission timeout: smoothed time +
    4 deviations, RFC 6298; see `patience`). It is resynced (its whole state, which covers
    every position) only when that can help: when it has been silent for that long, or when
    a gap holds its watermark back. A host that acks and has not reached the position yet is
    working through its queue, and more messages would queue behind it. A resync not passed
    after the same patience (lost with a gRPC link that went down, say) is sent again, on the
    same rule. `resync(host)` publishes the host's full state and returns its unicast gs-seq."""

    def __init__(self, retry_after: float, timeout: float, resync: Callable[[str], int | None], epoch: str = "") -> None:
        self.retry_after = retry_after
        self.timeout = timeout
        self._resync = resync
        self.epoch = epoch
        self.clock: Callable[[], float] = time.monotonic
        self.hosts: dict[str, HostProgress] = {}
        self.marks: dict[str, dict[str, int]] = {}  # vpc -> {host: its watermark there}
        self.queues: dict[str, VpcQueue] = {}  # vpc -> the fanouts waiting on its messages
        self._multicast: dict[Token, dict[str, Pending]] = {}  # multicast message -> the requests it carries resources of
        self.srtt = -1.0  # smoothed completion time of a host's first copy (s; -1: none timed yet), and its mean deviation
        self.rttvar = 0.0
        self.pending: dict[str, Pending] = {}
        self.replies = 0  # acks received
        self.retries = 0  # resyncs of stragglers

    @property
    def patience(self) -> float:
        """How long a host may take before it is a straggler: at least `retry_after`, and at
        most halfway to `timeout`, so that a lost host is always resynced before it is failed."""
        if self.srtt < 0:
            return self.retry_after
        return min(max(self.retry_after, self.srtt + 4 * self.rttvar), max(self.retry_after, (self.retry_after + self.timeout) / 2))

    def host(self, host: str) -> HostProgress:
        hp = self.hosts.get(host)
        if hp is None:
            hp = self.hosts[host] = HostProgress(host)
        return hp

    def waiting_on(self, vpc: str) -> bool:
        """Whether a request still waits for a host to apply a message of `vpc`."""
        queue = self.queues.get(vpc)
        return queue is not None and queue.head() is not None

    def waiting(self, request: Pending) -> set[str]:
        """The hosts a request still waits for: O(the hosts of its open fanouts), asked only
        of requests older than the patience."""
        out = set(request.unicast)
        covered = request.covered
        for fanout in request.fanouts:
            if fanout.passed or fanout.vpc not in self.queues:  # passed, or given up
                continue
            vpc, seq = fanout.vpc, fanout.seq
            out.update(h for h in fanout.hosts if h not in covered and self._mark(h, vpc) < seq)
        return out

    def _behind(self, vpc: str, queue: VpcQueue, fanout: Fanout) -> int:
        """How many of the fanout's hosts (not covered by a resync) have not passed it:
        O(the fewer of its hosts and the members that are not its hosts)."""
        hosts, seq, covered = fanout.hosts, fanout.seq, fanout.request.covered
        if covered or 2 * len(hosts) < len(queue.members):
            return sum(1 for mark in self._marks(hosts - covered if covered else hosts, vpc) if mark < seq)
        members, out = queue.members, out_of(hosts)
        # members that are the set the hosts were made from: those not among them are its few out
        is_base = base_of(hosts) is queue.held and len(members) == len(hosts) + len(out)
        others = sum(1 for mark in self._marks(out if is_base else members - hosts, vpc) if mark < seq)
        return bisect_left(queue.marks, seq) - others

    def _join(self, vpc: str, queue: VpcQueue, hosts: set[str]) -> None:
        """Add the hosts new to the queue's members, and their watermarks to its marks:
        none, without reading them, when the set they were made from is held already."""
        base = base_of(hosts)
        if base is queue.held:
            return
        new = hosts - queue.members
        if new:
            queue.members |= new
            queue.marks.extend(self._marks(new, vpc))
            queue.marks.sort()
        if all(h in queue.members for h in out_of(hosts)):  # the whole base is in now
            queue.held = base

    def _marks(self, hosts: Iterable[str], vpc: str) -> list[int]:
        """The hosts' watermarks in the VPC (0: none yet), in their order."""
        marks = self.marks.get(vpc, {})
        return [marks.get(h, 0) for h in hosts]

    def _mark(self, host: str, vpc: str) -> int:
        """The host's watermark in the VPC (0: none yet)."""
        return self.marks.get(vpc, {}).get(host, 0)

    def _stuck(self, host: str, hp: HostProgress) -> bool:
        """A gap holds one of the host's watermarks back: only a resync moves it on."""
        seen_vpcs = hp.vpcs_seen
        return hp.unicast_seen > hp.unicast or (
            seen_vpcs is not None and any(seen > self._mark(host, vpc) for vpc, seen in seen_vpcs.items()))

    def track(self, request: Pending) -> None:
        """Wait for every host's positions (the messages just published for the request)."""
        request.started = self.clock()
        for key, state in request.data.states.items():
            request.merged[key] = Merged(operation_type=int(state.operation_type))
        for host, seq in request.unicast.items():
            self.host(host).wait_unicast(seq, request, False)
        for token, hosts in request.multicast:
            if hosts:
                queue = self.queues.get(token.vpc)
                if queue is None:
                    queue = self.queues[token.vpc] = VpcQueue()
                last = queue.hosts
                fanout = Fanout(request, token.vpc, token.seq, queue.shared(hosts))
                if fanout.hosts is not last:  # the last set joined the members already
                    self._join(token.vpc, queue, fanout.hosts)
                request.fanouts.append(fanout)
                queue.add(fanout)
                self._multicast.setdefault(token, {})[request.id] = request
        request.open = len(request.unicast) + len(request.fanouts)
        if request.open:
            self.pending[request.id] = request
        else:
            self._finish(request, [])

    def on_acks(self, acks: Iterable[AckFields]) -> None:
        """Acks read together, all heard at one time."""
        now = self.clock()
        for ack in acks:
            self.on_ack(ack, now)

    def on_ack(self, ack: AckFields, now: float | None = None) -> None:
        """A host's progress, heard `now` (None: read the clock): failures merged into their
        requests, then watermarks moved on."""
        self.replies += 1
        if now is None:
            now = self.clock()
        hp = self.host(ack.host_id)
        host = hp.host
        hp.heard = now
        epoch, mine = ack.epoch, self.epoch
        ours = epoch == mine
        if (ours or not epoch) and len(ack.failures):
            for failure in ack.failures:
                self._fail(host, hp, failure)
        if ours:
            seen, seq = ack.unicast_seen, ack.unicast_seq
            hp.unicast_seen = max(hp.unicast_seen, seen)
            if seq > hp.unicast:
                hp.unicast = seq
                if hp.unicast_waits is not None:
                    self._pass_unicast(host, hp.unicast_waits, seq, ack.times, now)
                    if not hp.unicast_waits:
                        hp.unicast_waits = None
        for vpc, vpc_epoch, seq, seen in ack.vpcs:
            if vpc_epoch != mine:
                continue
            if seen > seq:  # a gap holds the watermark back (`_stuck`); a seen at most its seq never could
                marks_seen = hp.vpcs_seen
                if marks_seen is None:
                    marks_seen = hp.vpcs_seen = {}
                if seen > marks_seen.get(vpc, 0):
                    marks_seen[vpc] = seen
            marks = self.marks.get(vpc)
            if marks is None:
                marks = self.marks[vpc] = {}
            was = marks.get(host, 0)
            if seq > was:
                marks[host] = seq
                queue = self.queues.get(vpc)
                if queue is not None:
                    self._pass_fanouts(host, vpc, queue, was, seq, ack.times, now)

    def _pass_unicast(self, host: str, waits: deque[tuple[int, Pending, bool]], watermark: int, times: _Times,
                      now: float) -> None:
        """Pop the unicast waits the watermark passed; a resync's covers every position the host owes its request."""
        while waits and waits[0][0] <= watermark:
            _, request, covers_all = waits.popleft()
            if request.done:
                continue
            if request.unicast.pop(host, None) is not None:
                request.open -= 1
            if covers_all and host not in request.covered:
                request.covered.add(host)
                for fanout in list(request.fanouts):
                    if not fanout.passed and host in fanout.hosts:
                        self._cover(host, fanout, times)
            if host not in request.resynced:  # a resynced host times neither copy (Karn)
                self._sample(now - request.started)
            self._moved_on(request, times)

    def _cover(self, host: str, fanout: Fanout, times: _Times) -> None:
        """The host's resync passed: it no longer counts behind the fanout (were it the head)."""
        queue = self.queues.get(fanout.vpc)
        if queue is None:
            return
        if queue.behind is not None and queue.head() is fanout and self._mark(host, fanout.vpc) < fanout.seq:
            queue.behind -= 1
        if not queue.behind:  # none left behind, or to be counted again
            self._advance(fanout.vpc, queue, times)

    def _pass_fanouts(self, host: str, vpc: str, queue: VpcQueue, was: int, watermark: int, times: _Times, now: float) -> None:
        """The host passed the VPC's messages in (was, watermark]: O(log hosts), plus the
        fanouts that completes (see the module)."""
        queue.times = _larger(queue.times, times)
        queue.moved(host, was, watermark)
        head = queue.head()
        if head is None:
            del self.queues[vpc]
            return
        if queue.behind is not None and was < head.seq <= watermark and host in head.hosts:
            request = head.request
            if host not in request.covered:
                queue.behind -= 1
                if host not in request.resynced:  # a resynced host times neither copy (Karn)
                    self._sample(now - request.started)
        if not queue.behind:
            self._advance(vpc, queue, _NO_TIMES)

    def _advance(self, vpc: str, queue: VpcQueue, times: _Times) -> None:
        """Complete the fanouts from the head on that all their hosts passed, and count the
        hosts behind the first that is not (`_behind`)."""
        moved = False
        while (head := queue.head()) is not None:
            behind = self._behind(vpc, queue, head)
            if behind:
                queue.behind = behind
                break
            head.passed = True
            queue.start += 1
            moved = True
            request = head.request
            request.open -= 1
            self._moved_on(request, _larger(queue.times, times))
        if moved:
            queue.times = _NO_TIMES
        if queue.head() is None:
            if self.queues.get(vpc) is queue:
                del self.queues[vpc]
        else:
            queue.compact()

    def _release(self, request: Pending) -> None:
        """Complete a request whose hosts all passed its fanouts while an earlier one held
        its VPC's head (see `tick`)."""
        vpcs = set()
        for fanout in request.fanouts:
            if not fanout.passed:
                fanout.passed = True
                request.open -= 1
                vpcs.add(fanout.vpc)
        times = _NO_TIMES  # the acks its VPCs got since their heads last moved on
        for vpc in vpcs:
            if (held := self.queues.get(vpc)) is not None:
                times = _larger(times, held.times)
        self._moved_on(request, times)
        self._move_heads(vpcs)  # a passed head moves on now, not at the VPC's next ack

    def _moved_on(self, request: Pending, times: _Times) -> None:
        """One of the request's positions was passed with these times; it completes when none is left."""
        total_us, dataplane_us, config_us, elapse_us = times
        request.total_us = max(request.total_us, total_us)
        request.dataplane_us = max(request.dataplane_us, dataplane_us)
        request.config_us = max(request.config_us, config_us)
        request.elapse_us = max(request.elapse_us, elapse_us)
        if request.open == 0 and not request.done:
            del self.pending[request.id]
            self._finish(request, [])

    def _fail(self, host: str, hp: HostProgress, failure: ack_pb2.Failure) -> None:
        """Merge a resource that did not succeed into the requests whose message carried it
        and that listed it for this host (none: a resync's, or answered already)."""
        vpc, seq = failure.vpc_id, failure.seq
        requests: list[Pending] = []
        if vpc:
            requests = list(self._multicast.get(Token(vpc, seq), {}).values())
        elif seq:
            for at, waiting, _ in hp.unicast_waits or ():
                if at > seq:
                    break
                if at == seq:
                    requests.append(waiting)
        key = (int(failure.resource_type), failure.resource_id)
        status = int(failure.status)
        for request in requests:
            merged = request.merged.get(key)
            if merged is not None and _SEVERITY.get(status, 4) > _SEVERITY.get(merged.status, 4) and request.data.lists(host, key):
                merged.status = status

    def _sample(self, seconds: float) -> None:
        # The acks of one poll share one clock reading: a request tracked while they are
        # worked (from a reply's callback) can look younger than that reading.
        seconds = max(seconds, 0.0)
        if self.srtt < 0:
            self.srtt, self.rttvar = seconds, seconds / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - seconds)
            self.srtt = 0.875 * self.srtt + 0.125 * seconds

    def tick(self, now: float | None = None) -> None:
        """Resync stragglers (see the class), once per host for all its requests; fail hosts
        whose requests passed `timeout`."""
        now = self.clock() if now is None else now
        patience = self.patience
        stragglers: dict[str, list[Pending]] = {}
        for request in list(self.pending.values()):
            if request.done:  # completed by the fanouts a timed-out request let go
                continue
            age = now - request.started
            if age >= self.timeout:
                del self.pending[request.id]
                self._finish(request, sorted(self.waiting(request)))
                self._move_heads({token.vpc for token, _ in request.multicast})  # past the fanouts given up
            elif age >= patience:
                waiting = self.waiting(request)
                if not waiting:  # all its hosts passed: it was held behind an earlier fanout of its VPC
                    self._release(request)
                for host in waiting:
                    if host in request.resynced and now - request.resynced[host] < patience:
                        continue  # its resync has had less time than a first copy gets
                    hp = self.host(host)
                    if now - hp.heard < patience and not self._stuck(host, hp):
                        continue  # working through its queue: asked again at the next tick
                    stragglers.setdefault(host, []).append(request)
        resynced: list[str] = []
        for host, requests in stragglers.items():
            seq = self._resync(host)
            if seq is None:
                continue  # not published (logged): tried again at a later tick, or failed at the timeout
            hp = self.host(host)
            for request in requests:
                request.resynced[host] = now
                hp.wait_unicast(seq, request, True)
            self.retries += 1
            resynced.append(host)
            log.debug("straggler_resynced", host=host, requests=len(requests), seq=seq)
        if resynced:  # one line a tick, however many hosts
            log.info("stragglers_resynced", hosts=resynced[:HOSTS_LOGGED], count=len(resynced))

    def _finish(self, request: Pending, silent: list[str]) -> None:
        request.done = True
        for host in silent:
            self._forget_done(self.host(host))
            for key in request.data.keys_of(host):
                if key in request.merged:
                    request.merged[key].status = common.FAILURE
        for key in request.superseded:
            request.merged[key].status = common.OUT_OF_ORDER
        for token, _ in request.multicast:
            carried = self._multicast.get(token)
            if carried is not None and carried.pop(request.id, None) is not None and not carried:
                del self._multicast[token]
        request.on_done(caller_reply(request.merged, request, request.data.format_version, silent))
        request.fanouts = []  # each refers back to the request: freed now, not by a collection

    def _move_heads(self, vpcs: Iterable[str]) -> None:
        """Let these VPCs' queues move past fanouts passed or given up outside an ack."""
        for vpc in vpcs:
            queue = self.queues.get(vpc)
            if queue is not None:
                self._advance(vpc, queue, _NO_TIMES)

    @staticmethod
    def _forget_done(hp: HostProgress) -> None:
        """Drop the unicast waits of finished requests (a silent host's watermark may never pass them)."""
        hp.unicast_waits = deque(w for w in hp.unicast_waits or () if not w[1].done) or None


def _larger(a: _Times, b: _Times) -> _Times:
    return (max(a[0], b[0]), max(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


@dataclass(frozen=True)
class Times:
    """The times a caller's reply gives every resource, in microseconds (the largest over its hosts)."""

    total_us: int = 0
    dataplane_us: int = 0
    config_us: int = 0
    elapse_us: int = 0


def caller_reply(
    merged: Mapping[ResourceKey, Merged], times: Times | Pending, format_version: int, silent: list[str]
) -> gsp.GoalStateOperationReply:
    """One status per input resource (worst over hosts), plus a failure marker per silent host
    (a caller gets the first `wire.MAX_FAILED_HOSTS` of them: `bounded`)."""
    reply = gsp.GoalStateOperationReply(format_version=format_version, message_total_operation_time=times.total_us)
    for (rtype, rid), m in merged.items():
        reply.operation_statuses.add(
            resource_id=rid, resource_type=rtype, operation_type=m.operation_type, operation_status=m.status,
            dataplane_programming_time=times.dataplane_us, network_configuration_time=times.config_us,
            state_elapse_time=times.elapse_us,
        )
    for host in silent:
        reply.operation_statuses.add(resource_id=wire.failed_host_id(host), operation_type=common.INFO, operation_status=common.FAILURE)
    return reply


def combined(replies: Iterable[gsp.GoalStateOperationReply], format_version: int) -> gsp.GoalStateOperationReply:
    """The replies to an input's slices as one: each resource's worst status over them, every
    silent host once, the largest times."""
    merged: dict[ResourceKey, Merged] = {}
    silent: dict[str, None] = {}
    total = dataplane = config = elapse = 0
    for reply in replies:
        total = max(total, reply.message_total_operation_time)
        for s in reply.operation_statuses:
            host = wire.failed_host(s.resource_id)
            if host is not None:
                silent[host] = None
                continue
            dataplane, config = max(dataplane, s.dataplane_programming_time), max(config, s.network_configuration_time)
            elapse = max(elapse, s.state_elapse_time)
            m = merged.setdefault((int(s.resource_type), s.resource_id), Merged(int(s.operation_status), int(s.operation_type)))
            if _SEVERITY.get(int(s.operation_status), 4) > _SEVERITY.get(m.status, 4):
                m.status = int(s.operation_status)
    return caller_reply(merged, Times(total, dataplane, config, elapse), format_version, list(silent))


def bounded(reply: gsp.GoalStateOperationReply) -> gsp.GoalStateOperationReply:
    """The reply as a caller gets it: the first `wire.MAX_FAILED_HOSTS` silent-host markers,
    then one status counting the rest (a reply naming 200,000 hosts would pass gRPC's limit)."""
    markers = [i for i, s in enumerate(reply.operation_statuses) if wire.failed_host(s.resource_id) is not None]
    if len(markers) <= wire.MAX_FAILED_HOSTS:
        return reply
    for i in reversed(markers[wire.MAX_FAILED_HOSTS:]):
        del reply.operation_statuses[i]
    reply.operation_statuses.add(resource_id=wire.more_failed_hosts_id(len(markers) - wire.MAX_FAILED_HOSTS),
                                 operation_type=common.INFO, operation_status=common.FAILURE)
    return reply


def failed_reply(data: Input, reason: str) -> gsp.GoalStateOperationReply:
    """FAILURE for every resource of an input the DPM could not publish."""
    reply = gsp.GoalStateOperationReply(format_version=data.format_version)
    for (rtype, rid), state in data.states.items():
        reply.operation_statuses.add(resource_id=rid, resource_type=rtype, operation_type=state.operation_type,
                                     operation_status=common.FAILURE)
    return reply


def invalid_reply(bad: Mapping[ResourceKey, str], format_version: int) -> gsp.GoalStateOperationReply:
    """INVALID_ARG for each refused resource (nothing of the message was published)."""
    reply = gsp.GoalStateOperationReply(format_version=format_version)
    for (rtype, rid) in bad:
        reply.operation_statuses.add(resource_id=rid, resource_type=rtype if rtype in _TYPES else 0,
                                     operation_status=common.INVALID_ARG)
    return reply


_TYPES = frozenset(common.ResourceType.values())
