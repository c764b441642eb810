"""The durable desired state (docs/internals.md, "The changelog"): the state-store pattern
of Kafka Streams. Every resource whose stored state or hosts an input changed gets one
record on the log-compacted changelog topic (key `<type>/<id>`, value a
`gsmq.v1.DesiredResource`, a tombstone once deleted), and what the input makes the hosts
do is published only once its records are committed. A starting DPM rebuilds its
snapshot from the topic (`replay`) before it serves.

Rules:
- records are written in Kafka transactions of one `transactional.id` per topic prefix:
  a DPM that starts fences every earlier one, whose next commit fails (`FencedError`), so
  two incarnations never both write;
- writes are committed and released in the order they were made, so goal states are
  published in the order the snapshot took their inputs; a failed transaction is aborted
  and tried again with the same records before any later one;
- commits block, so they run on their own thread (`run`); `defer` hands each release to
  the engine's thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

from dpm_server.snapshot import Snapshot
from gsmq import wire
from gsmq.errors import BrokerUnavailableError, FatalTransportError, FencedError, TransportError
from gsmq.resources import ResourceKey
from gsmq.retry import Backoff
from gsmq.transport import Envelope, Source, Transactions
from gsmq.v1 import changelog_pb2
from gsmq.wire import HeaderError

log = structlog.get_logger()
TOPIC_CONFIG = {"cleanup.policy": "compact"}
MAX_REFUSED = 5  # non-retriable failures of one transaction before the writer gives up (the DPM exits 1)
INCARNATION_KEY = "dpm/incarnation"  # its value: the number of the last DPM run (gs-epoch's head)


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
    records: list[Envelope]
    then: Callable[[], None]


class Changelog:
    """Writes the snapshot's changes through a `Transactions` and releases what depends on
    them in order. `write` (engine thread) queues; `drain` commits everything queued in one
    transaction, then hands the `then`s to `defer`; `run` drains on its own thread until
    halted. `eager`: `write` drains at once (in-memory tests)."""

    def __init__(self, snapshot: Snapshot, topic: str, store: Transactions, defer: Callable[[Callable[[], None]], object],
                 eager: bool = False) -> None:
        self.snapshot = snapshot
        self.topic = topic
        self.store = store
        self.defer = defer
        self.eager = eager
        self.records = 0
        self.transactions = 0
        self.failures = 0
        self._queue: list[_Write] = []
        self._committing = 0  # writes taken off the queue by the transaction under way
        self._ready = threading.Condition()

    def write(self, then: Callable[[], None]) -> None:
        """Queue a record of every resource the snapshot touched since the last write; `then()`
        runs (through `defer`) once they and every earlier write are committed."""
        keys = sorted(self.snapshot.take_touched())
        records = [Envelope(self.topic, record_key(key), record_value(self.snapshot, key)) for key in keys]
        with self._ready:
            self._queue.append(_Write(records, then))
            self._ready.notify()
        if self.eager:
            self.drain()

    def drain(self, halt: threading.Event | None = None) -> int:
        """Commit every queued write in one transaction, trying again (the same records, so
        nothing newer can be overwritten) until it is committed or `halt` is set; the writes
        committed. `FencedError` propagates: another DPM took over."""
        with self._ready:
            writes, self._queue = self._queue, []
            self._committing = len(writes)
        if not writes:
            return 0
        try:
            return self._commit(writes, halt)
        finally:
            with self._ready:
                self._committing = 0

    def _commit(self, writes: list[_Write], halt: threading.Event | None) -> int:
        records = [r for w in writes for r in w.records]
        backoff = Backoff(first=0.05, cap=2.0)
        refused = 0  # tries the broker answered with a non-retriable error
        while True:
            try:
                self.store.commit(records)
                break
            except FatalTransportError:
                raise
            except TransportError as exc:
                self.failures += 1
                if halt is not None and halt.is_set():
                    log.warning("changelog_unwritten", records=len(records), writes=len(writes), error=str(exc))
                    return 0
                refused += not isinstance(exc, BrokerUnavailableError)
                if refused >= MAX_REFUSED:  # the same records would be refused forever: stop, do not hang
                    raise FatalTransportError(f"the changelog refused the same {len(records)} records {refused} times: {exc}",
                                              exc.code) from exc
                log.warning("changelog_commit_failed", records=len(records), error=str(exc))
                time.sleep(backoff.delay())
        self.records += len(records)
        self.transactions += 1
        for w in writes:
            self.defer(w.then)
        return len(writes)

    def run(self, halt: threading.Event) -> None:
        """Drain until `halt`, then once more: what was queued before the stop is written.
        Fenced, it logs why and raises: the daemon stops (exit 1)."""
        try:
            while not halt.is_set():
                with self._ready:
                    if not self._queue:
                        self._ready.wait(0.1)
                self.drain(halt)
            self.drain(halt)
        except FencedError as exc:
            log.error("dpm_fenced", error=str(exc), unwritten=self.pending(),  # noqa: TRY400 - one line; the lifecycle logs the rest
                      why="another dpm-server took over these topics; this one stops writing and exits")
            raise
        except FatalTransportError as exc:
            log.error("changelog_failed", error=str(exc), unwritten=self.pending(),  # noqa: TRY400 - as above
                      why="the transactional producer failed for good; the DPM stops")
            raise

    def pending(self) -> int:
        """Writes not committed yet: queued, or in the transaction under way."""
        with self._ready:
            return len(self._queue) + self._committing


@dataclass(frozen=True)
class Replayed:
    records: int  # read, tombstones and unreadable ones included
    incarnation: int  # the last DPM run's number (0: none yet)


def incarnation_record(topic: str, incarnation: int) -> Envelope:
    """The record a DPM run commits first: its incarnation number (ASCII digits)."""
    return Envelope(topic, INCARNATION_KEY, str(incarnation).encode())


def replay(source: Source, topic: str, partitions: int, snapshot: Snapshot, halt: Callable[[], bool] = lambda: False) -> Replayed | None:
    """Read `topic` from its beginning to its end offsets into `snapshot` (None if `halt()`
    turned true first). A record that cannot be read is logged and skipped."""
    ends = source.end_offsets([(topic, p) for p in range(partitions)])
    left = {tp: end for tp, end in ends.items() if end > 0}
    latest: dict[ResourceKey, bytes] = {}
    count = incarnation = 0
    source.assign([(topic, p, -1) for (_, p) in left])
    try:
        while left and not halt():
            for message in source.poll_batch(5000, 0.5):
                count += 1
                try:
                    if message.key == INCARNATION_KEY:
                        incarnation = max(incarnation, wire.number(message.value.decode(errors="replace"), "incarnation"))
                        continue
                    latest[parse_key(message.key)] = message.value
                except (ValueError, HeaderError) as exc:
                    log.warning("changelog_record_unreadable", partition=message.partition, offset=message.offset, error=str(exc))
            for tp, position in source.positions(list(left)).items():  # past the last commit marker too
                if position >= left[tp]:
                    del left[tp]
    finally:
        source.unassign(list(ends))
    if left:
        return None
    restore(snapshot, latest.items())
    return Replayed(count, incarnation)


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
