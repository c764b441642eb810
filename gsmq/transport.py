"""The path a message travels, behind one small interface (after httpx's transports).

`Sink` sends, `Source` receives; `gsmq.kafka_transport` implements them over Kafka and
`MemoryBus` in memory for unit tests of pure logic. DPM and ACA logic depends only on
these names, never on confluent_kafka or grpc.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gsmq.partition import partition_for

HeaderMap = dict[str, str]


@dataclass(slots=True)
class Envelope:
    """One message: payload bytes plus routing and headers; partition/offset once placed.
    An empty `value` travels as Kafka's null value (a tombstone on a compacted topic)."""

    topic: str
    key: str
    value: bytes
    headers: HeaderMap = field(default_factory=dict)
    partition: int = -1
    offset: int = -1

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def envelope(self) -> Envelope:
        return self

    def partition_in(self, partitions: int) -> int:
        """Its partition among `partitions`: the one given, else its key's, as Kafka's default
        partitioner puts it (an empty key too: it is not a null one)."""
        return self.partition if self.partition >= 0 else partition_for(self.key, partitions)


class Record(Protocol):
    """A consumed message as a reader that needs little of it sees it: its value and one
    header at a time, the whole `Envelope` only when asked (`KafkaSource.poll_records`)."""

    @property
    def value(self) -> bytes: ...

    def header(self, name: str) -> str | None: ...

    def envelope(self) -> Envelope: ...


Delivered = Callable[[Envelope, str | None], None]  # (message, error text or None)


class Sending:
    """Messages queued together by `Sink.send_all`: the ones that failed (each to be sent
    again by whoever wants it delivered). A flush that leaves nothing queued and nothing
    failed has delivered the rest."""

    __slots__ = ("failed",)

    def __init__(self) -> None:
        self.failed: list[Envelope] = []

    def on_delivered(self, message: Envelope, error: str | None) -> None:
        """A `Delivered` callback that keeps the message when it failed."""
        if error is not None:
            self.failed.append(message)


