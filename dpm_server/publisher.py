"""Publishing: sequences, headers, follow offsets and byte counts over a `Sink`.

Only bytes move here (transport never decides what a host gets). Start-up markers on
every multicast and reply partition make the delivered offsets known from the first
message on, so `gs-follow` can always name where a newly followed VPC starts, and the
ack tracker can read replies from this run only.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from gsmq import resources, wire
from gsmq.partition import partition_for
from gsmq.topics import Topics
from gsmq.transport import Envelope, Sink
from gsmq.wire import FollowPosition, MessageType, Token

log = structlog.get_logger()


class Link(Protocol):
    """An agent process's gRPC channel (`dpm_server.links.Link`)."""

    address: str

    def send(self, message: bytes, host: str) -> None: ...


class Router(Protocol):
    """Which channel a message takes (`dpm_server.paths.Paths`): links, or None for Kafka."""

    def vpc_links(self, vpc: str) -> Sequence[tuple[Link, str]] | None: ...

    def host_link(self, host: str) -> Link | None: ...


@dataclass
class Counters:
    """Messages and payload bytes per channel (unicast includes per-host topics); failed deliveries."""

    unicast_messages: int = 0
    multicast_messages: int = 0
    unicast_bytes: int = 0
    multicast_bytes: int = 0
    grpc_messages: int = 0  # pushed on the gRPC channel (a VPC's message once per member host), also counted above
    grpc_bytes: int = 0
    delivery_errors: int = 0
    dead_letters: int = 0  # messages the DPM refused (replies with malformed headers, undecodable ones)

    @property
    def bytes_published(self) -> int:
        return self.unicast_bytes + self.multicast_bytes


