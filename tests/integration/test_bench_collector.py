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
    assert producer.flush(10) == 0
    polls: list[int] = []

    def stalled_at_first(consumer: Consumer, count: int, timeout: float) -> list[Message]:
        polls.append(1)
        return [] if len(polls) <= 3 else consume_batch(consumer, count, timeout)

    monkeypatch.setattr(gs_bench.measure, "consume_batch", stalled_at_first)
    collector = ReplyCollector(kafka, topic)
    try:
        collector.settle(quiet=0.0)  # nothing for a moment is not the end of a backlog
        assert collector.acks == collector.count() == 300
        assert len(set(collector.samples().hosts)) == 300
    finally:
        collector.close()
