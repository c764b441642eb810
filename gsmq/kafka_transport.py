"""`Sink` and `Source` over Kafka (confluent-kafka / librdkafka)."""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from gsmq import quirks
from gsmq.kafka import KafkaSettings
from gsmq.transport import Delivered, Envelope


def consume_batch(consumer: Consumer, max_messages: int, timeout: float) -> list[Message]:
    """Up to `max_messages`, waiting at most `timeout` for the FIRST one only.

    `Consumer.consume(n, timeout)` waits until it has n messages or the timeout has
    passed, which adds the whole timeout to every message of a quiet stream (measured:
    100 ms with consume(500, 0.1) against 2 ms this way)."""
    first = consumer.consume(1, timeout)
    if not first or max_messages <= 1:
        return list(first)
    return [*first, *consumer.consume(max_messages - 1, 0)]


class KafkaSink:
    """An idempotent acks=all producer; `send` never blocks for long: on a full local
    queue it serves callbacks until there is room (backpressure to the caller)."""

    def __init__(self, settings: KafkaSettings, **overrides: object) -> None:
        self.producer = Producer(settings.producer(**overrides))
        self.bytes_sent = 0

    def send(self, message: Envelope, on_delivered: Delivered | None = None) -> None:
        callback = None
        if on_delivered is not None:

            def callback(err: KafkaError | None, msg: object, _m: Envelope = message, _cb: Delivered = on_delivered) -> None:
                if err is None:
                    _m.partition = msg.partition()  # type: ignore[attr-defined]
                    _m.offset = msg.offset()  # type: ignore[attr-defined]
                _cb(_m, None if err is None else str(err))

        headers = [(k, v.encode()) for k, v in message.headers.items()]
        while True:
            try:
                if message.partition >= 0:
                    self.producer.produce(message.topic, message.value, message.key.encode(), message.partition, callback, headers=headers)
                else:
                    self.producer.produce(message.topic, message.value, message.key.encode(), on_delivery=callback, headers=headers)
                break
            except BufferError:
                self.producer.poll(0.05)
        self.bytes_sent += len(message.value)

    def poll(self, timeout: float = 0.0) -> int:
        return int(self.producer.poll(timeout))

    def flush(self, timeout: float = 10.0) -> int:
        return int(self.producer.flush(timeout))


class KafkaSource:
    """A manually assigned consumer (no group rebalances) that commits under `group_id`."""

    def __init__(self, settings: KafkaSettings, group_id: str, **overrides: object) -> None:
        self.consumer = Consumer(settings.consumer(group_id, **overrides))
        self._assigned: dict[tuple[str, int], TopicPartition] = {}

    def assign(self, positions: Sequence[tuple[str, int, int]]) -> None:
        for topic, part, offset in positions:
            self._assigned[(topic, part)] = TopicPartition(topic, part, offset if offset >= 0 else OFFSET_BEGINNING)
        self.consumer.incremental_assign([TopicPartition(t, p, o if o >= 0 else OFFSET_BEGINNING) for t, p, o in positions])

    def unassign(self, partitions: Sequence[tuple[str, int]]) -> None:
        tps = [TopicPartition(t, p) for t, p in partitions if (t, p) in self._assigned]
        for t, p in partitions:
            self._assigned.pop((t, p), None)
        if tps:
            self.consumer.incremental_unassign(tps)

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self.consumer.seek(TopicPartition(topic, partition, offset))

    def poll_batch(self, max_messages: int, timeout: float) -> list[Envelope]:
        out: list[Envelope] = []
        for msg in consume_batch(self.consumer, max_messages, timeout):
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(f"consume failed: {msg.error()}")
            key = msg.key()
            out.append(
                Envelope(
                    topic=msg.topic(),
                    key=key.decode(errors="replace") if key is not None else "",
                    value=msg.value() or b"",
                    headers={k: (v.decode(errors="replace") if v is not None else "") for k, v in (msg.headers() or [])},
                    partition=msg.partition(),
                    offset=msg.offset(),
                )
            )
        return out

    def commit(self, positions: Sequence[tuple[str, int, int]]) -> None:
        if positions:
            self.consumer.commit(offsets=[TopicPartition(t, p, o) for t, p, o in positions], asynchronous=False)

    def committed(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        result = self.consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=10)
        return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else -1) for tp in result}

    def high_watermark(self, topic: str, partition: int) -> int:
        return quirks.high_watermark(self.consumer, TopicPartition(topic, partition))

    def close(self) -> None:
        self.consumer.close()
