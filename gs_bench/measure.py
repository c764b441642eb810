"""What the bench measures and how: percentiles, publish -> applied from the reply topic's
headers, send -> reply of the caller's stream, convergence, rates and bytes."""

from __future__ import annotations

import array
import functools
import gc
import math
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np
import psutil
from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from google.protobuf.message import DecodeError

from aca_agent.acks import bucket_floor_us
from gsmq import wire
from gsmq.broker import broker_name
from gsmq.kafka import KafkaSettings
from gsmq.kafka_admin import partition_count
from gsmq.kafka_transport import consume_batch
from gsmq.partition import partition_for
from gsmq.v1 import ack_pb2, status_pb2
from gsmq.wire import MessageType

CDF_POINTS = 200
# A consumer that reads a topic back in bulk (acks, a phase's bytes, a region's partitions):
# large fetches and room to queue them, so that it waits on the broker less than it parses.
BULK_FETCH = {"fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 8 << 20, "queued.max.messages.kbytes": 256 << 10}


def header_bytes(msg: Message) -> dict[str, bytes]:
    """A consumed message's headers by name; the last value wins and valueless ones are left out.
    (confluent-kafka's stubs give headers() the type of produce()'s argument: a dict, or str values.)"""
    raw = msg.headers()
    if not raw:  # an agent's ack has none: no pass over an empty list
        return {}
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {k: v.encode() if isinstance(v, str) else v for k, v in pairs if v is not None}


Values = Iterable[float] | np.ndarray[Any, np.dtype[np.float64]]


def _sorted(values: Values) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.sort(np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64))


def percentiles(values: Values, points: Iterable[float] = (50, 95, 99)) -> dict[str, float]:
    """p50/p95/p99 (nearest rank), max and count of `values`; empty input gives zeros."""
    ordered = _sorted(values)
    n = len(ordered)
    if not n:
        return {**{f"p{p:g}": 0.0 for p in points}, "max": 0.0, "count": 0}
    out = {f"p{p:g}": float(ordered[min(n, max(1, math.ceil(p / 100 * n))) - 1]) for p in points}
    return {**out, "max": float(ordered[-1]), "count": n}


def cdf_sample(values: Values, points: int = CDF_POINTS) -> list[float]:
    """At most `points` values spread evenly over the sorted values (enough for a CDF plot)."""
    ordered = _sorted(values)
    if len(ordered) <= points:
        return [float(v) for v in ordered]
    return [float(ordered[round(i * (len(ordered) - 1) / (points - 1))]) for i in range(points)]


def rate(count: float, seconds: float) -> float:
    """count / seconds, 0 for an empty interval."""
    return count / seconds if seconds > 0 else 0.0


@dataclass(frozen=True)
class Reply:
    """One host's reply to one message: when the DPM published it and when the host applied it."""

    sent_ns: int
    applied_ns: int
    host: str

    @property
    def latency_ms(self) -> float:
        return (self.applied_ns - self.sent_ns) / 1e6


_ACK = MessageType.ACK.encode()


def ack_samples(headers: dict[str, bytes], value: bytes) -> tuple[str, int, list[tuple[int, int]]] | None:
    """The one place that knows what a reply-topic record holds: None when it is not an ack
    (the DPM's start-up markers, anything unreadable), else the ack's publish -> applied
    samples as (host, applied ns, [(elapse ns, how many)]). An ack (`gsmq.v1.Ack`, one per
    host and batch) gives gs-sent-ns -> applied per covered message as a log histogram
    (`aca_agent.acks`: buckets 2^(1/8) wide) and the batch's last applied time, so each
    covered message is one sample at its bucket's floor, applied at `last_applied_ns`
    (latency percentiles within 9 %; publish time derived as applied - elapse)."""
    if headers.get(wire.MSG_TYPE, _ACK) != _ACK:  # no gs-type: an Ack (docs/internals.md)
        return None
    try:
        ack = ack_pb2.Ack.FromString(value)
    except DecodeError:
        return None
    if not ack.host_id:  # refused by the DPM too (`dpm_server.acks.decode_acks`)
        return None
    t = ack.timing
    counts = t.elapse_buckets  # its keys and lookups: its items() is the slow generic view
    return ack.host_id, int(t.last_applied_ns), [(_floor_ns(bucket), counts[bucket]) for bucket in sorted(counts)]


