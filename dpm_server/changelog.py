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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

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
CHUNK_PREFIX = "hosts/"  # keys of the records holding the hosts of a resource listed for very many
CHUNK_BYTES = 256 << 10  # host ids one record holds at most (so a record fits any broker's default limit)


def record_key(key: ResourceKey) -> str:
    return f"{key[0]}/{key[1]}"


def parse_key(text: str) -> ResourceKey:
    """`record_key` read back; ValueError when it is not `<type>/<id>`."""
    rtype, sep, rid = text.partition("/")
    if not sep or not rtype.isdigit():
        raise ValueError(f"not a changelog key: {text!r}")
    return int(rtype), rid


def chunk_key(key: ResourceKey, n: int) -> str:
    """The key of the n-th record (from 1) of `key`'s hosts."""
    return f"{CHUNK_PREFIX}{n}/{record_key(key)}"


def parse_chunk_key(text: str) -> tuple[ResourceKey, int]:
    """`chunk_key` read back; ValueError when it is not one."""
    n, sep, rest = text.removeprefix(CHUNK_PREFIX).partition("/")
    if not text.startswith(CHUNK_PREFIX) or not sep or not n.isdigit():
        raise ValueError(f"not a changelog hosts key: {text!r}")
    return parse_key(rest), int(n)


def _chunks(hosts: list[str]) -> list[list[str]]:
    """`hosts` in runs of at most CHUNK_BYTES (none when they fit the resource's own record)."""
    if sum(len(h) + 3 for h in hosts) <= CHUNK_BYTES:
        return []
    out: list[list[str]] = [[]]
    size = 0
    for host in hosts:
        if out[-1] and size + len(host) + 3 > CHUNK_BYTES:
            out.append([])
            size = 0
        out[-1].append(host)
        size += len(host) + 3
    return out


def records_of(topic: str, snapshot: Snapshot, key: ResourceKey, chunks_before: int) -> tuple[list[Envelope], int]:
    """The records of `key` as the snapshot holds it now (a tombstone when it is not stored):
    its own, its host chunks, tombstones for the chunks it had beyond them; and how many
    chunks it has now."""
    entry = snapshot.entry(key)
    chunks: list[list[str]] = []
    if entry is None:
        own = b""
    else:
        stored, hosts = entry
        chunks = _chunks(hosts)
        own = changelog_pb2.DesiredResource(piece=stored.piece, vpc_id=stored.vpc, host_ids=[] if chunks else hosts,
                                            host_chunks=len(chunks)).SerializeToString()
    out = [Envelope(topic, record_key(key), own)]
    out += [Envelope(topic, chunk_key(key, n), changelog_pb2.DesiredResource(host_ids=c).SerializeToString())
            for n, c in enumerate(chunks, 1)]
    out += [Envelope(topic, chunk_key(key, n), b"") for n in range(len(chunks) + 1, chunks_before + 1)]
    return out, len(chunks)


@dataclass(slots=True)
class _Write:
    records: list[Envelope]
    then: Callable[[], object]


class Changelog:
    """Writes the snapshot's changes through a `Transactions` and releases what depends on
    them in order. `write` (engine thread) queues; `drain` commits everything queued in one
    transaction, then hands the `then`s to `defer`; `run` drains on its own thread until
    halted. `eager`: `write` drains at once (in-memory tests)."""

    def __init__(self, snapshot: Snapshot, topic: str, store: Transactions, defer: Callable[[Callable[[], object]], object],
                 eager: bool = False, chunks: dict[ResourceKey, int] | None = None) -> None:
        """`chunks`: the host chunks each resource has on the topic (`Replayed.chunks`)."""
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
        self.chunks = dict(chunks or {})

    def write(self, then: Callable[[], object]) -> None:
        """Queue a record of every resource the snapshot touched since the last write; `then()`
        runs (through `defer`) once they and every earlier write are committed."""
        records: list[Envelope] = []
        for key in sorted(self.snapshot.take_touched()):
            mine, chunks = records_of(self.topic, self.snapshot, key, self.chunks.get(key, 0))
            records += mine
            if chunks:
                self.chunks[key] = chunks
            else:
                self.chunks.pop(key, None)
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
        records = list({r.key: r for w in writes for r in w.records}.values())  # the newest record of each key: all compaction keeps
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
    chunks: dict[ResourceKey, int] = field(default_factory=dict)  # resources whose hosts are in chunk records: how many


def incarnation_record(topic: str, incarnation: int) -> Envelope:
    """The record a DPM run commits first: its incarnation number (ASCII digits)."""
    return Envelope(topic, INCARNATION_KEY, str(incarnation).encode())


def replay(source: Source, topic: str, partitions: int, snapshot: Snapshot, halt: Callable[[], bool] = lambda: False) -> Replayed | None:
    """Read `topic` from its beginning to its end offsets into `snapshot` (None if `halt()`
    turned true first). A record that cannot be read is logged and skipped."""
    ends = source.end_offsets([(topic, p) for p in range(partitions)])
    left = {tp: end for tp, end in ends.items() if end > 0}
    latest: dict[ResourceKey, bytes] = {}
    chunks: dict[tuple[ResourceKey, int], bytes] = {}
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
                    if message.key.startswith(CHUNK_PREFIX):
                        chunks[parse_chunk_key(message.key)] = message.value
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
    return Replayed(count, incarnation, restore(snapshot, latest.items(), chunks))


def restore(snapshot: Snapshot, records: Iterable[tuple[ResourceKey, bytes]],
            chunks: Mapping[tuple[ResourceKey, int], bytes] | None = None) -> dict[ResourceKey, int]:
    """Put the newest record of each resource into `snapshot` (tombstones: nothing), its
    hosts from its chunk records when it has them; the chunk count of each resource that has."""
    counts: dict[ResourceKey, int] = {}
    for key, value in records:
        if not value:
            continue
        try:
            entry = changelog_pb2.DesiredResource.FromString(value)
            hosts = list(entry.host_ids)
            for n in range(1, entry.host_chunks + 1):
                hosts += changelog_pb2.DesiredResource.FromString((chunks or {})[(key, n)]).host_ids
            snapshot.restore(key, entry.piece, entry.vpc_id, hosts)
            if entry.host_chunks:
                counts[key] = entry.host_chunks
        except Exception as exc:  # noqa: BLE001 - one bad record must not keep the DPM from starting
            log.warning("changelog_record_unreadable", key=record_key(key), error=f"{type(exc).__name__}: {exc}")
    snapshot.take_touched()
    return counts
