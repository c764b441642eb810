"""Sink and Source over a real broker: what is sent is what is read, keys and headers as text."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from gsmq import wire
from gsmq.kafka import KafkaSettings
from gsmq.kafka_admin import ensure_topics
from gsmq.kafka_transport import KafkaSink, KafkaSinks, KafkaSource
from gsmq.partition import partition_for
from gsmq.transport import Envelope


def read_all(source: KafkaSource, count: int) -> list[Envelope]:
    got: list[Envelope] = []
    for _ in range(100):
        got += source.poll_batch(100, 0.2)
        if len(got) >= count:
            break
    return got


@pytest.mark.parametrize("only_errors", [False, True])
def test_messages_sent_together_are_delivered_and_read_back_as_sent(kafka: KafkaSettings, topic_prefix: str, only_errors: bool) -> None:
    topic = f"{topic_prefix}.reply"
    ensure_topics(AdminClient(kafka.admin()), {topic: 4})
    sink = KafkaSink(kafka, **{"delivery.report.only.error": only_errors})  # the agent's producer hears of failures only
    messages = [Envelope(topic, f"10.0.0.{i}", f"ack-{i}".encode(), {wire.HOST_ID: f"10.0.0.{i}", wire.MSG_TYPE: "Ack"})
                for i in range(20)]
    messages.append(Envelope(topic, "hôte-é", b"", {wire.ERROR: "désolé", "empty": ""}, partition=3))
    sending = sink.send_all(messages)
    assert sink.flush(10) == 0
    assert sending.failed == []
    source = KafkaSource(kafka, f"{topic_prefix}.g")
    try:
        source.assign([(topic, p, 0) for p in range(4)])
        got = read_all(source, len(messages))
    finally:
        source.close()
    assert sorted((m.key, m.value, m.headers) for m in got) == sorted((m.key, m.value, m.headers) for m in messages)
    assert all(m.partition == (3 if m.key == "hôte-é" else partition_for(m.key, 4)) for m in got)


def test_values_sent_by_key_arrive_without_headers_and_the_refused_ones_come_back_as_envelopes(
        kafka: KafkaSettings, topic_prefix: str) -> None:
    """`send_values` (the agent's acks): each (key, value) a record without headers on the
    key's partition; one the broker refuses (larger than the topic takes) is in `failed`, with
    the records batched with it (the broker refuses a batch whole), and nothing else."""
    topic = f"{topic_prefix}.reply"
    ensure_topics(AdminClient(kafka.admin()), {topic: 4}, configs={topic: {"max.message.bytes": "2000"}})
    sink = KafkaSink(kafka, **{"delivery.report.only.error": True, "retries": 0, "enable.idempotence": False})
    records = [(f"10.0.0.{i}", f"ack-{i}".encode()) for i in range(20)] + [("hôte-é", b"x" * 5000)]
    sending = sink.send_values(topic, records)
    assert sink.flush(10) == 0
    failed = [(m.key, m.value) for m in sending.failed]
    assert ("hôte-é", b"x" * 5000) in failed and all(m.topic == topic and m.headers == {} for m in sending.failed)
    source = KafkaSource(kafka, f"{topic_prefix}.g")
    try:
        source.assign([(topic, p, 0) for p in range(4)])
        got = read_all(source, len(records) - len(failed))
    finally:
        source.close()
    assert sorted([(m.key, m.value) for m in got] + failed) == sorted(records)
    assert all(m.headers == {} and m.partition == partition_for(m.key, 4) for m in got)


def test_several_producers_write_each_partition_from_one_and_every_message_lands_where_one_would(
        kafka: KafkaSettings, topic_prefix: str) -> None:
    """`KafkaSinks`: a message without a partition lands on its key's partition (an empty
    key's too, as librdkafka hashes it), an explicit one where it says; every
    message of a partition went through the same producer, so a key's messages are read in
    the order they were sent; a topic not in the partition map goes whole to one producer."""
    known, other = f"{topic_prefix}.multicast", f"{topic_prefix}.other"
    ensure_topics(AdminClient(kafka.admin()), {known: 6, other: 2})
    sinks = KafkaSinks(kafka, 3, {known: 6})
    messages = [Envelope(known, f"vpc-{i % 7}", f"{i}".encode()) for i in range(70)]
    messages += [Envelope(known, "pinned", b"p", partition=4), Envelope(known, "", b"keyless")]
    messages += [Envelope(other, f"k{i}", f"o{i}".encode(), partition=-1 if i % 2 else i % 2) for i in range(6)]
    delivered: list[tuple[Envelope, str | None]] = []
    writers: dict[tuple[str, int], set[int]] = {}
    for m in messages:
        sink = sinks._sink(m)
        sinks.send(m, lambda msg, error: delivered.append((msg, error)))
        if m.partition >= 0:  # placed by the router (or its sender): the producer writing it is known now
            writers.setdefault((m.topic, m.partition), set()).add(id(sink))
    assert {id(sinks._sink(m)) for m in messages if m.topic == other} == {id(sinks._sink(messages[-1]))}
    assert all(len(ids) == 1 for ids in writers.values()) and len({i for ids in writers.values() for i in ids}) == 3
    assert sinks.flush(10) == 0 and sinks.queued() == 0
    assert len(delivered) == len(messages) and all(error is None for _, error in delivered)
    source = KafkaSource(kafka, f"{topic_prefix}.g")
    try:
        source.assign([(known, p, 0) for p in range(6)] + [(other, p, 0) for p in range(2)])
        got = read_all(source, len(messages))
    finally:
        source.close()
    assert sorted((m.topic, m.key, m.value) for m in got) == sorted((m.topic, m.key, m.value) for m in messages)
    for m in got:
        if m.topic == known and m.key.startswith("vpc-"):
            assert m.partition == partition_for(m.key, 6)
    assert next(m.partition for m in got if m.key == "pinned") == 4
    assert next(m.partition for m in got if m.value == b"keyless") == partition_for("", 6)  # an empty key is not a null one
    for key in {m.key for m in messages if m.key.startswith("vpc-")}:  # in send order
        assert [m.value for m in got if m.key == key] == [m.value for m in messages if m.key == key]
    with pytest.raises(ValueError, match="at least 1"):
        KafkaSinks(kafka, 0, {})


def test_keys_and_headers_that_are_not_utf8_text_are_read_as_decode_headers_reads_them(kafka: KafkaSettings, topic_prefix: str) -> None:
    topic = f"{topic_prefix}.odd"
    ensure_topics(AdminClient(kafka.admin()), {topic: 1})
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    odd: list[tuple[str, str | bytes | None]] = [("gs-type", b"Ack"), ("bad", b"\xff\xfe"), ("none", None)]
    producer.produce(topic, b"v1", b"\xffkey", headers=odd)
    producer.produce(topic, b"v2", None, headers=[("gs-type", b"Ack"), ("none", None)])
    producer.produce(topic, b"v3")
    assert producer.flush(10) == 0
    source = KafkaSource(kafka, f"{topic_prefix}.g")
    try:
        source.assign([(topic, 0, 0)])
        got = read_all(source, 3)
    finally:
        source.close()
    assert [(m.key, m.value, m.headers) for m in got] == [
        (b"\xffkey".decode(errors="replace"), b"v1", wire.decode_headers(odd)),
        ("", b"v2", {"gs-type": "Ack", "none": ""}),
        ("", b"v3", {}),
    ]


def test_records_give_the_value_and_a_header_and_the_envelope_that_poll_batch_gives(kafka: KafkaSettings, topic_prefix: str) -> None:
    topic = f"{topic_prefix}.records"
    ensure_topics(AdminClient(kafka.admin()), {topic: 1})
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    producer.produce(topic, b"v1", b"10.0.0.1", headers=[("gs-type", b"Marker"), ("bad", b"\xff\xfe"), ("none", None), ("gs-type", b"Ack")])
    producer.produce(topic, b"v2", None, headers=[("none", None)])
    producer.produce(topic, None, b"k3")
    assert producer.flush(10) == 0
    records, source = [], KafkaSource(kafka, f"{topic_prefix}.g")
    try:
        source.assign([(topic, 0, 0)])
        for _ in range(100):
            records += source.poll_records(100, 0.2)
            if len(records) >= 3:
                break
        source.unassign([(topic, 0)])
        source.assign([(topic, 0, 0)])
        envelopes = read_all(source, 3)
    finally:
        source.close()
    assert [r.value for r in records] == [b"v1", b"v2", b""]
    assert [(r.header("gs-type"), r.header("bad"), r.header("none"), r.header("absent")) for r in records] == [
        ("Ack", b"\xff\xfe".decode(errors="replace"), "", None), (None, None, "", None), (None, None, None, None)]
    assert [r.envelope() for r in records] == envelopes
    assert [(e.offset, e.key) for e in envelopes] == [(0, "10.0.0.1"), (1, ""), (2, "k3")]


def test_assigning_a_missing_topic_does_not_create_it_and_it_is_read_once_made(kafka: KafkaSettings, topic_prefix: str) -> None:
    topic = f"{topic_prefix}.later"
    admin = AdminClient(kafka.admin())
    source = KafkaSource(kafka, f"{topic_prefix}.g")
    try:
        source.assign([(topic, 0, 0)])  # its leaders are asked for first: the broker must not make it for that
        assert source.poll_batch(10, 0.2) == []
        assert topic not in admin.list_topics(timeout=10).topics
        ensure_topics(admin, {topic: 1})
        producer = Producer({"bootstrap.servers": kafka.bootstrap})
        producer.produce(topic, b"v1", b"k1")
        assert producer.flush(10) == 0
        got = read_all(source, 1)
    finally:
        source.close()
    assert [(m.key, m.value) for m in got] == [("k1", b"v1")]
