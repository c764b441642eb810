"""`Sink` and `Source` over Kafka (confluent-kafka / librdkafka); its errors leave as `gsmq.errors`.

confluent_kafka's exceptions never cross this boundary (after httpx's
`map_httpcore_exceptions`): a bad client property is a `ConfigError`, a broker that does
not answer `BrokerUnavailableError`, any other failure `TransportError`.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TypeVar, cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from gsmq import wire
from gsmq.config import ConfigError
from gsmq.errors import BrokerUnavailableError, FatalTransportError, FencedError, TransportError
from gsmq.kafka import KafkaSettings
from gsmq.transport import Delivered, Envelope, Sending, envelopes, send_each

PROBE_EVERY_S = 2.0  # how often a source that lost every broker asks for metadata to see one is back
LEADERS_TIMEOUT_S = 1.0  # how long a source waits for a topic's partition leaders before its first assignment there

T = TypeVar("T")

# librdkafka errors that say the broker did not answer (yet): retrying can help.
_UNAVAILABLE = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._TIMED_OUT_QUEUE,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._RESOLVE,
        KafkaError._WAIT_COORD,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.BROKER_NOT_AVAILABLE,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    }
)


_FENCED = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})


def failure(error: KafkaError, doing: str) -> TransportError:
    """librdkafka's `error` while `doing` something, as the project's exception."""
    kind = BrokerUnavailableError if error.code() in _UNAVAILABLE or error.retriable() else TransportError
    return kind(f"{doing}: {error.str()}", error.name())


def _error_of(exc: KafkaException) -> KafkaError | None:
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, KafkaError) else None


def as_failure(exc: KafkaException, doing: str) -> TransportError:
    """A KafkaException raised while `doing` something, as the project's exception."""
    error = _error_of(exc)
    return failure(error, doing) if error is not None else TransportError(f"{doing}: {exc}")


@contextmanager
def kafka_errors(doing: str) -> Iterator[None]:
    """Raise a KafkaException of the block as `BrokerUnavailableError` or `TransportError`."""
    try:
        yield
    except KafkaException as exc:
        raise as_failure(exc, doing) from exc


def build_client(make: Callable[[], T]) -> T:
    """A librdkafka client from `make()`; a property it refuses is a `ConfigError`."""
    try:
        return make()
    except KafkaException as exc:
        error = _error_of(exc)
        raise ConfigError(f"Kafka client configuration: {error.str() if error is not None else exc}") from exc


def consume_batch(consumer: Consumer, max_messages: int, timeout: float) -> list[Message]:
    """Up to `max_messages`, waiting at most `timeout` for the FIRST one only.

    `Consumer.consume(n, timeout)` waits until it has n messages or the timeout has
    passed, which adds the whole timeout to every message of a quiet stream."""
    first = consumer.consume(1, timeout)
    if not first or max_messages <= 1:
        return list(first)
    return [*first, *consumer.consume(max_messages - 1, 0)]


def _texts(key: bytes | None, headers: wire.RawHeaders) -> tuple[str, dict[str, str]]:
    """A consumed record's key and headers as text: UTF-8 as sent, else as `wire.decode_headers` reads them."""
    try:
        if isinstance(headers, list):
            return key.decode() if key is not None else "", {k: v.decode() for k, v in headers}
    except (UnicodeDecodeError, AttributeError):  # not UTF-8, or a header without value
        pass
    return key.decode(errors="replace") if key is not None else "", wire.decode_headers(headers)


def _envelope(msg: Message) -> Envelope:
    key, headers = _texts(msg.key(), msg.headers())
    return Envelope(msg.topic() or "", key, msg.value() or b"", headers, msg.partition() or 0, msg.offset() or 0)


class KafkaRecord:
    """A consumed record (`gsmq.transport.Record`): its value, a header decoded when read,
    the `Envelope` made only when asked."""

    __slots__ = ("message", "value")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.value: bytes = message.value() or b""

    def header(self, name: str) -> str | None:
        """The header's text (`wire.header_text`); the last of that name wins, as in `wire.decode_headers`."""
        headers = self.message.headers()  # a consumed record's: a list of (name, bytes or None)
        if not headers:
            return None
        for key, value in reversed(headers):
            if key == name:
                return wire.header_text(value)
        return None

    def envelope(self) -> Envelope:
        return _envelope(self.message)


