"""What the bench measures and how: percentiles, publish -> applied from the reply topic's
headers, send -> reply of the caller's stream, convergence, rates and bytes."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from gsmq import wire
from gsmq.kafka import KafkaSettings
from gsmq.kafka_admin import partition_count
from gsmq.kafka_transport import consume_batch
from gsmq.v1 import status_pb2

CDF_POINTS = 200


def header_bytes(msg: Message) -> dict[str, bytes]:
    """A consumed message's headers by name; the last value wins and valueless ones are left out.
    (confluent-kafka's stubs give headers() the type of produce()'s argument: a dict, or str values.)"""
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {k: v.encode() if isinstance(v, str) else v for k, v in pairs if v is not None}


def percentiles(values: Iterable[float], points: Iterable[float] = (50, 95, 99)) -> dict[str, float]:
    """p50/p95/p99 (nearest rank), max and count of `values`; empty input gives zeros."""
    ordered = sorted(values)
    if not ordered:
        return {**{f"p{p:g}": 0.0 for p in points}, "max": 0.0, "count": 0}
    n = len(ordered)
    out = {f"p{p:g}": ordered[min(n, max(1, math.ceil(p / 100 * n))) - 1] for p in points}
    return {**out, "max": ordered[-1], "count": n}


def cdf_sample(values: Iterable[float], points: int = CDF_POINTS) -> list[float]:
    """At most `points` values spread evenly over the sorted values (enough for a CDF plot)."""
    ordered = sorted(values)
    if len(ordered) <= points:
        return ordered
    return [ordered[round(i * (len(ordered) - 1) / (points - 1))] for i in range(points)]


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


class ReplyCollector:
    """Reads `<prefix>.reply` in a thread from offset 0 (manual assignment, no group) and keeps
    every reply's gs-sent-ns (echoed from the DPM's publish) and gs-applied-ns (the host's)."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.replies: list[Reply] = []
        self._stop = threading.Event()
        parts = partition_count(AdminClient(kafka.admin()), topic)
        self._consumer = Consumer(kafka.consumer("bench-collector", **{"fetch.wait.max.ms": 5}))
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(parts)])
        self._thread = threading.Thread(target=self._run, name="bench-replies", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in consume_batch(self._consumer, 5000, 0.1):
                if msg.error() is not None:
                    continue
                hdr = header_bytes(msg)
                try:
                    reply = Reply(int(hdr[wire.SENT_NS]), int(hdr[wire.APPLIED_NS]), hdr.get(wire.HOST_ID, b"").decode())
                except (KeyError, ValueError):
                    continue  # markers and anything else without both stamps
                self.replies.append(reply)  # list.append is atomic under the GIL

    def count(self) -> int:
        return len(self.replies)

    def window(self, start_ns: int, end_ns: int) -> list[Reply]:
        """Replies to messages the DPM published in [start_ns, end_ns)."""
        return [r for r in self.replies[:] if start_ns <= r.sent_ns < end_ns]

    def settle(self, quiet: float = 0.5, deadline: float = 60.0) -> None:
        """Wait until no reply has arrived for `quiet` seconds (stragglers of a phase)."""
        end = time.monotonic() + deadline
        last = -1
        while time.monotonic() < end and self.count() != last:
            last = self.count()
            time.sleep(quiet)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
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
             "requests_completed", "requests_failed", "retries", "resyncs_served")
    return {n: getattr(after, n) - (getattr(before, n) if before is not None else 0) for n in names}


def agent_delta(after: list[status_pb2.AgentStatus], before: list[status_pb2.AgentStatus] | None) -> dict[str, int]:
    """The simulators' counters gained, summed over simulator processes."""
    names = ("messages_applied", "bytes_consumed", "replies_sent", "duplicates", "out_of_order", "dead_lettered")
    out = {n: sum(getattr(a, n) for a in after) for n in names}
    if before is not None:
        out = {n: v - sum(getattr(a, n) for a in before) for n, v in out.items()}
    return out


def phase_figures(push: Push, replies: list[Reply], resources: int, dpm: dict[str, int], agents: dict[str, int]) -> dict[str, Any]:
    """The figures of one pushed phase: throughput, latency, convergence, bytes.

    convergence = the DPM's first publish -> the last host applied (from the reply headers);
    goal states/s = caller inputs / (first send -> last caller reply);
    Kafka messages/s = messages the DPM published / convergence."""
    first_publish = min((r.sent_ns for r in replies), default=push.first_sent_ns)
    last_applied = max((r.applied_ns for r in replies), default=push.last_reply_ns)
    convergence = (last_applied - first_publish) / 1e9
    latencies = [r.latency_ms for r in replies]
    return {
        "inputs": push.inputs, "streams": push.streams, "resources": resources, "failures": push.failures,
        "duration_s": push.duration_s, "convergence_s": convergence,
        "first_send_to_last_applied_s": (last_applied - push.first_sent_ns) / 1e9 if push.sent_ns else 0.0,
        "goal_states_per_s": rate(push.inputs, push.duration_s),
        "resources_per_s": rate(resources, push.duration_s),
        "messages_per_s": rate(dpm["messages_published"], convergence),
        "replies": len(replies), "hosts_replied": len({r.host for r in replies}),
        "publish_to_applied_ms": percentiles(latencies),
        "caller_reply_ms": percentiles(push.latencies_ms()),
        "cdf_publish_to_applied_ms": cdf_sample(latencies),
        "cdf_caller_reply_ms": cdf_sample(push.latencies_ms()),
        **dpm,
        "bytes_consumed": agents["bytes_consumed"], "messages_applied": agents["messages_applied"],
        "avg_message_bytes": dpm["bytes_published"] / max(dpm["messages_published"], 1),
    }