class Publisher:
    """Produces goal states with per-host / per-VPC sequences of one epoch."""

    def __init__(self, sink: Sink, topics: Topics, per_host_topics: bool, multicast_partitions: int, reply_partitions: int,
                 incarnation: int = 1) -> None:
        """`incarnation`: this DPM run's number (from the changelog), the head of its gs-epoch."""
        self.sink = sink
        self.topics = topics
        self.per_host_topics = per_host_topics
        self.multicast_partitions = multicast_partitions
        self.reply_partitions = reply_partitions
        self.epoch = wire.make_epoch(incarnation)
        self.host_seq: dict[str, int] = defaultdict(int)
        self.vpc_seq: dict[str, int] = defaultdict(int)
        self.delivered: dict[tuple[str, int], int] = {}  # (topic, partition) -> highest delivered offset
        self.counters = Counters()
        self._lock = threading.Lock()
        self.create_topics: Callable[[list[str]], None] | None = None  # makes hosts' topics (topic-per-host), in one request
        self._host_topics: set[str] = set()
        self._markers_sent = False
        self.max_message_bytes = 0  # a message over it goes in parts (0: never split)
        self.paths: Router | None = None  # the channel of each message (None: Kafka only)

    # ---- start-up ----------------------------------------------------------------------

    def place_markers(self, timeout: float = 30.0, halt: Callable[[], bool] = lambda: False) -> dict[tuple[str, int], int]:
        """One marker per multicast and reply partition (once); waits until all are delivered and
        returns the delivered offsets ({} if `halt()` turns true first; TimeoutError after `timeout`)."""
        wanted = [(self.topics.multicast, p) for p in range(self.multicast_partitions)]
        wanted += [(self.topics.reply, p) for p in range(self.reply_partitions)]
        if not self._markers_sent:
            for topic, part in wanted:
                marker = Envelope(topic, f"marker-{part}", b"", {wire.MSG_TYPE: MessageType.MARKER, wire.EPOCH: self.epoch}, partition=part)
                self.sink.send(marker, self._on_delivered)
            self._markers_sent = True
        deadline = time.monotonic() + timeout
        errors = self.counters.delivery_errors
        while not all(tp in self.delivered for tp in wanted):
            if halt():
                return {}
            if self.counters.delivery_errors > errors:
                self._markers_sent = False  # a marker failed for good: the next call sends them again
                raise TimeoutError("a start-up marker could not be delivered")
            if time.monotonic() > deadline:
                raise TimeoutError("start-up markers were not delivered; is the broker reachable?")
            self.sink.poll(0.1)
        return dict(self.delivered)

    def _on_delivered(self, message: Envelope, error: str | None) -> None:
        if error is not None:  # the ack tracker retries the host (unicast) or reports it silent
            with self._lock:  # reports come from a thread per producer
                self.counters.delivery_errors += 1
            log.warning("delivery_failed", topic=message.topic, key=message.key, error=error)
            return
        tp = (message.topic, message.partition)
        with self._lock:
            if message.offset > self.delivered.get(tp, -1):
                self.delivered[tp] = message.offset

    def dead_letter(self, message: Envelope) -> None:
        """Put a refused message (already addressed to the dead-letter topic) there."""
        self.sink.send(message, self._on_delivered)
        self.counters.dead_letters += 1

    # ---- goal states -------------------------------------------------------------------

    def follow_positions(self, vpcs: list[str]) -> dict[str, tuple[int, int]]:
        """{vpc: (partition, first offset to read)}, captured before this change's multicast."""
        out = {}
        with self._lock:
            for vpc in vpcs:
                part = partition_for(vpc, self.multicast_partitions)
                out[vpc] = (part, self.delivered.get((self.topics.multicast, part), -1) + 1)
        return out

    def multicast(self, vpc: str, payload: bytes, request_id: str) -> list[Token]:
        """One message for `vpc`, or, over `max_message_bytes`, several: each carries some of
        the VPC-wide states, with a gs-seq of its own (they need not be applied together)."""
        tokens = []
        targets = self.paths.vpc_links(vpc) if self.paths is not None else None
        for piece in [payload] if targets is not None else self._pieces(payload, ""):
            self.vpc_seq[vpc] += 1
            seq = self.vpc_seq[vpc]
            headers = {wire.REQUEST_ID: request_id, wire.VPC_ID: vpc, wire.SEQ: str(seq), wire.EPOCH: self.epoch,
                       wire.SENT_NS: str(time.time_ns()), wire.MSG_TYPE: MessageType.GOAL_STATE}
            if targets is not None:
                message = wire.channel_message(piece, headers)
                for link, host in targets:  # each member host its own copy, as single-host agents get it
                    self._push(link, wire.addressed(message, host), host)
            else:
                self.sink.send(Envelope(self.topics.multicast, vpc, piece, headers), self._on_delivered)
            self.counters.multicast_messages += 1
            self.counters.multicast_bytes += len(piece)
            tokens.append(Token(vpc, seq))
        return tokens

    def _pieces(self, payload: bytes, host: str) -> list[bytes]:
        """`payload`, or its parts (`resources.split`, listing for `host`) when it is over `max_message_bytes`."""
        if not self.max_message_bytes or len(payload) <= self.max_message_bytes:
            return [payload]
        return resources.split(payload, host, self.max_message_bytes)

    def host_topics(self, hosts: Iterable[str]) -> None:
        """Topic-per-host: make the topics not made yet of those of `hosts` whose next message
        goes on Kafka, all in one request (a batch's new hosts wait for one creation, not one each)."""
        if not self.per_host_topics:
            return
        kafka = [host for host in hosts if self.paths is None or self.paths.host_link(host) is None]
        new = sorted({self.topics.host(host) for host in kafka} - self._host_topics)
        if new and self.create_topics is not None:
            self.create_topics(new)
        self._host_topics.update(new)

    def unicast(
        self, host: str, payload: bytes, request_id: str, follow: dict[str, tuple[int, int]] | None = None, full: bool = False
    ) -> Token:
        """One message for `host`, in parts (`gs-part`, one gs-seq) when it is over
        `max_message_bytes`; its seq is used once a part is queued (a send that raises at
        once, such as a single resource over the broker's limit, uses none)."""
        seq = self.host_seq[host] + 1
        headers = {wire.REQUEST_ID: request_id, wire.HOST_ID: host, wire.SEQ: str(seq), wire.EPOCH: self.epoch,
                   wire.SENT_NS: str(time.time_ns()), wire.MSG_TYPE: MessageType.GOAL_STATE}
        if follow:
            headers[wire.FOLLOW] = wire.encode_follow({vpc: FollowPosition(p, o, self.vpc_seq[vpc]) for vpc, (p, o) in follow.items()})
        if full:
            headers[wire.FULL] = "1"
        link = self.paths.host_link(host) if self.paths is not None else None
        if link is not None:
            self._push(link, wire.channel_message(payload, headers), host)
            self.host_seq[host] = seq
            self.counters.unicast_messages += 1
            self.counters.unicast_bytes += len(payload)
            return wire.unicast_token(seq)
        topic = self.topics.unicast
        if self.per_host_topics:
            topic = self.topics.host(host)
            if topic not in self._host_topics:  # made by the batch's `host_topics` but for a resync's
                self.host_topics([host])
        parts = self._pieces(payload, host)
        for index, part in enumerate(parts, 1):
            tagged = headers if len(parts) == 1 else {**headers, wire.PART: wire.encode_part(index, len(parts))}
            self.sink.send(Envelope(topic, host, part, tagged), self._on_delivered)
            self.host_seq[host] = seq  # once a part is queued: a later part that fails leaves a gap, never a reused seq
            self.counters.unicast_messages += 1
            self.counters.unicast_bytes += len(part)
        return wire.unicast_token(seq)

    def _push(self, link: Link, message: bytes, host: str) -> None:
        """Send a channel message (`wire.channel_message`) on a link's gRPC stream (never in parts)."""
        link.send(message, host)
        self.counters.grpc_messages += 1
        self.counters.grpc_bytes += len(message)
