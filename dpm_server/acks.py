"""The ack tracker: how far every host got (watermarks from progress acks), which requests
that completes, failures merged, stragglers resynced, callers answered (docs/internals.md,
"Acknowledgements" and "The caller's reply").

A request waits, per targeted host, for positions: the unicast gs-seq of its message to
the host, and the multicast gs-seq of each VPC message the host must apply. Each host
keeps its waits in queues ordered by position (one for unicast, one per VPC), so an ack
that moves a watermark pops exactly the waits it passes: O(1) amortised per wait, plus
the failures it carries, whatever number of messages the ack covers.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import structlog

from alcor.schema import common_pb2 as common
from alcor.schema import goalstateprovisioner_pb2 as gsp
from dpm_server.inputs import Input
from gsmq import wire
from gsmq.resources import ResourceKey
from gsmq.transport import Envelope
from gsmq.v1 import ack_pb2
from gsmq.wire import MessageType, Token

log = structlog.get_logger()

# How bad a status is, for merging the statuses of many hosts into one.
_SEVERITY: dict[int, int] = {common.SUCCESS: 0, common.PENDING: 1, common.OUT_OF_ORDER: 2, common.INVALID_ARG: 3, common.FAILURE: 4}


@dataclass
class Merged:
    status: int = common.SUCCESS
    operation_type: int = common.INFO


@dataclass
class Pending:
    """One caller's request in flight."""

    id: str
    data: Input
    positions: dict[str, set[Token]]  # host -> the messages it must apply
    on_done: Callable[[gsp.GoalStateOperationReply], None]
    started: float = field(default_factory=time.monotonic)
    waiting: dict[str, Wait] = field(default_factory=dict)  # host -> what is still awaited from it
    merged: dict[ResourceKey, Merged] = field(default_factory=dict)
    total_us: int = 0  # the largest apply time of an ack that completed a host
    dataplane_us: int = 0  # ... and of its slowest data-plane call, resource time, publish -> applied
    config_us: int = 0
    elapse_us: int = 0


@dataclass(slots=True, eq=False)
class Wait:
    """What one request still waits for from one host: `parts` positions, or the resync
    (a full state, unicast `resync_seq`) that covers them all."""

    request: Pending
    host: str
    parts: int
    done: bool = False
    resync_seq: int = 0


@dataclass(slots=True)
class HostProgress:
    """One host's watermarks (this DPM's epoch) and the waits queued behind them."""

    unicast: int = 0
    unicast_seen: int = 0
    vpcs: dict[str, int] = field(default_factory=dict)
    vpcs_seen: dict[str, int] = field(default_factory=dict)
    heard: float = float("-inf")  # when its last ack came
    # (seq, wait, a resync covering all); None while nothing is awaited (an empty deque is 760 B)
    unicast_waits: deque[tuple[int, Wait, bool]] | None = None
    vpc_waits: dict[str, deque[tuple[int, Wait, bool]]] = field(default_factory=dict)

    def wait_unicast(self, seq: int, wait: Wait, covers_all: bool) -> None:
        if self.unicast_waits is None:
            self.unicast_waits = deque()
        self.unicast_waits.append((seq, wait, covers_all))

    def stuck(self) -> bool:
        """A gap holds a watermark back: only a resync moves it on."""
        return self.unicast_seen > self.unicast or any(seen > self.vpcs.get(v, 0) for v, seen in self.vpcs_seen.items())


def decode_acks(messages: Iterable[Envelope], dead_letter_topic: str = "") -> tuple[list[ack_pb2.Ack], list[Envelope]]:
    """The acks among messages consumed from the reply topic (markers skipped), and a dead
    letter for each record refused (undecodable, not an ack, no host): a broken record is
    refused alone, never fatal to its batch."""
    out: list[ack_pb2.Ack] = []
    refused: list[Envelope] = []
    parse = ack_pb2.Ack.FromString
    for message in messages:
        kind = message.headers.get(wire.MSG_TYPE, _GOAL_STATE)
        if kind != _ACK:
            if kind != _MARKER:
                refused.append(_refuse(message, dead_letter_topic, f"not an Ack on the reply topic: gs-type {kind[:40]!r}"))
            continue
        try:
            ack = parse(message.value)
        except Exception as exc:  # noqa: BLE001 - DecodeError and friends
            refused.append(_refuse(message, dead_letter_topic, f"undecodable Ack: {exc}"))
            continue
        if not ack.host_id:
            refused.append(_refuse(message, dead_letter_topic, "Ack without host_id"))
        elif ack.unicast_seq > wire.MAX_NUMBER or ack.unicast_seen > wire.MAX_NUMBER or _past_max(ack.vpcs):
            refused.append(_refuse(message, dead_letter_topic, "Ack with a sequence past 2^63-1"))
        else:
            out.append(ack)
    return out, refused