class Sink(Protocol):
    def send(self, message: Envelope, on_delivered: Delivered | None = None) -> None:
        """Queue `message`; `on_delivered` runs from `poll`/`flush` once it is placed (or failed)."""

    def send_all(self, messages: Sequence[Envelope]) -> Sending:
        """Queue every message; the `Sending` keeps those `poll`/`flush` report failed.
        Cheaper than a `send` each: no callback per message, none told where it was placed."""

    def send_values(self, topic: str, records: Sequence[tuple[str, bytes]]) -> Sending:
        """`send_all` of records without headers, given as (key, value) on one topic: no
        `Envelope` is made for a record unless it failed."""

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery callbacks; returns how many ran."""

    def flush(self, timeout: float = 10.0) -> int:
        """Wait until queued messages are delivered; returns how many are still queued."""


class Transactions(Protocol):
    def start(self) -> None:
        """Take over the transactional id: every earlier holder is fenced and what it left open is aborted."""

    def commit(self, messages: Sequence[Envelope]) -> None:
        """Write all of `messages` or none of them (read_committed readers see them together);
        raise `FencedError` once a newer holder took over, `TransportError` when this try failed
        and was aborted (trying again with the same messages is safe)."""


class Source(Protocol):
    def assign(self, positions: Sequence[tuple[str, int, int]]) -> None:
        """Read these (topic, partition, offset) from now on, in addition to the current ones."""

    def unassign(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Stop reading these (topic, partition)."""

    def poll_batch(self, max_messages: int, timeout: float) -> list[Envelope]:
        """Up to `max_messages` messages, waiting at most `timeout` seconds for the first.
        An error never loses messages consumed with it: the next call raises it."""

    def commit(self, positions: Sequence[tuple[str, int, int]], asynchronous: bool = False) -> None:
        """Record (topic, partition, next offset to read) as done: synchronously, or only
        queued when `asynchronous` (the outcome is never reported: a lost commit repeats work)."""

    def committed(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The committed next offset of each partition (-1 when none)."""

    def end_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The offset the next record of each partition will get (its high watermark); 0 when
        the partition holds no readable record (its records all deleted)."""

    def positions(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The next offset this source will read of each assigned partition (-1: not known yet);
        past transaction markers, which are never returned as messages."""

    def reachable(self) -> bool:
        """False once every broker is lost, until one answers again (asked at most every few seconds)."""

    def lag(self) -> dict[tuple[str, int], int]:
        """Records not read yet, per assigned partition whose end is known (from the last fetches)."""


class MemoryBus:
    """An in-memory log of topics with Kafka's placement rules, for unit tests.

    `sink()` and `source()` give the two sides; partitions hash keys like Kafka.
    """

    def __init__(self, partitions: dict[str, int] | None = None, default_partitions: int = 1) -> None:
        self.partitions = dict(partitions or {})
        self.default_partitions = default_partitions
        self.logs: dict[tuple[str, int], list[Envelope]] = defaultdict(list)
        self.commits: dict[str, dict[tuple[str, int], int]] = defaultdict(dict)

    def partition_count(self, topic: str) -> int:
        return self.partitions.get(topic, self.default_partitions)

    def append(self, message: Envelope) -> Envelope:
        part = message.partition_in(self.partition_count(message.topic))
        log = self.logs[(message.topic, part)]
        placed = Envelope(message.topic, message.key, message.value, dict(message.headers), part, len(log))
        log.append(placed)
        return placed

    def sink(self) -> _MemorySink:
        return _MemorySink(self)

    def transactions(self) -> _MemoryTransactions:
        return _MemoryTransactions(self)

    def source(self, group: str = "default") -> _MemorySource:
        return _MemorySource(self, group)


def envelopes(topic: str, records: Sequence[tuple[str, bytes]]) -> list[Envelope]:
    """`Sink.send_values`'s records as the messages `Sink.send_all` takes."""
    return [Envelope(topic, key, value) for key, value in records]


def send_each(sink: Sink, messages: Sequence[Envelope]) -> Sending:
    """`Sink.send_all` by one `send` per message (for sinks whose `send` costs little)."""
    sending = Sending()
    for message in messages:
        sink.send(message, sending.on_delivered)
    return sending


class _MemoryTransactions:
    def __init__(self, bus: MemoryBus) -> None:
        self.bus = bus
        self.commits = 0

    def start(self) -> None:
        pass

    def commit(self, messages: Sequence[Envelope]) -> None:
        for message in messages:
            self.bus.append(message)
        self.commits += 1


class _MemorySink:
    def __init__(self, bus: MemoryBus) -> None:
        self.bus = bus
        self._pending: list[tuple[Envelope, Delivered | None]] = []

    def send(self, message: Envelope, on_delivered: Delivered | None = None) -> None:
        self._pending.append((self.bus.append(message), on_delivered))

    def send_all(self, messages: Sequence[Envelope]) -> Sending:
        return send_each(self, messages)

    def send_values(self, topic: str, records: Sequence[tuple[str, bytes]]) -> Sending:
        return send_each(self, envelopes(topic, records))

    def poll(self, timeout: float = 0.0) -> int:
        pending, self._pending = self._pending, []
        for placed, callback in pending:
            if callback is not None:
                callback(placed, None)
        return len(pending)

    def flush(self, timeout: float = 10.0) -> int:
        self.poll()
        return 0


class _MemorySource:
    def __init__(self, bus: MemoryBus, group: str) -> None:
        self.bus = bus
        self.group = group
        self.at: dict[tuple[str, int], int] = {}  # assigned partition -> next offset

    def assign(self, positions: Sequence[tuple[str, int, int]]) -> None:
        for topic, part, offset in positions:
            self.at[(topic, part)] = max(offset, 0)

    def unassign(self, partitions: Sequence[tuple[str, int]]) -> None:
        for topic, part in partitions:
            self.at.pop((topic, part), None)

    def poll_batch(self, max_messages: int, timeout: float) -> list[Envelope]:
        out: list[Envelope] = []
        for tp, pos in list(self.at.items()):
            log = self.bus.logs.get(tp, [])
            take = log[pos : pos + max_messages - len(out)]
            out.extend(take)
            self.at[tp] = pos + len(take)
            if len(out) >= max_messages:
                break
        return out

    def commit(self, positions: Sequence[tuple[str, int, int]], asynchronous: bool = False) -> None:
        for topic, part, offset in positions:
            self.bus.commits[self.group][(topic, part)] = offset

    def committed(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        mine = self.bus.commits[self.group]
        return {(topic, part): mine.get((topic, part), -1) for topic, part in partitions}

    def end_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {(topic, part): len(self.bus.logs.get((topic, part), [])) for topic, part in partitions}

    def positions(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {tp: self.at.get(tp, -1) for tp in partitions}

    def reachable(self) -> bool:
        return True

    def lag(self) -> dict[tuple[str, int], int]:
        return {tp: len(self.bus.logs.get(tp, [])) - pos for tp, pos in self.at.items()}