@functools.cache
def _floor_ns(bucket: int) -> int:
    """A bucket's floor in ns (0 for bucket 0: elapses under 1 us), computed once per bucket."""
    return int(bucket_floor_us(bucket) * 1000) if bucket else 0


class Samples:
    """publish -> applied samples, packed (two int64 arrays and one host reference each, about
    24 bytes a sample: a million-host storm gives ~10^8 of them)."""

    def __init__(self, sent_ns: np.ndarray[Any, np.dtype[np.int64]] | None = None,
                 applied_ns: np.ndarray[Any, np.dtype[np.int64]] | None = None, hosts: list[str] | None = None) -> None:
        self.sent_ns = sent_ns if sent_ns is not None else np.zeros(0, dtype=np.int64)
        self.applied_ns = applied_ns if applied_ns is not None else np.zeros(0, dtype=np.int64)
        self.hosts = hosts if hosts is not None else []

    @classmethod
    def of(cls, replies: Iterable[Reply]) -> Samples:
        rs = list(replies)
        return cls(np.array([r.sent_ns for r in rs], dtype=np.int64), np.array([r.applied_ns for r in rs], dtype=np.int64),
                   [r.host for r in rs])

    def __len__(self) -> int:
        return len(self.hosts)

    def __iter__(self) -> Iterator[Reply]:
        return (Reply(int(s), int(a), h) for s, a, h in zip(self.sent_ns, self.applied_ns, self.hosts, strict=True))

    def latencies_ms(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        return (self.applied_ns - self.sent_ns) / 1e6


class ReplyCollector:
    """Reads `<prefix>.reply` from offset 0 (manual assignment, no group) when asked to
    (`settle`), never while a phase runs, so that the bench takes no CPU from the daemons it
    measures (nor the broker: its partitions stay paused between reads, or librdkafka would
    fetch them in the background); every record goes through `ack_samples`: acks are counted
    (`acks`, `ack_bytes`: their payload bytes) and their samples kept, packed."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self._sent = array.array("q")
        self._applied = array.array("q")
        self._hosts: list[str] = []
        self._names: dict[str, str] = {}  # one str per host, however many samples name it
        self.acks = 0
        self.ack_bytes = 0
        parts = partition_count(AdminClient(kafka.admin()), topic)
        self._consumer = Consumer(kafka.consumer("bench-collector", **{"fetch.wait.max.ms": 5, **BULK_FETCH}))
        self._kafka, self._topic = kafka, topic
        self._partitions = [TopicPartition(topic, p, 0) for p in range(parts)]
        self._consumer.assign(self._partitions)
        self._consumer.pause(self._partitions)

    def _read(self, timeout: float) -> int:
        """One batch of records (waiting at most `timeout` for the first): how many."""
        batch = consume_batch(self._consumer, 5000, timeout)
        sent, applied_at, hosts, names = self._sent, self._applied, self._hosts, self._names
        acks = ack_bytes = 0
        for msg in batch:
            if msg.error() is not None:
                continue
            value = msg.value() or b""
            read = ack_samples(header_bytes(msg), value)
            if read is None:
                continue
            ack_bytes += len(value)
            acks += 1
            host, applied, buckets = read
            host = names.setdefault(host, host)
            for elapse_ns, count in buckets:
                if count == 1:  # most acks cover one message
                    sent.append(applied - elapse_ns)
                    applied_at.append(applied)
                    hosts.append(host)
                else:
                    sent.extend(repeat(applied - elapse_ns, count))
                    applied_at.extend(repeat(applied, count))
                    hosts.extend(repeat(host, count))
        self.acks += acks
        self.ack_bytes += ack_bytes
        return len(batch)

    def count(self) -> int:
        return len(self._hosts)

    def samples(self) -> Samples:
        """Every sample read so far (a copy)."""
        return Samples(np.array(self._sent, dtype=np.int64), np.array(self._applied, dtype=np.int64), list(self._hosts))

    def window(self, start_ns: int, end_ns: int) -> Samples:
        """Samples of messages the DPM published in [start_ns, end_ns)."""
        every = self.samples()
        keep = (every.sent_ns >= start_ns) & (every.sent_ns < end_ns)
        if keep.all():  # a phase's own topic: every sample (no list of millions of hosts rebuilt)
            return every
        return Samples(every.sent_ns[keep], every.applied_ns[keep], [every.hosts[i] for i in np.flatnonzero(keep)])

    def settle(self, quiet: float = 0.1, deadline: float = 60.0) -> None:
        """Read every record there is (up to the end offsets the topic has now, however long
        the broker takes to serve them, unless nothing comes for `deadline` seconds), then
        wait until none has come for `quiet` seconds (the stragglers of a phase), for at
        most `deadline` seconds once the backlog is read. Once callers have their replies,
        the backlog holds every ack a reply waited for (the DPM read it before answering):
        the default quiet only catches acks no caller waited for.

        Python's cyclic garbage collector is off meanwhile: reading makes no cycles, and each
        of its passes walked every sample kept (80 % of the time with 50 million acks)."""
        backlog = end_offsets(self._kafka, [self._topic])
        end: float | None = None
        last = time.monotonic()
        collecting = gc.isenabled()
        gc.disable()
        self._consumer.resume(self._partitions)
        try:
            while True:
                now = time.monotonic()
                if self._read(0.1):
                    last = now
                elif end is None and self._past(backlog):
                    end = now + deadline  # the backlog is read
                elif end is None and now - last >= deadline:
                    return  # the broker stopped serving the backlog
                if end is not None and (now - last >= quiet or now >= end):
                    return
        finally:
            self._consumer.pause(self._partitions)
            if collecting:
                gc.enable()

    def _past(self, ends: Mapping[Partition, int]) -> bool:
        """Whether every partition has been read up to `ends` (`end_offsets`)."""
        positions = self._consumer.position(self._partitions)
        return all(max(p.offset, 0) >= ends.get((p.topic, p.partition), 0) for p in positions)

    def close(self) -> None:
        self._consumer.close()


@dataclass
class Push:
    """What a caller saw: when each input was sent and when its reply came back (same order)."""

    sent_ns: list[int] = field(default_factory=list)
    reply_ns: list[int] = field(default_factory=list)
    failures: int = 0  # statuses other than SUCCESS in the replies
    streams: int = 1

    @property
    def inputs(self) -> int:
        return len(self.sent_ns)

    @property
    def first_sent_ns(self) -> int:
        return min(self.sent_ns) if self.sent_ns else 0

    @property
    def last_reply_ns(self) -> int:
        return max(self.reply_ns) if self.reply_ns else 0

    @property
    def duration_s(self) -> float:
        """First send -> last reply."""
        return (self.last_reply_ns - self.first_sent_ns) / 1e9 if self.reply_ns else 0.0

    def latencies_ms(self) -> list[float]:
        return [(r - s) / 1e6 for s, r in zip(self.sent_ns, self.reply_ns, strict=False)]


def delta(after: status_pb2.DpmStatus, before: status_pb2.DpmStatus | None) -> dict[str, int]:
    """The DPM's counters gained between two GetStatus answers (all of them if `before` is None)."""
    names = ("messages_published", "unicast_messages", "multicast_messages", "bytes_published", "replies_received",
             "requests_completed", "requests_failed", "retries", "resyncs_served", "grpc_messages", "grpc_bytes",
             "agents_dropped", "path_switches")
    return {n: getattr(after, n) - (getattr(before, n) if before is not None else 0) for n in names}


def agent_delta(after: list[status_pb2.AgentStatus], before: list[status_pb2.AgentStatus] | None) -> dict[str, int]:
    """The simulators' counters gained, summed over simulator processes."""
    names = ("messages_applied", "bytes_consumed", "replies_sent", "duplicates", "out_of_order", "dead_lettered", "bytes_pushed",
             "stale_messages")
    out = {n: sum(getattr(a, n) for a in after) for n in names}
    if before is not None:
        out = {n: v - sum(getattr(a, n) for a in before) for n, v in out.items()}
    return out


def phase_figures(push: Push, replies: Samples, resources: int, dpm: dict[str, int], agents: dict[str, int]) -> dict[str, Any]:
    """The figures of one pushed phase: throughput, latency, convergence, bytes.

    convergence = the DPM's first publish -> the last host applied (from the reply headers);
    goal states/s = caller inputs / (first send -> last caller reply);
    Kafka messages/s = messages the DPM published / convergence."""
    first_publish = int(replies.sent_ns.min()) if len(replies) else push.first_sent_ns
    last_applied = int(replies.applied_ns.max()) if len(replies) else push.last_reply_ns
    convergence = (last_applied - first_publish) / 1e9
    latencies = replies.latencies_ms()
    return {
        "inputs": push.inputs, "streams": push.streams, "resources": resources, "failures": push.failures,
        "duration_s": push.duration_s, "convergence_s": convergence,
        "first_send_to_last_applied_s": (last_applied - push.first_sent_ns) / 1e9 if push.sent_ns else 0.0,
        "goal_states_per_s": rate(push.inputs, push.duration_s),
        "resources_per_s": rate(resources, push.duration_s),
        "messages_per_s": rate(dpm["messages_published"], convergence),
        "replies": len(replies), "hosts_replied": len(set(replies.hosts)),
        "publish_to_applied_ms": percentiles(latencies),
        "caller_reply_ms": percentiles(push.latencies_ms()),
        "cdf_publish_to_applied_ms": cdf_sample(latencies),
        "cdf_caller_reply_ms": cdf_sample(push.latencies_ms()),
        **dpm,
        "bytes_consumed": agents["bytes_consumed"], "messages_applied": agents["messages_applied"],
        **{k: agents[k] for k in ("bytes_pushed", "out_of_order", "stale_messages") if k in agents},
        "avg_message_bytes": dpm["bytes_published"] / max(dpm["messages_published"], 1),
    }


# --------------------------------------------------------------------------- region fan-out

Partition = tuple[str, int]  # (topic, partition)


def end_offsets(kafka: KafkaSettings, topics: list[str]) -> dict[Partition, int]:
    """The high watermark of every partition of `topics` (where its next record will go), in
    one request per broker."""
    admin = AdminClient(kafka.admin())
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # (confluent-kafka's stub leaves it untyped)
    asked = {TopicPartition(topic, p): latest for topic in topics for p in range(partition_count(admin, topic))}
    out: dict[Partition, int] = {}
    for tp, future in admin.list_offsets(asked, request_timeout=10).items():
        out[(tp.topic, tp.partition)] = future.result().offset
    return out


def bytes_between(kafka: KafkaSettings, since: Mapping[Partition, int], until: Mapping[Partition, int], deadline: float = 600.0) -> int:
    """Payload bytes of the records at offsets [since, until) of each partition (measured:
    read back from the broker, values only, as `partition_bytes`); partitions that did not
    move are not read."""
    todo = {tp: end for tp, end in until.items() if end > since.get(tp, 0)}
    if not todo:
        return 0
    consumer = Consumer(kafka.consumer("bench-phase-bytes", **{"fetch.wait.max.ms": 100, **BULK_FETCH}))
    size = 0
    try:
        consumer.assign([TopicPartition(t, p, since.get((t, p), 0)) for t, p in todo])
        end = time.monotonic() + deadline
        while todo and time.monotonic() < end:
            for msg in consume_batch(consumer, 10000, 0.2):
                name, part, offset = msg.topic(), msg.partition(), msg.offset()
                if msg.error() is not None or name is None or part is None or offset is None or (name, part) not in todo:
                    continue
                if offset < todo[(name, part)]:
                    size += len(msg.value() or b"")
                if offset + 1 >= todo[(name, part)]:
                    del todo[(name, part)]
        if todo:
            raise TimeoutError(f"{len(todo)} partitions not read to their end in {deadline:.0f} s")
    finally:
        consumer.close()
    return size


def partition_bytes(kafka: KafkaSettings, topics: list[str], deadline: float = 1800.0) -> dict[Partition, int]:
    """Payload bytes on every partition of `topics`, read once from offset 0 (measured: the
    records themselves, as the daemons count `bytes_published` / `bytes_consumed`: values
    only, no keys, headers or framing). Read until every partition passed the high watermark
    seen at the start and then nothing came for `watermark_lag_s` seconds."""
    quiet = watermark_lag_s(kafka.bootstrap)
    admin = AdminClient(kafka.admin())
    consumer = Consumer(kafka.consumer("bench-fanout", **{"fetch.wait.max.ms": 100, **BULK_FETCH}))
    out: dict[Partition, int] = {}
    try:
        todo: dict[Partition, int] = {}
        for topic in topics:
            for p in range(partition_count(admin, topic)):
                out[(topic, p)] = 0
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > 0:
                    todo[(topic, p)] = high
        consumer.assign([TopicPartition(t, p, 0) for t, p in out])
        end = time.monotonic() + deadline
        last = time.monotonic()
        while time.monotonic() < end and (todo or time.monotonic() - last < quiet):
            batch = consume_batch(consumer, 10000, 0.2)
            if batch:
                last = time.monotonic()
            for msg in batch:
                name, part, offset = msg.topic(), msg.partition(), msg.offset()
                if msg.error() is not None or name is None or part is None or offset is None:
                    continue
                tp = (name, part)
                out[tp] += len(msg.value() or b"")
                if offset + 1 >= todo.get(tp, 0):
                    todo.pop(tp, None)
        if todo:
            raise TimeoutError(f"{len(todo)} partitions not read to their end in {deadline:.0f} s")
    finally:
        consumer.close()
    return out


def watermark_lag_s(bootstrap: str) -> float:
    """How long to read on past the high watermarks once they are reached: nothing on the
    embedded Apache Kafka (a consumer reads no record above its partition's high watermark),
    1 s on any other broker (Tansu's watermark lags its last records)."""
    return 0.0 if broker_name(bootstrap).startswith("Apache Kafka") else 1.0


def readers(
    hosts: Iterable[str],
    follows: Mapping[str, Iterable[str]],
    *,
    unicast: tuple[str, int] | None,
    multicast: tuple[str, int] | None,
    host_topic: str | None = None,
) -> Counter[Partition]:
    """How many real hosts would fetch each partition: every host reads its unicast partition
    (`partition_for(host, n)` of `unicast` = (topic, n)), its own topic (`host_topic` formatted
    with the host, partition 0) when the strategy has one, and the multicast partition of each
    VPC it follows (`follows`: {host: VPCs}; `multicast` = (topic, n)); a partition two of a
    host's VPCs share is fetched once."""
    count: Counter[Partition] = Counter()
    vpc_part: dict[str, Partition] = {}
    for host in hosts:
        parts: set[Partition] = set()
        if unicast is not None and unicast[1] > 0:
            parts.add((unicast[0], partition_for(host, unicast[1])))
        if host_topic is not None:
            parts.add((host_topic.format(host), 0))
        if multicast is not None and multicast[1] > 0:
            for vpc in follows.get(host, ()):
                tp = vpc_part.get(vpc)
                if tp is None:
                    tp = vpc_part[vpc] = (multicast[0], partition_for(vpc, multicast[1]))
                parts.add(tp)
        count.update(parts)
    return count


def region_fetch_bytes(sizes: Mapping[Partition, int], fetched_by: Mapping[Partition, int]) -> int:
    """The bytes a region of real hosts would fetch: each partition's bytes once per host that reads it."""
    return sum(size * fetched_by.get(tp, 0) for tp, size in sizes.items())


def rss_of(pid: int) -> int:
    """Resident bytes of a process (0 if it is gone)."""
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


# CPU over a phase: the components whose processes the bench reads, in report order. The
# `_waiting` part is not CPU: the seconds the DPM's event loop was runnable yet waited for a
# core, which its cores busy alone do not show: on a machine the daemons share, a loop that
# would run all the time (the bound of a storm) runs part of it.
CPU_PARTS = ("dpm", "dpm_event_loop", "dpm_event_loop_waiting", "simulators", "broker", "bench")
WAITING = ("dpm_event_loop_waiting",)
# Whether this kernel counts each thread's run-queue wait (Linux's schedstat, CONFIG_SCHED_INFO).
COUNTS_WAITS = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/schedstat")


def cpu_seconds(parts: Mapping[str, Iterable[int]]) -> dict[str, dict[int, float]]:
    """User + system CPU seconds so far of each part's processes, by pid (a process gone is
    left out). `dpm_event_loop` names processes whose main thread alone is counted: the
    DPM's asyncio loop, where every input and ack is worked. A `WAITING` part gives the
    seconds that main thread waited for a core (`waited_seconds`); it is left out where
    the kernel does not count them (`COUNTS_WAITS`)."""
    out: dict[str, dict[int, float]] = {}
    for part, pids in parts.items():
        if part in WAITING and not COUNTS_WAITS:
            continue
        seconds = out[part] = {}
        for pid in pids:
            try:
                if part in WAITING:
                    seconds[pid] = waited_seconds(pid)
                elif part == "dpm_event_loop":
                    seconds[pid] = sum(t.user_time + t.system_time for t in psutil.Process(pid).threads() if t.id == pid)
                else:
                    times = psutil.Process(pid).cpu_times()
                    seconds[pid] = times.user + times.system
            except (psutil.Error, OSError):  # gone
                continue
    return out


def waited_seconds(pid: int) -> float:
    """Seconds the main thread of process `pid` was runnable but not running (waiting on a
    run queue: the second field of Linux's /proc/<pid>/task/<pid>/schedstat, in ns); OSError
    when the process is gone."""
    with open(f"/proc/{pid}/task/{pid}/schedstat", encoding="ascii") as f:
        return int(f.read().split()[1]) / 1e9


def cpu_used(before: Mapping[str, Mapping[int, float]], after: Mapping[str, Mapping[int, float]], wall_s: float) -> dict[str, Any]:
    """Cores each part kept busy between two `cpu_seconds` readings `wall_s` apart, and the
    machine's cores: where a phase's time went, in every run. Only processes read both times
    count (one killed or started during the phase is left out)."""
    cores = {}
    for part in CPU_PARTS:
        if part in before and part in after:
            seconds = sum(after[part][pid] - was for pid, was in before[part].items() if pid in after[part])
            cores[part] = seconds / wall_s if wall_s > 0 else 0.0
    return {"wall_s": wall_s, "cpus": len(os.sched_getaffinity(0)), "cores": cores}


def cpu_combined(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Two phases' `cpu_used` as one: each part's cores over the sum of their walls."""
    wall = a["wall_s"] + b["wall_s"]
    cores = {part: (a["cores"][part] * a["wall_s"] + b["cores"][part] * b["wall_s"]) / wall if wall > 0 else 0.0
             for part in a["cores"] if part in b["cores"]}
    return {"wall_s": wall, "cpus": b["cpus"], "cores": cores}


def jit_seconds(pids: Iterable[int]) -> dict[tuple[int, int], float]:
    """CPU seconds so far of each JIT compiler thread of these processes, by (pid, thread id)
    (HotSpot names them `C1 CompilerThread<n>` and `C2 CompilerThread<n>`, and starts and
    stops them with the load); none for a process gone or not a JVM."""
    out: dict[tuple[int, int], float] = {}
    for pid in pids:
        try:
            threads = psutil.Process(pid).threads()
        except psutil.Error:
            continue
        for t in threads:
            try:
                with open(f"/proc/{pid}/task/{t.id}/comm") as f:
                    name = f.read()
            except OSError:
                continue
            if name.startswith(("C1 CompilerThre", "C2 CompilerThre")):
                out[(pid, t.id)] = t.user_time + t.system_time
    return out


def jit_cores(before: Mapping[tuple[int, int], float], after: Mapping[tuple[int, int], float], wall_s: float) -> float:
    """Cores the compiler threads kept busy between two `jit_seconds` readings `wall_s` apart:
    a thread started meanwhile counts whole, one stopped meanwhile not at all."""
    return sum(now - before.get(key, 0.0) for key, now in after.items()) / wall_s if wall_s > 0 else 0.0