# gs-type values as plain strings (a member looked up on the StrEnum costs more, per record)
_ACK, _MARKER, _GOAL_STATE = MessageType.ACK.value, MessageType.MARKER.value, MessageType.GOAL_STATE.value


def _past_max(vpcs: Iterable[ack_pb2.VpcProgress]) -> bool:
    return any(v.seq > wire.MAX_NUMBER or v.seen > wire.MAX_NUMBER for v in vpcs)


def _refuse(message: Envelope, topic: str, reason: str) -> Envelope:
    log.warning("reply_refused", partition=message.partition, offset=message.offset, error=reason)
    return wire.dead_letter(message, topic, reason)


class AckTracker:
    """Completes requests as watermarks pass their positions; resyncs stragglers; fails the silent.

    A straggler is a host that has not passed a request's positions after `retry_after`, or
    after the usual time when hosts are slow (TCP's retransmission timeout: smoothed time +
    4 deviations, RFC 6298; see `patience`). It is resynced (its whole state, which covers
    every position) only when that can help: when it has been silent for that long, or when
    a gap holds its watermark back. A host that acks and has not reached the position yet is
    working through its queue, and more messages would queue behind it. `resync(host)`
    publishes the host's full state and returns its unicast gs-seq."""

    def __init__(self, retry_after: float, timeout: float, resync: Callable[[str], int], epoch: str = "") -> None:
        self.retry_after = retry_after
        self.timeout = timeout
        self._resync = resync
        self.epoch = epoch
        self.clock: Callable[[], float] = time.monotonic
        self.hosts: dict[str, HostProgress] = {}
        self._multicast: dict[Token, Pending] = {}  # multicast message -> the request that published it
        self.srtt: float | None = None  # smoothed completion time of a host's first copy (s), and its mean deviation
        self.rttvar = 0.0
        self.pending: dict[str, Pending] = {}
        self.replies = 0  # acks received
        self.retries = 0  # resyncs of stragglers

    @property
    def patience(self) -> float:
        """How long a host may take before it is a straggler: at least `retry_after`, and at
        most halfway to `timeout`, so that a lost host is always resynced before it is failed."""
        if self.srtt is None:
            return self.retry_after
        return min(max(self.retry_after, self.srtt + 4 * self.rttvar), max(self.retry_after, (self.retry_after + self.timeout) / 2))

    def host(self, host: str) -> HostProgress:
        hp = self.hosts.get(host)
        if hp is None:
            hp = self.hosts[host] = HostProgress()
        return hp

    def track(self, request: Pending) -> None:
        """Wait for every host's positions (tokens of messages just published to it)."""
        request.started = self.clock()
        for key, state in request.data.states.items():
            request.merged[key] = Merged(operation_type=int(state.operation_type))
        for host, tokens in request.positions.items():
            if not tokens:
                continue
            wait = request.waiting[host] = Wait(request, host, len(tokens))
            hp = self.host(host)
            for token in tokens:
                if token.multicast:
                    hp.vpc_waits.setdefault(token.vpc, deque()).append((token.seq, wait, False))
                    self._multicast[token] = request
                else:
                    hp.wait_unicast(token.seq, wait, False)
        if not request.waiting:
            self._finish(request, [])
        else:
            self.pending[request.id] = request

    def on_ack(self, ack: ack_pb2.Ack) -> None:
        """A host's progress: failures merged into their requests, then watermarks moved on.
        Each field is read once (a read of a protobuf field costs more than of a local)."""
        self.replies += 1
        now = self.clock()
        host = ack.host_id
        hp = self.host(host)
        hp.heard = now
        epoch = ack.epoch
        ours = epoch == self.epoch
        if (ours or not epoch) and len(ack.failures):
            for failure in ack.failures:
                self._fail(hp, failure)
        if ours:
            seen, seq = ack.unicast_seen, ack.unicast_seq
            hp.unicast_seen = max(hp.unicast_seen, seen)
            if seq > hp.unicast:
                hp.unicast = seq
                if hp.unicast_waits is not None:
                    self._pass(hp.unicast_waits, seq, ack, now)
                    if not hp.unicast_waits:
                        hp.unicast_waits = None
        for progress in ack.vpcs:
            if progress.epoch != self.epoch:
                continue
            vpc, seen, seq = progress.vpc_id, progress.seen, progress.seq
            if seen > hp.vpcs_seen.get(vpc, 0):
                hp.vpcs_seen[vpc] = seen
            if seq > hp.vpcs.get(vpc, 0):
                hp.vpcs[vpc] = seq
                waits = hp.vpc_waits.get(vpc)
                if waits is not None:
                    self._pass(waits, seq, ack, now)
                    if not waits:
                        del hp.vpc_waits[vpc]

    def _pass(self, waits: deque[tuple[int, Wait, bool]], watermark: int, ack: ack_pb2.Ack, now: float) -> None:
        """Pop the waits the watermark passed; a wait with no part left completes its host
        (the ack's times are read once, for all the waits it completes)."""
        times: tuple[int, int, int, int] | None = None
        while waits and waits[0][0] <= watermark:
            _, wait, covers_all = waits.popleft()
            if wait.done:
                continue
            wait.parts -= 1
            if covers_all or wait.parts == 0:
                if times is None:
                    t = ack.timing
                    times = (t.apply_us, t.max_dataplane_us, t.max_config_us, t.max_elapse_us)
                self._host_done(wait, times, now)

    def _host_done(self, wait: Wait, times: tuple[int, int, int, int], now: float) -> None:
        """`wait`'s host has applied what the request needs; the request keeps the largest times."""
        wait.done = True
        request = wait.request
        if not wait.resync_seq:  # a resynced host times neither copy (Karn)
            self._sample(now - request.started)
        total_us, dataplane_us, config_us, elapse_us = times
        request.total_us = max(request.total_us, total_us)
        request.dataplane_us = max(request.dataplane_us, dataplane_us)
        request.config_us = max(request.config_us, config_us)
        request.elapse_us = max(request.elapse_us, elapse_us)
        del request.waiting[wait.host]
        if not request.waiting:
            del self.pending[request.id]
            self._finish(request, [])

    def _fail(self, hp: HostProgress, failure: ack_pb2.Failure) -> None:
        """Merge a resource that did not succeed into the request whose message carried it."""
        request: Pending | None = None
        vpc, seq = failure.vpc_id, failure.seq
        if vpc:
            request = self._multicast.get(Token(vpc, seq))
        elif seq:
            for at, wait, _ in hp.unicast_waits or ():
                if at >= seq:
                    request = wait.request if at == seq else None
                    break
        if request is None:
            return  # a resource of a resync or of a request answered already
        merged = request.merged.get((int(failure.resource_type), failure.resource_id))
        if merged is not None:
            status = int(failure.status)
            if _SEVERITY.get(status, 4) > _SEVERITY.get(merged.status, 4):
                merged.status = status

    def _sample(self, seconds: float) -> None:
        if self.srtt is None:
            self.srtt, self.rttvar = seconds, seconds / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - seconds)
            self.srtt = 0.875 * self.srtt + 0.125 * seconds

    def tick(self, now: float | None = None) -> None:
        """Resync stragglers (see the class), once per host for all its waits; fail hosts
        whose requests passed `timeout`."""
        now = self.clock() if now is None else now
        patience = self.patience
        stragglers: dict[str, list[Wait]] = {}
        for request in list(self.pending.values()):
            age = now - request.started
            if age >= self.timeout:
                del self.pending[request.id]
                self._finish(request, sorted(request.waiting))
            elif age >= patience:
                for host, wait in request.waiting.items():
                    if wait.resync_seq:
                        continue
                    hp = self.host(host)
                    if now - hp.heard < patience and not hp.stuck():
                        continue  # working through its queue: asked again at the next tick
                    stragglers.setdefault(host, []).append(wait)
        for host, waits in stragglers.items():
            seq = self._resync(host)
            hp = self.host(host)
            for wait in waits:
                wait.resync_seq = seq
                hp.wait_unicast(seq, wait, True)
            self.retries += 1
            log.info("straggler_resynced", host=host, requests=len(waits), seq=seq)

    def _finish(self, request: Pending, silent: list[str]) -> None:
        for host in silent:
            request.waiting.pop(host).done = True
            self._forget_done(self.host(host))
            for key in request.data.keys_of(host):
                if key in request.merged:
                    request.merged[key].status = common.FAILURE
        for tokens in request.positions.values():
            for token in tokens:
                if token.multicast and self._multicast.get(token) is request:
                    del self._multicast[token]
        request.on_done(caller_reply(request.merged, request, request.data.format_version, silent))

    @staticmethod
    def _forget_done(hp: HostProgress) -> None:
        """Drop the finished waits of a silent host (its watermarks may never pass them)."""
        hp.unicast_waits = deque(w for w in hp.unicast_waits or () if not w[1].done) or None
        for vpc in list(hp.vpc_waits):
            left = deque(w for w in hp.vpc_waits[vpc] if not w[1].done)
            if left:
                hp.vpc_waits[vpc] = left
            else:
                del hp.vpc_waits[vpc]


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
    """One status per input resource (worst over hosts), plus a failure marker per silent host."""
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


def invalid_reply(bad: Mapping[ResourceKey, str], format_version: int) -> gsp.GoalStateOperationReply:
    """INVALID_ARG for each refused resource (nothing of the message was published)."""
    reply = gsp.GoalStateOperationReply(format_version=format_version)
    for (rtype, rid) in bad:
        reply.operation_statuses.add(resource_id=rid, resource_type=rtype if rtype in _TYPES else 0,
                                     operation_status=common.INVALID_ARG)
    return reply


_TYPES = frozenset(common.ResourceType.values())
