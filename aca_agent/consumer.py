"""The consume loop: read the served hosts' unicast partitions (and the multicast
partitions of followed VPCs), apply each batch, produce the replies (waited for while the
next batch is applied), then commit (see `run_once`). Only `gsmq.transport` interfaces are used, so
unit tests run it over `MemoryBus` and the daemon over Kafka.

Channels (`channel`): `unicast` reads `partition_for(host, n)` of the unicast topic for
every served host; `topic-per-host` reads `<prefix>.host.<host>`; `both` reads both;
`auto` (the default) reads the unicast partitions, and each host's topic once it exists
(whoever publishes per host creates it; checked at start and every few seconds), so an
agent follows whichever strategy the DPM runs without creating a topic per host itself.
Multicast offsets are not committed: after a restart the resync's `gs-follow` says
where to read from.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import NamedTuple

import structlog
from google.protobuf.message import DecodeError

from aca_agent.acks import Progress
from aca_agent.applier import Applier, FollowChange, Result
from alcor.schema import goalstate_pb2 as gs
from gsmq import resources, wire
from gsmq.errors import TransportError, UndeliveredError
from gsmq.partition import partition_for
from gsmq.retry import Backoff, retry
from gsmq.topics import Topics
from gsmq.transport import Envelope, Sending, Sink, Source
from gsmq.v1 import ack_pb2
from gsmq.wire import HeaderError, MessageType

log = structlog.get_logger()

CHANNELS = ("auto", "unicast", "topic-per-host", "both")
HOST_TOPIC_CHECK_S = 2.0
HOSTS_LOGGED = 20  # a line about many hosts names at most this many  # auto: how often to look for host topics not there yet

TopicPartition = tuple[str, int]


class AgentConsumer:
    """One consumer and one reply producer for every host the applier serves."""

    def __init__(
        self,
        *,
        source: Source,
        sink: Sink,
        applier: Applier,
        topics: Topics,
        partition_count: Callable[[str], int],
        channel: str = "auto",
        existing_topics: Callable[[], Iterable[str]] | None = None,
        max_batch: int = 1000,
        resync: Callable[[list[str]], None] | None = None,
        ready: Callable[[], None] | None = None,
        health: Callable[[bool], None] | None = None,
        lock: AbstractContextManager[object] | None = None,
        flush_timeout: float = 5.0,
        ack_interval: float = 0.005,
        commit_interval: float = 0.1,
    ) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
        self.source = source
        self.sink = sink
        self.applier = applier
        self.counters = applier.counters
        self.topics = topics
        self.partition_count = partition_count
        self.channel = channel
        self.existing_topics = existing_topics
        self.max_batch = max_batch
        self.resync = resync
        self.ready = ready  # called once started (partitions assigned, resyncs asked)
        self.health = health  # told, on each change, whether the agent works (started, broker reachable, batches applied)
        self._healthy = False
        self.lock: AbstractContextManager[object] = lock if lock is not None else nullcontext()
        self.flush_timeout = flush_timeout
        self.ack_interval = ack_interval  # under load, the least time between two acks of a host (s)
        self._acked_at = 0.0
        self.commit_interval = commit_interval  # under load, the least time between two commits (s)
        self._unsettled: _Unsettled | None = None  # the last batch's replies, produced, maybe not delivered yet
        self._committed_at = float("-inf")
        self._uncommitted: dict[TopicPartition, int] = {}  # next offset of each partition read, applied and acked
        self._own: set[TopicPartition] = set()  # unicast / per-host partitions (committed)
        self._host_topics = {topics.host(host): host for host in applier.hosts} if channel != "unicast" else {}
        self._awaited: set[str] = set()  # auto: host topics not assigned yet
        self._next_check = 0.0
        self._mc_partitions = 0
        self._mc_pos: dict[int, int] = {}  # assigned multicast partition -> next offset to read
        self._mc_users: dict[int, set[tuple[str, str]]] = {}  # partition -> (host, vpc) reading it
        self._mc_of: dict[tuple[str, str], int] = {}
        self._rewound: set[int] = set()  # multicast partitions sought back during this poll
        self._parts: dict[str, tuple[tuple[str, str, int], dict[int, bytes]]] = {}  # host -> (epoch, seq, count), parts so far
        self._seeks: dict[int, int] = {}  # multicast partition -> offset to read it from, at the end of this batch
        self._mc_assigned: set[int] = set()  # multicast partitions the source reads
        self.stopping = threading.Event()  # set: give up waiting for deliveries (run() passes its stop)
        self._pushed_dead_letters: list[Envelope] = []  # of messages pushed on the gRPC channel, for the consume loop

    def start(self) -> None:
        """Assign the served hosts' partitions at their committed offsets (else the
        beginning) and ask the DPM for every host's state."""
        hosts = list(self.applier.hosts)
        parts: set[TopicPartition] = set()
        if self.channel in ("unicast", "both", "auto"):
            n = self.partition_count(self.topics.unicast)
            if n <= 0:
                raise RuntimeError(f"topic {self.topics.unicast} does not exist")
            parts.update((self.topics.unicast, partition_for(host, n)) for host in hosts)
        if self.channel in ("topic-per-host", "both"):
            parts.update((self.topics.host(host), 0) for host in hosts)
        self._mc_partitions = self.partition_count(self.topics.multicast)
        ordered = sorted(parts)
        committed = self.source.committed(ordered)
        self.source.assign([(t, p, committed.get((t, p), -1)) for t, p in ordered])
        self._own = set(ordered)
        if self.channel == "auto":
            self._awaited = set(self._host_topics)
            try:
                self.check_host_topics()
            except Exception as exc:  # noqa: BLE001 - looked for again every few seconds
                log.warning("host_topic_check_failed", error=str(exc))
        log.info("aca_ready", hosts=len(hosts), channel=self.channel, partitions=len(self._own))
        if self.resync is not None:
            self.resync(hosts)
        if self.ready is not None:
            self.ready()

    def _set_health(self, healthy: bool) -> None:
        if healthy != self._healthy:
            self._healthy = healthy
            log.log(logging.INFO if healthy else logging.WARNING, "agent_health", serving=healthy,
                    why="consuming" if healthy else "the broker is unreachable or a batch failed")
            if self.health is not None:
                self.health(healthy)

    def check_host_topics(self) -> None:
        """auto: start reading the host topics that exist by now (committed offset, else the beginning)."""
        self._next_check = time.monotonic() + HOST_TOPIC_CHECK_S
        if not self._awaited or self.existing_topics is None:
            return
        found = sorted(self._awaited.intersection(self.existing_topics()))
        if not found:
            return
        committed = self.source.committed([(t, 0) for t in found])
        self.source.assign([(t, 0, committed.get((t, 0), -1)) for t in found])
        self._own.update((t, 0) for t in found)
        self._awaited.difference_update(found)
        log.info("host_topics_assigned", topics=len(found), awaited=len(self._awaited))

    def run(self, stop: threading.Event, poll_timeout: float = 0.1) -> None:
        """Start (retried with backoff while the broker is down or metadata not ready), then
        consume batches until `stop`; a failed batch is retried with backoff, never fatal."""
        self.stopping = stop
        if stop.is_set():
            return
        retry(self.start, stop, "consumer_start_retry")

        def consume() -> None:
            try:
                self.run_once(poll_timeout)
            except Exception:
                self._set_health(False)
                raise
            self._set_health(self.source.reachable())
            if self._awaited and time.monotonic() >= self._next_check:
                self.check_host_topics()

        backoff = Backoff()
        while not stop.is_set():
            retry(consume, stop, "consume_failed", backoff=backoff)
        with self.lock:
            left, self._pushed_dead_letters = self._pushed_dead_letters, []
        self._settle()  # one try: `stop` is set
        if left:
            self.sink.send_all(left)  # queued: the producer's flush at stop delivers them
        try:
            self.commit()  # the source's close waits for it
        except TransportError as exc:  # read again at the next start
            log.warning("commit_at_stop_failed", error=str(exc))

    def run_once(self, timeout: float = 0.1) -> int:
        """Consume one batch, apply it, produce its acks (one per host that moved), commit.
        Returns its size. Under load a batch gathers for `ack_interval` since the last acks,
        so a host is acked at most that often; what each poll returns is applied at once,
        only the acks wait.

        A batch's acks and dead letters are delivered while the next batch is read and
        applied: they are waited for before the next ones are produced (`_hand_over`), so
        one batch's replies at most are in flight. Offsets are committed only once their
        batch is applied and its replies are delivered, and never wait on the broker:
        asynchronously, at most every `commit_interval` under load, at once when a poll
        finds nothing, and at stop. A lost or late commit only has messages read and applied
        again after a restart."""
        if self.applier.follow_changes_waiting():  # from messages pushed on the gRPC channel
            with self.lock:
                self._follow(self.applier.take_follow_changes())
                self._seek_followed()
        batch = self.source.poll_batch(self.max_batch, timeout)
        with self.lock:  # delivered with this batch's acks, even when it fails part way
            pushed_dead_letters, self._pushed_dead_letters = self._pushed_dead_letters, []
        if not batch:
            self._hand_over([], pushed_dead_letters, {}, wait=True)
            self.commit()
            return 0
        dead_letters: list[Envelope] = pushed_dead_letters
        progress = Progress()
        commits: dict[TopicPartition, int] = {}
        resync: set[str] = set()
        count = 0
        until = self._acked_at + self.ack_interval
        failed: TransportError | None = None  # ends the gathering; raised once what was applied is acked
        while True:
            try:
                self._apply(batch, progress, commits, dead_letters, resync)
                count += len(batch)
                if count >= self.max_batch or (left := until - time.monotonic()) <= 0:
                    break
                batch = self.source.poll_batch(self.max_batch - count, left)
            except TransportError as exc:  # consuming, or seeking followed partitions
                failed = exc
                break
            if not batch:
                break
        with self.lock:
            acks = progress.records(self.applier)
        self._acked_at = time.monotonic()
        if self._hand_over(acks, dead_letters, commits, wait=False) and self._acked_at - self._committed_at >= self.commit_interval:
            self.commit()
        self._ask_resync(sorted(resync))
        if failed is not None:
            raise failed
        return count

    def _apply(self, batch: list[Envelope], progress: Progress, commits: dict[TopicPartition, int],
               dead_letters: list[Envelope], resync: set[str]) -> None:
        """Apply what one poll returned, at once: noting the results, the next offset of each
        own partition, dead letters and hosts to resync; then read the multicast partitions
        that hosts joined from their cursors."""
        self._rewound.clear()
        with self.lock:
            for env in batch:
                self.counters.bytes_consumed += len(env.value)
                tp = (env.topic, env.partition)
                if tp in self._own:
                    commits[tp] = env.offset + 1
                elif env.topic == self.topics.multicast:
                    if env.partition in self._rewound or env.partition not in self._mc_pos:
                        continue  # read again from the cursor's offset / no longer followed
                    self._mc_pos[env.partition] = env.offset + 1
                for result in self._handle(env, dead_letters):
                    progress.add(result)
                    if result.resync:
                        resync.add(result.host)
                self._follow(self.applier.take_follow_changes())
            self._seek_followed()

    def apply_pushed(self, messages: list[tuple[bytes, dict[str, str]]]) -> list[ack_pb2.Ack]:
        """Messages the DPM pushed on the gRPC channel (docs/internals.md, "Channels per VPC"),
        in order: each the GoalStateV2 `raw` with the headers of the Kafka record it stands
        for, applied by the same rules (sequences, follows, dead letters, resyncs), under the
        lock. Returns their acks (one per host that moved), which go back on the stream; the
        partitions of VPCs they made a host follow are assigned by the consume loop."""
        dead_letters: list[Envelope] = []
        progress = Progress()
        resync: set[str] = set()
        decoded: dict[tuple[str, str, str], gs.GoalStateV2] = {}  # a VPC message's copies (one per host) are read once
        with self.lock:
            for raw, headers in messages:
                multicast = wire.VPC_ID in headers
                env = Envelope("", headers.get(wire.VPC_ID, "") if multicast else headers.get(wire.HOST_ID, ""), raw, headers)
                self.counters.bytes_pushed += len(raw)
                only = headers.get(wire.HOST_ID) if multicast else None  # a VPC's message pushed to one of its hosts
                for result in self._handle(env, dead_letters, multicast, only, decoded if multicast else None):
                    progress.add(result)
                    if result.resync:
                        resync.add(result.host)
            acks = progress.acks(self.applier)
            self._pushed_dead_letters += dead_letters  # delivered by the consume loop, as its own are
        self._ask_resync(sorted(resync))
        return acks

    def _ask_resync(self, hosts: list[str]) -> None:
        """Ask the DPM for the full state of hosts that saw a gap: one line a batch (each
        host's gap is at DEBUG)."""
        if not hosts:
            return
        log.info("sequence_gaps", hosts=hosts[:HOSTS_LOGGED], count=len(hosts),
                 then="resync requested" if self.resync else "no --dpm-address: no resync")
        if self.resync is not None:
            self.counters.resyncs += len(hosts)
            self.resync(hosts)

    def commit(self) -> None:
        """Commit, asynchronously, the offsets read, applied and acked since the last commit."""
        if self._uncommitted:
            self._committed_at = time.monotonic()
            self.source.commit([(t, p, o) for (t, p), o in self._uncommitted.items()], asynchronous=True)
            self._uncommitted = {}

    # ---- one message --------------------------------------------------------------

    def _handle(self, env: Envelope, dead_letters: list[Envelope], multicast: bool | None = None,
                only: str | None = None, decoded: dict[tuple[str, str, str], gs.GoalStateV2] | None = None) -> list[Result]:
        """Decode and apply one message (`multicast`: a VPC's, else a host's; None: as its
        topic says; `only`: a VPC's message for that follower alone; `decoded`: VPC
        messages decoded already, by (vpc, gs-seq, gs-epoch), and where to keep this one); markers and other hosts'
        messages are skipped, undecodable or unappliable ones go to the dead-letter topic."""
        if wire.message_type(env.headers) != MessageType.GOAL_STATE:
            self.counters.messages_skipped += 1
            return []
        if multicast is None:
            multicast = env.topic == self.topics.multicast
        # The VPC of a multicast message, the host of a unicast one.
        key = (env.headers.get(wire.VPC_ID) or env.key) if multicast else self._host_topics.get(env.topic, env.key)
        if multicast and key not in self.applier.followers:
            self.counters.messages_skipped += 1
            return []
        if not multicast and key not in self.applier.hosts:
            self.counters.messages_other_host += 1
            return []
        try:
            if not multicast and wire.PART in env.headers:
                whole = self._assemble(key, env)
                if whole is None:
                    return []  # more parts to come
                goal, raw = whole, None
            else:
                if not multicast and self._parts:
                    self._parts.pop(key, None)  # a message never completed: its gap asks for a resync
                copy = (key, env.headers.get(wire.SEQ, ""), env.headers.get(wire.EPOCH, ""))
                seen = decoded.get(copy) if decoded is not None else None
                goal, raw = (seen if seen is not None else gs.GoalStateV2.FromString(env.value)), env.value
                if decoded is not None and seen is None and copy[1]:
                    decoded[copy] = goal
        except DecodeError as exc:
            dead_letters.append(self._dead_letter(env, f"undecodable GoalStateV2: {exc}"))
            return []
        except HeaderError as exc:
            dead_letters.append(self._dead_letter(env, str(exc)))
            return []
        try:
            if multicast:
                return self.applier.apply_multicast(key, goal, env.headers, env.partition, env.offset, only)
            result = self.applier.apply_unicast(key, goal, env.headers, raw)
        except HeaderError as exc:
            dead_letters.append(self._dead_letter(env, str(exc)))
            return []
        except Exception as exc:
            log.exception("apply_failed", topic=env.topic, partition=env.partition, offset=env.offset)
            dead_letters.append(self._dead_letter(env, f"unappliable: {type(exc).__name__}: {exc}"))
            return []
        return [result] if result is not None else []

    def _assemble(self, host: str, env: Envelope) -> gs.GoalStateV2 | None:
        """Keep one part of a message cut in parts (`gs-part`); the whole message once its last
        part is here, else None. Parts of another message (epoch, seq) replace what was kept:
        a message never completed is passed by the resync its gap asks for."""
        index, count = wire.decode_part(env.headers[wire.PART])
        ident = (env.headers.get(wire.EPOCH, ""), env.headers.get(wire.SEQ, ""), count)
        held = self._parts.get(host)
        if held is None or held[0] != ident:
            held = self._parts[host] = (ident, {})
        held[1][index] = env.value
        if len(held[1]) < count:
            return None
        del self._parts[host]
        return resources.join([held[1][i] for i in range(1, count + 1)], host)

    def _dead_letter(self, env: Envelope, reason: str) -> Envelope:
        log.warning("dead_lettered", topic=env.topic, partition=env.partition, offset=env.offset, error=reason)
        self.counters.dead_lettered += 1
        return wire.dead_letter(env, self.topics.dead_letter, reason)

    # ---- multicast partitions -----------------------------------------------------

    def _follow(self, changes: Iterable[FollowChange]) -> None:
        """Note where followed multicast partitions must be read from (the lowest cursor of
        the poll per partition), or unassign one no host follows any more. The rest of a
        sought partition's messages in this poll are skipped: they are read again."""
        topic = self.topics.multicast
        for change in changes:
            user = (change.host, change.vpc)
            if not change.follow:
                part = self._mc_of.pop(user, None)
                users = self._mc_users.get(part, set()) if part is not None else set()
                users.discard(user)
                if part is not None and not users:
                    self._mc_users.pop(part, None)
                    self._mc_pos.pop(part, None)
                    self._seeks.pop(part, None)
                    if part in self._mc_assigned:
                        self._mc_assigned.discard(part)
                        self.source.unassign([(topic, part)])
                    log.info("multicast_unassigned", partition=part)
                continue
            if change.cursor is None:
                continue
            part, offset = change.cursor.partition, change.cursor.offset
            if not 0 <= part < self._mc_partitions:
                log.warning("bad_follow_partition", host=change.host, vpc=change.vpc, partition=part)
                continue
            self._mc_of[user] = part
            self._mc_users.setdefault(part, set()).add(user)
            position = self._mc_pos.get(part)
            if position is not None and position <= offset:
                continue
            self._mc_pos[part] = self._seeks[part] = offset
            self._rewound.add(part)

    def _seek_followed(self) -> None:
        """Read the partitions noted by `_follow` from their offsets: one unassign and one
        assign per poll, however many hosts joined."""
        if not self._seeks:
            return
        topic = self.topics.multicast
        again = [(topic, part) for part in self._seeks if part in self._mc_assigned]
        if again:
            self.source.unassign(again)
        self.source.assign([(topic, part, offset) for part, offset in self._seeks.items()])
        self._mc_assigned.update(self._seeks)
        log.debug("multicast_sought", partitions=len(self._seeks), rewound=len(again))
        self._seeks = {}

    # ---- replies ------------------------------------------------------------------

    def _hand_over(self, acks: list[tuple[str, bytes]], dead_letters: list[Envelope], commits: dict[TopicPartition, int],
                   wait: bool) -> bool:
        """Wait for the replies produced last (delivered, mostly, while this batch was read and
        applied), then produce this batch's (`acks`: the (key, value) of the ack records, see
        `Progress.records`); `wait`: wait for them too. A batch's offsets join the ones to
        commit once its replies are delivered. False only when stopped first."""
        sendings: list[tuple[Sending, bool]] = []
        settled = self._settle()
        if acks:
            sendings.append((self.sink.send_values(self.topics.reply, acks), True))
        if dead_letters:
            sendings.append((self.sink.send_all(dead_letters), False))
        if not settled:
            return False  # stopping: the producer's flush at stop delivers them
        self._unsettled = _Unsettled(sendings, commits, len(acks))
        return self._settle() if wait or not sendings else True

    def _settle(self) -> bool:
        """Wait until the replies produced last are delivered (re-sending failures with
        backoff); then their batch's offsets may be committed. False only when stopped first."""
        unsettled, self._unsettled = self._unsettled, None
        if unsettled is None:
            return True
        if unsettled.sendings and not self._deliver(unsettled.sendings):
            return False
        self._uncommitted.update(unsettled.commits)
        self.counters.replies_sent += unsettled.acks
        return True

    def _deliver(self, sendings: list[tuple[Sending, bool]]) -> bool:
        """Wait until the messages of `sendings` ((messages sent together, whether they are
        acks)) are delivered, re-sending failures with backoff. False only when stopped first."""

        def send(messages: list[Envelope], replies: bool) -> None:
            sendings.append((self.sink.send_all(messages), replies))

        queued = 0

        def flush() -> bool:  # send the failed ones again, then wait for every delivery
            nonlocal queued
            for sending, replies in [(s, r) for s, r in sendings if s.failed]:
                again, sending.failed = sending.failed, []
                send(again, replies)
            queued = self.sink.flush(self.flush_timeout)
            failed = sum(len(sending.failed) for sending, _ in sendings)
            if failed or queued:
                raise UndeliveredError(f"{failed} failed, {queued} still queued")
            return True

        done = retry(flush, self.stopping, "reply_delivery_failed", backoff=Backoff(first=0.1), retry_on=(UndeliveredError,))
        if done is None:
            log.warning("replies_undelivered_at_stop", queued=queued, failed=sum(len(s.failed) for s, _ in sendings))
            return False
        return True


class _Unsettled(NamedTuple):
    """A batch's replies produced and not known delivered yet, and the offsets they free."""

    sendings: list[tuple[Sending, bool]]  # (messages sent together, whether they are acks)
    commits: dict[TopicPartition, int]
    acks: int
