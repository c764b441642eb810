"""What the bench observes: replies on the reply topic (publish -> applied), the
caller's replies over gRPC (send -> reply), and the daemons' counters."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import grpc
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from gsmq import headers as h
from gsmq.kafka import KafkaSettings
from gsmq.kafka_transport import consume_batch
from gsmq.topics import partition_count
from proto import common_pb2 as common
from proto import goalstate_pb2 as gs
from proto import goalstateprovisioner_pb2_grpc as gsp_grpc


class ReplyCollector:
    """Reads the reply topic in a thread; keeps (sent_ns, applied_ns, host) of every reply."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.sent: list[int] = []
        self.applied: list[int] = []
        self.hosts: list[str] = []
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
                hdr = dict(msg.headers() or [])
                try:
                    sent, applied = int(hdr[h.SENT_NS]), int(hdr[h.APPLIED_NS])
                except (KeyError, ValueError):
                    continue  # markers
                self.sent.append(sent)
                self.applied.append(applied)
                self.hosts.append(hdr.get(h.HOST_ID, b"").decode())

    def count(self) -> int:
        return len(self.applied)

    def window(self, start_ns: int, end_ns: int) -> list[tuple[int, int, str]]:
        """Replies to messages published in [start_ns, end_ns)."""
        n = len(self.applied)
        return [(self.sent[i], self.applied[i], self.hosts[i]) for i in range(n) if start_ns <= self.sent[i] < end_ns]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()


@dataclass
class Push:
    """One caller stream: when each input was sent and its reply came back."""

    sent_ns: list[int] = field(default_factory=list)
    reply_ns: list[int] = field(default_factory=list)
    failures: int = 0  # statuses other than SUCCESS

    @property
    def duration_s(self) -> float:
        return (self.reply_ns[-1] - self.sent_ns[0]) / 1e9 if self.reply_ns else 0.0

    def latencies_ms(self) -> list[float]:
        return [(r - s) / 1e6 for s, r in zip(self.sent_ns, self.reply_ns, strict=False)]


def push(address: str, messages: Iterable[gs.GoalStateV2], rate: float | None = None, timeout: float = 900,
         on_reply: Callable[[int], None] | None = None) -> Push:
    """Stream `messages` to a GoalStateProvisioner at `address` (at `rate` per second if given);
    `on_reply(n)` runs as the n-th reply arrives."""
    out = Push()

    def paced() -> Iterator[gs.GoalStateV2]:
        start = time.monotonic()
        for i, goal in enumerate(messages):
            if rate:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            out.sent_ns.append(time.time_ns())
            yield goal

    with grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        for reply in gsp_grpc.GoalStateProvisionerStub(channel).PushGoalStatesStream(paced(), timeout=timeout):
            out.reply_ns.append(time.time_ns())
            out.failures += sum(1 for s in reply.operation_statuses if s.operation_status != common.SUCCESS)
            if on_reply is not None:
                on_reply(len(out.reply_ns))
    return out


def percentiles(values: list[float], points: Iterable[float] = (50, 95, 99)) -> dict[str, float]:
    """p50/p95/p99 (nearest rank) and max of `values`; empty input gives zeros."""
    if not values:
        return {**{f"p{int(p)}": 0.0 for p in points}, "max": 0.0, "count": 0}
    ordered = sorted(values)
    out = {f"p{int(p)}": ordered[min(len(ordered), max(1, math.ceil(p / 100 * len(ordered)))) - 1] for p in points}
    return {**out, "max": ordered[-1], "count": len(ordered)}
