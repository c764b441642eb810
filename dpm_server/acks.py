"""The ack tracker: which host replies each request still waits for, merged statuses,
stragglers retried, callers answered (docs/internals.md, "The caller's reply")."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import structlog

from alcor.schema import common_pb2 as common
from alcor.schema import goalstateprovisioner_pb2 as gsp
from dpm_server.planner import Input
from gsmq import wire
from gsmq.resources import ResourceKey
from gsmq.transport import Envelope
from gsmq.wire import HeaderError, MessageType, Token

log = structlog.get_logger()
Reply = tuple[str, Mapping[str, str], gsp.GoalStateOperationReply]  # (replying host, headers, reply)

# How bad a status is, for merging the statuses of many hosts into one.
_SEVERITY: dict[int, int] = {common.SUCCESS: 0, common.PENDING: 1, common.OUT_OF_ORDER: 2, common.INVALID_ARG: 3, common.FAILURE: 4}


@dataclass
class Merged:
    status: int = common.SUCCESS
    operation_type: int = common.INFO
    dataplane_us: int = 0
    config_us: int = 0
    elapse_us: int = 0


@dataclass
class Pending:
    """One caller's request in flight."""

    id: str
    data: Input
    waiting: dict[str, set[Token]]  # host -> tokens of messages it has not yet acknowledged
    on_done: Callable[[gsp.GoalStateOperationReply], None]
    started: float = field(default_factory=time.monotonic)
    retry_tokens: dict[str, Token] = field(default_factory=dict)  # host -> token of its retry copy
    merged: dict[ResourceKey, Merged] = field(default_factory=dict)
    total_us: int = 0


