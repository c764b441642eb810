"""The bench's reply collector through the real broker: it reads the whole backlog of acks
even when the broker's first answers come back empty."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient

import gs_bench.measure
from gs_bench.measure import ReplyCollector
from gsmq import wire
from gsmq.kafka import KafkaSettings
from gsmq.kafka_admin import ensure_topics
from gsmq.kafka_transport import consume_batch
from gsmq.v1 import ack_pb2


def test_settle_reads_the_whole_backlog_through_a_stall(kafka: KafkaSettings, topic_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    topic = f"{topic_prefix}.reply"
    ensure_topics(AdminClient(kafka.admin()), {topic: 3})
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    for i in range(300):
        ack = ack_pb2.Ack(host_id=f"10.0.{i // 250}.{i % 250}", epoch="e", unicast_seq=1)
        ack.timing.last_applied_ns, ack.timing.messages = 2_000_000, 1
        ack.timing.elapse_buckets[80] = 1
        # an agent's record has no headers; agents before typed theirs
        typed: list[tuple[str, str | bytes | None]] | None = [(wire.MSG_TYPE, b"Ack")] if i % 2 else None
        producer.produce(topic, ack.SerializeToString(), ack.host_id.encode(), headers=typed)
    for host in ("10.0.9.1", "10.0.9.2"):  # acks covering three messages: one under 1 us, two at 1.024 ms
        ack = ack_pb2.Ack(host_id=host, epoch="e", unicast_seq=3)
        ack.timing.last_applied_ns, ack.timing.messages = 2_000_000, 3
        ack.timing.elapse_buckets.update({0: 1, 80: 2})
        producer.produce(topic, ack.SerializeToString(), host.encode())
    producer.produce(topic, b"", b"dpm", headers=[(wire.MSG_TYPE, b"marker")])  # the DPM's start-up marker: no ack
    assert producer.flush(10) == 0
    polls: list[int] = []

    def stalled_at_first(consumer: Consumer, count: int, timeout: float) -> list[Message]:
        polls.append(1)
        return [] if len(polls) <= 3 else consume_batch(consumer, count, timeout)

    monkeypatch.setattr(gs_bench.measure, "consume_batch", stalled_at_first)
    collector = ReplyCollector(kafka, topic)
    try:
        collector.settle(quiet=0.0)  # nothing for a moment is not the end of a backlog
        assert collector.acks == 302 and collector.count() == 306
        assert len(set(collector.samples().hosts)) == 302
        # published 2 ms - 1.024 ms before applied: 300 + 2 x 2 samples; the two under 1 us, at 2 ms
        early = collector.window(0, 1_000_000)
        assert len(early) == 304 and set(early.applied_ns) == {2_000_000}
        assert sorted(collector.window(1_000_000, 3_000_000).hosts) == ["10.0.9.1", "10.0.9.2"]
        assert len(collector.window(0, 3_000_000)) == 306
    finally:
        collector.close()