def produce(producer: Producer, message: Envelope, callback: Callable[[KafkaError | None, Message], None] | None = None) -> None:
    """Queue one record, serving delivery callbacks while the local queue is full: key and
    headers go as text, which librdkafka sends UTF-8 encoded (none: no header list); an
    empty value as null (a tombstone on a compacted topic)."""
    headers = cast("dict[str, str | bytes | None] | None", message.headers or None)  # read only
    value = message.value or None
    while True:
        try:
            if message.partition >= 0:
                producer.produce(message.topic, value, message.key, message.partition, callback, headers=headers)
            else:
                producer.produce(message.topic, value, message.key, on_delivery=callback, headers=headers)
            return
        except BufferError:
            producer.poll(0.05)


class KafkaSink:
    """An idempotent acks=all producer; `send` never blocks for long: on a full local
    queue it serves callbacks until there is room (backpressure to the caller)."""

    def __init__(self, settings: KafkaSettings, **overrides: object) -> None:
        self.producer = build_client(lambda: Producer(settings.producer(**overrides)))

    def send(self, message: Envelope, on_delivered: Delivered | None = None) -> None:
        callback = None
        if on_delivered is not None:

            def callback(err: KafkaError | None, msg: Message, _m: Envelope = message, _cb: Delivered = on_delivered) -> None:
                if err is None:
                    _m.partition = msg.partition() or 0
                    _m.offset = msg.offset() or 0
                _cb(_m, None if err is None else str(err))

        self._produce(message, callback)

    def send_all(self, messages: Sequence[Envelope]) -> Sending:
        """One delivery callback for all the messages, which keeps the failed ones (with
        `delivery.report.only.error` it runs for those only). A delivery report names no
        headers, so a failed record is reported as every message of `messages` with its
        topic, key and value (sent again, a duplicate at worst)."""
        sending = Sending()
        unsent: dict[tuple[str, bytes, bytes], list[Envelope]] | None = None  # made at the first failure

        def reported(err: KafkaError | None, msg: Message) -> None:
            nonlocal unsent
            if err is None:
                return
            if unsent is None:
                unsent = {}
                for m in messages:
                    unsent.setdefault((m.topic, m.key.encode(), m.value), []).append(m)
            sending.failed += unsent.pop((msg.topic() or "", msg.key() or b"", msg.value() or b""), [])

        for message in messages:
            self._produce(message, reported)
        return sending

    def send_values(self, topic: str, records: Sequence[tuple[str, bytes]]) -> Sending:
        """As `send_all`, each (key, value) given to the producer as it is (an empty value as
        null); while the local queue is full, delivery callbacks are served until there is room."""
        sending = Sending()

        def reported(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                sending.failed.append(Envelope(msg.topic() or topic, (msg.key() or b"").decode(), msg.value() or b""))

        queue, unassigned = self.producer.produce, -1  # positional: no keywords to parse per record
        try:
            for key, value in records:
                while True:
                    try:
                        queue(topic, value or None, key, unassigned, reported)
                        break
                    except BufferError:
                        self.producer.poll(0.05)
        except KafkaException as exc:
            raise as_failure(exc, f"producing to {topic}") from exc
        return sending

    def _produce(self, message: Envelope, callback: Callable[[KafkaError | None, Message], None] | None) -> None:
        try:
            produce(self.producer, message, callback)
        except KafkaException as exc:
            raise as_failure(exc, f"producing to {message.topic}") from exc

    def poll(self, timeout: float = 0.0) -> int:
        return int(self.producer.poll(timeout))

    def flush(self, timeout: float = 10.0) -> int:
        return int(self.producer.flush(timeout))

    def queued(self) -> int:
        """Messages produced and not delivered yet."""
        return len(self.producer)


class KafkaSinks:
    """`count` producers (`KafkaSink`) as one sink, each partition always written by the same
    one, so its order is as with one producer. librdkafka sends one ProduceRequest per
    partition and, idempotent, keeps at most 5 in flight on a connection: a burst over 20
    partitions (a DPM's batch of messages) waits four broker round trips for its last
    request on one producer, one on four. A message without a partition is given the one
    its key lands on (`Envelope.partition_in`, as the producers' partitioner does) when `partitions`
    knows its topic (counts read once: a topic given partitions later keeps the old mapping
    here, as the DPM's follow positions do); a topic it does not know goes whole to one
    producer."""

    def __init__(self, settings: KafkaSettings, count: int, partitions: Mapping[str, int], **overrides: object) -> None:
        if count < 1:
            raise ValueError(f"producers must be at least 1, got {count}")
        self.sinks = [KafkaSink(settings, **overrides) for _ in range(count)]
        self.partitions = dict(partitions)

    def _sink(self, message: Envelope) -> KafkaSink:
        sinks = self.sinks
        if len(sinks) == 1:
            return sinks[0]
        count = self.partitions.get(message.topic, 0)
        if not count:
            return sinks[zlib.crc32(message.topic.encode()) % len(sinks)]
        message.partition = message.partition_in(count)
        return sinks[message.partition % len(sinks)]

    def send(self, message: Envelope, on_delivered: Delivered | None = None) -> None:
        self._sink(message).send(message, on_delivered)

    def send_all(self, messages: Sequence[Envelope]) -> Sending:
        return send_each(self, messages)

    def send_values(self, topic: str, records: Sequence[tuple[str, bytes]]) -> Sending:
        return send_each(self, envelopes(topic, records))

    def poll(self, timeout: float = 0.0) -> int:
        """Serve every producer's delivery callbacks, waiting `timeout` in all."""
        return sum(sink.poll(timeout / len(self.sinks)) for sink in self.sinks)

    def flush(self, timeout: float = 10.0) -> int:
        """Wait, `timeout` in all, until every producer's messages are delivered; how many are
        still queued. Each producer is polled once more at the end: one that took the whole
        time left the others a flush of no time, which serves no delivery report."""
        deadline = time.monotonic() + timeout
        for sink in self.sinks:
            sink.flush(max(0.0, deadline - time.monotonic()))
        for sink in self.sinks:
            sink.poll(0)
        return self.queued()

    def queued(self) -> int:
        return sum(sink.queued() for sink in self.sinks)


class KafkaTransactions:
    """A transactional producer (Kafka's exactly-once producer): `start` fences every earlier
    producer of `transactional_id` and aborts what it left open; `commit` writes a list of
    records all or none. Each call blocks until the broker answered (run it off the event loop)."""

    def __init__(self, settings: KafkaSettings, transactional_id: str, timeout: float = 30.0, **overrides: object) -> None:
        self.timeout = timeout
        self.producer = build_client(lambda: Producer(settings.producer(**{"transactional.id": transactional_id, **overrides})))

    def start(self) -> None:
        try:
            self.producer.init_transactions(self.timeout)
        except KafkaException as exc:
            raise self._failure(exc, "taking over the transactional id") from exc

    def commit(self, messages: Sequence[Envelope]) -> None:
        """A retriable commit error is tried again on the same transaction; any other error
        aborts it (so the next call can begin anew); fatal ones raise `FatalTransportError`."""
        try:
            self.producer.begin_transaction()
            for message in messages:
                produce(self.producer, message)
            while True:
                try:
                    self.producer.commit_transaction(self.timeout)
                    return
                except KafkaException as exc:
                    error = _error_of(exc)
                    if error is None or not error.retriable() or error.txn_requires_abort() or error.fatal():
                        raise
        except KafkaException as exc:
            failed = self._failure(exc, "committing a transaction")
            if not isinstance(failed, FatalTransportError):
                with contextlib.suppress(KafkaException):  # no transaction open: nothing to abort
                    self.producer.abort_transaction(self.timeout)
            raise failed from exc

    @staticmethod
    def _failure(exc: KafkaException, doing: str) -> TransportError:
        error = _error_of(exc)
        if error is not None and error.code() in _FENCED:
            return FencedError(f"{doing}: {error.str()} (a newer producer took over)", error.name())
        if error is not None and error.fatal():
            return FatalTransportError(f"{doing}: {error.str()}", error.name())
        return as_failure(exc, doing)

    def close(self) -> None:
        self.producer.flush(self.timeout)


class KafkaSource:
    """A manually assigned consumer (no group rebalances) that commits under `group_id`."""

    def __init__(self, settings: KafkaSettings, group_id: str, **overrides: object) -> None:
        self.consumer = build_client(lambda: Consumer(settings.consumer(group_id, error_cb=self._on_error, **overrides)))
        self._assigned: set[tuple[str, int]] = set()
        self._led: set[str] = set()  # topics whose partition leaders this consumer was told
        self._deferred: TransportError | None = None  # an error consumed with messages, raised by the next poll
        self._down = False  # every broker lost (librdkafka's _ALL_BROKERS_DOWN), until one answers again
        self._probed = 0.0

    def _on_error(self, error: KafkaError) -> None:  # served by poll, on the consuming thread
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._down = True

    def lag(self) -> dict[tuple[str, int], int]:
        tps = [TopicPartition(t, p) for t, p in sorted(self._assigned)]
        if not tps:
            return {}
        out = {}
        with kafka_errors("reading positions"):
            for tp in self.consumer.position(tps):
                high = self.consumer.get_watermark_offsets(tp, cached=True)[1]  # from the last fetch: no request
                if tp.offset >= 0 and high >= 0:
                    out[(tp.topic, tp.partition)] = max(high - tp.offset, 0)
        return out

    def reachable(self) -> bool:
        if self._down and time.monotonic() - self._probed >= PROBE_EVERY_S:
            self._probed = time.monotonic()
            try:
                self.consumer.list_topics(timeout=1.0)
                self._down = False
            except KafkaException:
                pass
        return not self._down

    def assign(self, positions: Sequence[tuple[str, int, int]]) -> None:
        """Start reading each (topic, partition) at its offset (< 0: the beginning). A topic's
        first assignment asks for its leaders first: librdkafka looks up a partition's start
        offset only once it knows the leader, and one it did not know then is looked up again
        500 ms later (its fixed retry), which every first message would wait for."""
        new = {topic for topic, _, _ in positions} - self._led
        if new:
            self._led.update(new)  # asked once: a broker that does not answer now is found by librdkafka's own refresh
            with contextlib.suppress(KafkaException):  # one request: one topic, else every topic
                self.consumer.list_topics(next(iter(new)) if len(new) == 1 else None, timeout=LEADERS_TIMEOUT_S)
        self._assigned.update((topic, part) for topic, part, _ in positions)
        with kafka_errors("assigning partitions"):
            self.consumer.incremental_assign([TopicPartition(t, p, o if o >= 0 else OFFSET_BEGINNING) for t, p, o in positions])

    def unassign(self, partitions: Sequence[tuple[str, int]]) -> None:
        tps = [TopicPartition(t, p) for t, p in partitions if (t, p) in self._assigned]
        self._assigned.difference_update(partitions)
        if tps:
            with kafka_errors("unassigning partitions"):
                self.consumer.incremental_unassign(tps)

    def poll_batch(self, max_messages: int, timeout: float) -> list[Envelope]:
        """The messages consumed, never lost to an error consumed with them: that error is
        raised by the next call, before it consumes anything."""
        messages = self._consume(max_messages, timeout)
        messages.reverse()
        out: list[Envelope] = []
        while messages:  # each record freed as its envelope is made: the batch never holds both (fewer collections)
            out.append(_envelope(messages.pop()))
        return out

    def poll_records(self, max_messages: int, timeout: float) -> list[KafkaRecord]:
        """`poll_batch` for readers that need a record's value and a header or two: key and
        headers are not decoded into an `Envelope` unless one is asked for."""
        return [KafkaRecord(m) for m in self._consume(max_messages, timeout)]

    def _consume(self, max_messages: int, timeout: float) -> list[Message]:
        """The records consumed without error; the first error consumed with them is deferred."""
        self._raise_deferred()
        with kafka_errors("consuming"):
            messages = consume_batch(self.consumer, max_messages, timeout)
        good = []
        for m in messages:
            error = m.error()
            if error is None:
                good.append(m)
            elif error.code() != KafkaError._PARTITION_EOF and self._deferred is None:
                self._deferred = failure(error, "consuming")
        if not good:
            self._raise_deferred()
        else:
            self._down = False
        return good

    def _raise_deferred(self) -> None:
        if self._deferred is not None:
            deferred, self._deferred = self._deferred, None
            raise deferred

    def commit(self, positions: Sequence[tuple[str, int, int]], asynchronous: bool = False) -> None:
        if not positions:
            return
        offsets = [TopicPartition(t, p, o) for t, p, o in positions]
        with kafka_errors("committing offsets"):  # two calls: the stubs type each value of `asynchronous` apart
            if asynchronous:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=False)

    def committed(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        with kafka_errors("reading committed offsets"):
            result = self.consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=10)
        return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else -1) for tp in result}

    def positions(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        with kafka_errors("reading positions"):
            result = self.consumer.position([TopicPartition(t, p) for t, p in partitions])
        return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else -1) for tp in result}

    def end_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        out = {}
        with kafka_errors("reading end offsets"):
            for topic, part in partitions:
                low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
                out[(topic, part)] = int(high) if high > low else 0  # nothing readable (all deleted): nothing to wait for
        return out

    def close(self) -> None:
        self.consumer.close()