def decode_replies(messages: Iterable[Envelope], dead_letter_topic: str = "") -> tuple[list[Reply], list[Envelope]]:
    """The host replies among messages consumed from the reply topic (markers skipped), and a
    dead letter for each one refused (undecodable, or a malformed header): a broken reply is
    refused alone, never fatal to its batch."""
    out: list[Reply] = []
    refused: list[Envelope] = []
    for message in messages:
        if wire.message_type(message.headers) == MessageType.MARKER:
            continue
        reply = gsp.GoalStateOperationReply()
        try:
            wire.reply_token(message.headers)
            reply.ParseFromString(message.value)
        except HeaderError as exc:
            refused.append(_refuse(message, dead_letter_topic, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - DecodeError and friends
            refused.append(_refuse(message, dead_letter_topic, f"undecodable GoalStateOperationReply: {exc}"))
            continue
        out.append((message.headers.get(wire.HOST_ID) or message.key, message.headers, reply))
    return out, refused


def _refuse(message: Envelope, topic: str, reason: str) -> Envelope:
    log.warning("reply_refused", partition=message.partition, offset=message.offset, error=reason)
    return wire.dead_letter(message, topic, reason)


class AckTracker:
    """Matches replies to requests; completes, retries and fails them.

    A straggler is a host that has not answered a request after `retry_after`, or after
    the usual reply time when replies are slow (TCP's retransmission timeout: smoothed
    reply time + 4 deviations, RFC 6298; see `patience`). It is retried only when a retry can help: when
    it has been silent for that long, or when it answered a later unicast message than ours
    (ours was lost). A host that answers and has not reached our message yet is working
    through its queue, and a copy would queue behind the original. Under overload, retries
    of slow hosts only add load: at 100,000 simulated hosts they once made up most of the
    traffic. `sent_seq(host)` is the last unicast sequence published to the host."""

    def __init__(self, retry_after: float, timeout: float, retry: Callable[[Pending, str], Token],
                 sent_seq: Callable[[str], int] = lambda host: 0, epoch: str = "") -> None:
        self.retry_after = retry_after
        self.timeout = timeout
        self._retry = retry
        self._sent_seq = sent_seq
        self._epoch = f"{epoch}-" if epoch else ""
        self.clock: Callable[[], float] = time.monotonic
        self.heard: dict[str, tuple[float, int]] = {}  # host -> (when it last replied, highest unicast seq it answered)
        self.srtt: float | None = None  # smoothed reply time of first copies (s), and its mean deviation
        self.rttvar = 0.0
        self.pending: dict[str, Pending] = {}
        self.replies = 0
        self.retries = 0

    @property
    def patience(self) -> float:
        """How long a host may take to answer before it is a straggler: at least `retry_after`,
        and at most halfway to `timeout`, so that a host that lost a message is always
        retried before it is failed."""
        if self.srtt is None:
            return self.retry_after
        return min(max(self.retry_after, self.srtt + 4 * self.rttvar), max(self.retry_after, (self.retry_after + self.timeout) / 2))

    def track(self, request: Pending) -> None:
        request.started = self.clock()
        request.waiting = {host: tokens for host, tokens in request.waiting.items() if tokens}
        for key, state in request.data.states.items():
            request.merged[key] = Merged(operation_type=int(state.operation_type))
        if not request.waiting:
            self._finish(request, [])
        else:
            self.pending[request.id] = request

    def on_reply(self, host: str, headers: Mapping[str, str], reply: gsp.GoalStateOperationReply) -> None:
        """A host's reply (from the reply topic); replies nobody waits for are ignored."""
        self.replies += 1
        request_id = headers.get(wire.REQUEST_ID, "")
        now = self.clock()
        self._heard(host, headers, request_id, now)
        request = self.pending.get(request_id)
        if request is None or host not in request.waiting:
            return
        tokens = request.waiting[host]
        try:
            token = wire.reply_token(headers)
        except HeaderError:
            return  # refused by decode_replies
        if token not in tokens:
            return
        self._merge(request, reply)
        if host not in request.retry_tokens:  # a reply to a retried host times neither copy (Karn)
            self._sample(now - request.started)
        if token == request.retry_tokens.get(host):
            tokens.clear()  # the retry carried everything the input gave this host
        tokens.discard(token)
        if not tokens:
            del request.waiting[host]
        if not request.waiting:
            del self.pending[request.id]
            self._finish(request, [])

    def _sample(self, seconds: float) -> None:
        if self.srtt is None:
            self.srtt, self.rttvar = seconds, seconds / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - seconds)
            self.srtt = 0.875 * self.srtt + 0.125 * seconds

    def _heard(self, host: str, headers: Mapping[str, str], request_id: str, now: float) -> None:
        _, acked = self.heard.get(host, (0.0, 0))
        try:
            token = wire.reply_token(headers)
        except HeaderError:
            token = None
        if token is not None and not token.multicast and request_id.startswith(self._epoch):  # our epoch's unicast
            acked = max(acked, token.seq)
        self.heard[host] = (now, acked)

    def _behind(self, host: str, tokens: set[Token], now: float, patience: float) -> bool:
        """Whether `host` is alive and has not reached the message(s) `tokens` stand for yet."""
        heard = self.heard.get(host)
        if heard is None or now - heard[0] >= patience:
            return False  # silent
        acked = heard[1]
        unicast = [t.seq for t in tokens if not t.multicast]
        if unicast:
            return acked < min(unicast)  # past it without answering it: lost
        return acked < self._sent_seq(host)  # multicast only: is its unicast queue still draining?

    def tick(self, now: float | None = None) -> None:
        """Retry stragglers (see the class); fail hosts silent past `timeout`."""
        now = self.clock() if now is None else now
        patience = self.patience
        for request in list(self.pending.values()):
            age = now - request.started
            if age >= self.timeout:
                del self.pending[request.id]
                self._finish(request, sorted(request.waiting))
            elif age >= patience:
                for host in list(request.waiting):
                    if host not in request.retry_tokens:
                        if self._behind(host, request.waiting[host], now, patience):
                            continue  # asked again at the next tick
                        token = self._retry(request, host)
                        request.retry_tokens[host] = token
                        request.waiting[host].add(token)
                        self.retries += 1

    def _merge(self, request: Pending, reply: gsp.GoalStateOperationReply) -> None:
        request.total_us = max(request.total_us, reply.message_total_operation_time)
        for s in reply.operation_statuses:
            merged = request.merged.get((int(s.resource_type), s.resource_id))
            if merged is None:
                continue  # a resource of the host's bundle, not of this input
            if _SEVERITY.get(s.operation_status, 4) > _SEVERITY.get(merged.status, 4):
                merged.status = int(s.operation_status)
            merged.dataplane_us = max(merged.dataplane_us, s.dataplane_programming_time)
            merged.config_us = max(merged.config_us, s.network_configuration_time)
            merged.elapse_us = max(merged.elapse_us, s.state_elapse_time)

    def _finish(self, request: Pending, silent: list[str]) -> None:
        for host in silent:
            for key in request.data.listed.get(host, ()):
                if key in request.merged:
                    request.merged[key].status = common.FAILURE
        request.on_done(caller_reply(request.merged, request.total_us, request.data.goal.format_version, silent))


def caller_reply(
    merged: Mapping[ResourceKey, Merged], total_us: int, format_version: int, silent: list[str]
) -> gsp.GoalStateOperationReply:
    """One status per input resource (worst over hosts), plus a failure marker per silent host."""
    reply = gsp.GoalStateOperationReply(format_version=format_version, message_total_operation_time=total_us)
    for (rtype, rid), m in merged.items():
        reply.operation_statuses.add(
            resource_id=rid, resource_type=rtype, operation_type=m.operation_type, operation_status=m.status,
            dataplane_programming_time=m.dataplane_us, network_configuration_time=m.config_us, state_elapse_time=m.elapse_us,
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
