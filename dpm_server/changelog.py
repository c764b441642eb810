"""The durable desired state (docs/internals.md, "The changelog"): the state-store pattern
of Kafka Streams. Every resource whose stored state or hosts an input changed gets one
record on the log-compacted changelog topic (key `<type>/<id>`, value a
`gsmq.v1.DesiredResource`, a tombstone once deleted), and what the input makes the hosts
do is published only once every record is delivered. A starting DPM rebuilds its
snapshot from the topic (`replay`) before it serves.

Rules:
- writes are released in the order they were made, so goal states are published in the
  order the snapshot took their inputs;
- a record that failed is written again from the snapshot as it is now (never the old
  record: it could overwrite a newer one of the same key);
- delivery reports run on the producer's poll thread; `defer` hands the release to the
  engine's thread.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

from dpm_server.snapshot import Snapshot
from gsmq.resources import ResourceKey
from gsmq.transport import Envelope, Sink, Source
from gsmq.v1 import changelog_pb2

log = structlog.get_logger()
TOPIC_CONFIG = {"cleanup.policy": "compact"}


def record_key(key: ResourceKey) -> str:
    return f"{key[0]}/{key[1]}"


def parse_key(text: str) -> ResourceKey:
    """`record_key` read back; ValueError when it is not `<type>/<id>`."""
    rtype, sep, rid = text.partition("/")
    if not sep or not rtype.isdigit():
        raise ValueError(f"not a changelog key: {text!r}")
    return int(rtype), rid


def record_value(snapshot: Snapshot, key: ResourceKey) -> bytes:
    """The record of `key` as the snapshot holds it now (b"": a tombstone)."""
    entry = snapshot.entry(key)
    if entry is None:
        return b""
    stored, hosts = entry
    return changelog_pb2.DesiredResource(piece=stored.piece, vpc_id=stored.vpc, host_ids=hosts).SerializeToString()


@dataclass(slots=True)
class _Write:
    keys: set[ResourceKey]  # records not delivered yet
    then: Callable[[], None]


class Changelog:
    """Writes the snapshot's changes to `topic` and releases what depends on them in order."""

    def __init__(self, sink: Sink, topic: str, snapshot: Snapshot, defer: Callable[[Callable[[], None]], object]) -> None:
        self.sink = sink
        self.topic = topic
        self.snapshot = snapshot
        self.defer = defer
        self.records = 0
        self.failures = 0
        self._writes: deque[_Write] = deque()
        self._lock = threading.Lock()  # `_writes`' key sets: the poll thread empties them

    def write(self, then: Callable[[], None]) -> None:
        """Write every resource the snapshot touched since the last write; `then()` runs (on
        the engine's thread) once those records and every earlier write are delivered."""
        keys = self.snapshot.take_touched()
        entry = _Write(set(keys), then)
        with self._lock:
            self._writes.append(entry)
        for key in keys:
            self._send(entry, key)
        if not keys:
            self._release()

    def _send(self, entry: _Write, key: ResourceKey) -> None:
        message = Envelope(self.topic, record_key(key), record_value(self.snapshot, key))
        self.records += 1
        self.sink.send(message, lambda _m, error: self._delivered(entry, key, error))

    def _delivered(self, entry: _Write, key: ResourceKey, error: str | None) -> None:
        if error is not None:
            self.failures += 1
            log.warning("changelog_write_failed", key=record_key(key), error=error)
            self.defer(lambda: self._send(entry, key))  # the snapshot is read on the engine's thread only
            return
        with self._lock:
            entry.keys.discard(key)
            done = not entry.keys and self._writes and self._writes[0] is entry
        if done:
            self.defer(self._release)

    def _release(self) -> None:
        """Run the `then` of every delivered write at the head of the queue."""
        while True:
            with self._lock:
                if not self._writes or self._writes[0].keys:
                    return
                entry = self._writes.popleft()
            entry.then()

    def pending(self) -> int:
        """Writes whose records are not all delivered yet."""
        with self._lock:
            return len(self._writes)


def replay(source: Source, topic: str, partitions: int, snapshot: Snapshot, halt: Callable[[], bool] = lambda: False) -> int | None:
    """Read `topic` from its beginning to its end offsets into `snapshot`; the records read
    (None if `halt()` turned true first). A record that cannot be read is logged and skipped."""
    ends = source.end_offsets([(topic, p) for p in range(partitions)])
    left = {tp: end for tp, end in ends.items() if end > 0}
    latest: dict[ResourceKey, bytes] = {}
    count = 0
    source.assign([(topic, p, -1) for (_, p) in left])
    try:
        while left and not halt():
            for message in source.poll_batch(5000, 0.5):
                tp = (message.topic, message.partition)
                count += 1
                try:
                    latest[parse_key(message.key)] = message.value
                except ValueError as exc:
                    log.warning("changelog_record_unreadable", partition=message.partition, offset=message.offset, error=str(exc))
                if tp in left and message.offset + 1 >= left[tp]:
                    del left[tp]
    finally:
        source.unassign(list(ends))
    if left:
        return None
    restore(snapshot, latest.items())
    return count


def restore(snapshot: Snapshot, records: Iterable[tuple[ResourceKey, bytes]]) -> None:
    """Put the newest record of each resource into `snapshot` (tombstones: nothing)."""
    for key, value in records:
        if not value:
            continue
        try:
            entry = changelog_pb2.DesiredResource.FromString(value)
            snapshot.restore(key, entry.piece, entry.vpc_id, entry.host_ids)
        except Exception as exc:  # noqa: BLE001 - one bad record must not keep the DPM from starting
            log.warning("changelog_record_unreadable", key=record_key(key), error=f"{type(exc).__name__}: {exc}")
    snapshot.take_touched()
