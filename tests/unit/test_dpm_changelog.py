"""The changelog writer and its replay, over a MemoryBus or transactions that fail on demand
(the broker-backed tests are in tests/integration/test_dpm_durable.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pytest

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp
from dpm_server.changelog import Changelog, Replayed, chunk_key, incarnation_record, parse_key, record_key, replay
from dpm_server.inputs import Input
from dpm_server.service import Batcher
from dpm_server.snapshot import Snapshot
from dpm_server.testing import goal, memory_engine, port, published, subnet
from gsmq import wire
from gsmq.errors import FatalTransportError, FencedError, TransportError
from gsmq.transport import Envelope, MemoryBus
from gsmq.v1 import changelog_pb2

H1, H2 = "10.0.0.1", "10.0.0.2"
SUBNET = "subnet-vpc-1"


def port_of(host: str, pid: str = "p-1", rev: int = 1, op: int = common.CREATE) -> gs.GoalStateV2:
    """A subnet and one port of vpc-1 on `host`."""
    return goal([subnet("vpc-1"), port(pid, "vpc-1", host, "10.1.0.5", rev, op)], {host: [SUBNET, pid]})


class FlakyStore:
    """Transactions that fail (or fence) as told, and keep what they committed."""

    def __init__(self, fail: list[Exception] | None = None) -> None:
        self.fail = fail or []
        self.tries: list[list[Envelope]] = []
        self.committed: list[list[Envelope]] = []

    def start(self) -> None:
        pass

    def commit(self, messages: Sequence[Envelope]) -> None:
        self.tries.append(list(messages))
        if self.fail:
            raise self.fail.pop(0)
        self.committed.append(list(messages))


def port_only(rev: int, pid: str = "p-1") -> gs.GoalStateV2:
    return goal([port(pid, "vpc-1", H1, "10.1.0.5", rev)], {H1: [pid]})


def test_a_change_is_published_only_once_its_records_are_committed() -> None:
    eng, bus, topics = memory_engine(durable=True)
    assert eng.changelog is not None
    eng.changelog.eager = False  # drained by hand, as the daemon's writer thread does
    eng.submit(port_of(H1), lambda reply: None)
    assert bus.logs[(topics.changelog, 0)] + bus.logs[(topics.changelog, 1)] == []
    assert published(bus, topics.unicast) == [] and published(bus, topics.multicast) == []
    assert eng.changelog.drain() == 1
    records = bus.logs[(topics.changelog, 0)] + bus.logs[(topics.changelog, 1)]
    assert sorted(m.key for m in records) == sorted([record_key((common.SUBNET, SUBNET)), record_key((common.PORT, "p-1"))])
    assert [m.key for m in published(bus, topics.unicast)] == [H1]


def test_queued_writes_are_committed_in_one_transaction_and_released_in_order() -> None:
    snap, store, order = Snapshot("vpc-multicast"), FlakyStore(), list[str]()
    log = Changelog(snap, "cl", store, lambda run: run())
    snap.apply(port_only(1))
    log.write(lambda: order.append("first"))
    snap.apply(port_only(1, "p-2"))
    log.write(lambda: order.append("second"))
    assert order == [] and log.pending() == 2
    assert log.drain() == 2
    assert order == ["first", "second"] and len(store.committed) == 1 and len(store.committed[0]) == 2


def test_a_failed_transaction_is_tried_again_with_the_same_records_before_any_later_one() -> None:
    snap, store, released = Snapshot("vpc-multicast"), FlakyStore([TransportError("commit: Broker: Request timed out")]), list[str]()
    log = Changelog(snap, "cl", store, lambda run: run())
    snap.apply(port_only(1))
    log.write(lambda: released.append("rev1"))
    assert log.drain() == 1
    snap.apply(port_only(2))
    log.write(lambda: released.append("rev2"))
    log.drain()
    assert [[m.value for m in t] for t in store.tries[:2]] == [[store.tries[0][0].value]] * 2  # the same record, tried twice
    assert log.failures == 1 and released == ["rev1", "rev2"]
    last = changelog_pb2.DesiredResource.FromString(store.committed[-1][0].value).piece
    assert last == snap.resources[(common.PORT, "p-1")].piece


def test_a_fenced_writer_stops_and_releases_nothing() -> None:
    snap, store, released = Snapshot("vpc-multicast"), FlakyStore([FencedError("commit: fenced")]), list[str]()
    log = Changelog(snap, "cl", store, lambda run: run())
    snap.apply(port_only(1))
    log.write(lambda: released.append("never"))
    halt = threading.Event()
    with pytest.raises(FencedError):
        log.run(halt)
    assert released == [] and store.committed == []


def test_a_deleted_resource_leaves_a_tombstone_and_replay_forgets_it() -> None:
    eng, bus, topics = memory_engine(durable=True)
    eng.submit(port_of(H1), lambda reply: None)
    eng.submit(goal([port("p-1", "vpc-1", H1, "10.1.0.5", 2, common.DELETE)], {H1: ["p-1"]}), lambda reply: None)
    records = [m for p in (0, 1) for m in bus.logs[(topics.changelog, p)] if m.key == record_key((common.PORT, "p-1"))]
    assert records[-1].value == b""
    rebuilt = Snapshot("vpc-multicast")
    assert replay(bus.source("r"), topics.changelog, 2, rebuilt) == Replayed(3, 0)
    assert set(rebuilt.resources) == {(common.SUBNET, SUBNET)}
    assert rebuilt.view(H1, "vpc-multicast") == eng.snapshot.view(H1, "vpc-multicast")


def test_an_unreadable_record_is_skipped_and_the_rest_replayed() -> None:
    bus = MemoryBus({"cl": 1})
    snap = Snapshot("vpc-multicast")
    snap.apply(port_of(H1))
    Changelog(snap, "cl", bus.transactions(), lambda run: run(), eager=True).write(lambda: None)
    sink = bus.sink()
    sink.send(Envelope("cl", "not-a-key", b"x"))
    sink.send(Envelope("cl", record_key((common.PORT, "p-9")), b"\xff\xff"))
    rebuilt = Snapshot("vpc-multicast")
    assert replay(bus.source("r"), "cl", 1, rebuilt) == Replayed(4, 0)
    assert set(rebuilt.resources) == set(snap.resources)


@pytest.mark.parametrize("text", ["7", "x/1", "/1", ""])
def test_a_key_that_is_not_type_slash_id_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a changelog key"):
        parse_key(text)


def test_keys_round_trip_with_slashes_in_ids() -> None:
    assert parse_key(record_key((common.PORT, "a/b"))) == (common.PORT, "a/b")


def test_an_empty_changelog_replays_into_an_empty_snapshot_and_a_halt_is_none() -> None:
    bus = MemoryBus({"cl": 2})
    assert replay(bus.source("r"), "cl", 2, Snapshot()) == Replayed(0, 0)
    bus.sink().send(Envelope("cl", record_key((common.SUBNET, "s")), b""))
    halted: Callable[[], bool] = lambda: True  # noqa: E731
    assert replay(bus.source("r"), "cl", 2, Snapshot(), halted) is None


def test_replay_gives_the_newest_incarnation_and_a_bad_one_is_skipped() -> None:
    bus = MemoryBus({"cl": 1})
    store = bus.transactions()
    for record in (incarnation_record("cl", 1), incarnation_record("cl", 2), Envelope("cl", "dpm/incarnation", b"two")):
        store.commit([record])
    assert replay(bus.source("r"), "cl", 1, Snapshot()) == Replayed(3, 2)


def test_the_same_records_refused_again_and_again_stop_the_writer_instead_of_hanging() -> None:
    refusals: list[Exception] = [TransportError("commit: Broker: Message size too large", "MSG_SIZE_TOO_LARGE") for _ in range(5)]
    snap, store = Snapshot("vpc-multicast"), FlakyStore(refusals)
    log = Changelog(snap, "cl", store, lambda run: run())
    snap.apply(port_only(1))
    log.write(lambda: None)
    with pytest.raises(FatalTransportError, match="refused the same 1 records 5 times"):
        log.drain()


def test_pending_counts_the_writes_of_the_transaction_under_way() -> None:
    snap, seen = Snapshot("vpc-multicast"), list[int]()

    class Watching(FlakyStore):
        def commit(self, messages: Sequence[Envelope]) -> None:
            seen.append(log.pending())
            super().commit(messages)

    log = Changelog(snap, "cl", Watching(), lambda run: run())
    snap.apply(port_only(1))
    log.write(lambda: None)
    snap.apply(port_only(1, "p-2"))
    log.write(lambda: None)
    log.drain()
    assert seen == [2] and log.pending() == 0


async def test_batches_waiting_for_their_commit_count_as_in_flight() -> None:
    eng, _, _ = memory_engine(durable=True)
    assert eng.changelog is not None
    eng.changelog.eager = False
    batcher = Batcher(eng, window=60.0, size=100, in_flight=2)
    batcher.add(Input.of(port_of(H1)), lambda reply: None)
    batcher.add(Input.of(port_of(H2, "p-2")), lambda reply: None)
    batcher.add(Input.of(port_of(H1, rev=2, op=common.UPDATE)), lambda reply: None)
    assert (eng.tracker.pending, batcher.batches) == ({}, 2)  # nothing published yet, two in flight all the same: the third waits
    eng.changelog.drain()
    assert (len(eng.tracker.pending), batcher.batches) == (2, 2)


def test_a_restarted_agents_resync_waits_for_the_changes_before_it() -> None:
    eng, bus, topics = memory_engine(durable=True)
    assert eng.changelog is not None
    eng.changelog.eager = False
    eng.submit(port_of(H1), lambda reply: None)
    eng.resync_restarted(H1)
    assert published(bus, topics.unicast) == []  # the full state would hold p-1, not committed yet
    eng.changelog.drain()
    to_h1 = [m for m in published(bus, topics.unicast) if m.key == H1]
    assert [m.headers.get(wire.FULL) for m in to_h1] == [None, "1"]


def test_a_publish_that_fails_after_the_commit_answers_the_caller_failure() -> None:
    eng, _, _ = memory_engine(durable=True)

    class Refusing:
        def send(self, message: Envelope, on_delivered: object = None) -> None:
            raise TransportError("producing: Broker: Message size too large", "MSG_SIZE_TOO_LARGE")

    eng.publisher.sink = Refusing()  # type: ignore[assignment]
    replies: list[gsp.GoalStateOperationReply] = []
    eng.submit(port_of(H1), replies.append)
    [reply] = replies
    assert {s.operation_status for s in reply.operation_statuses} == {common.FAILURE} and eng.tracker.pending == {}


def listed_subnet(hosts: Sequence[str], rev: int = 1) -> gs.GoalStateV2:
    return goal([subnet("vpc-9", rev=rev)], {h: ["subnet-vpc-9"] for h in hosts})


def test_a_resource_listed_for_very_many_hosts_keeps_them_in_chunk_records_that_replay_joins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dpm_server.changelog.CHUNK_BYTES", 100)  # about 6 host ids per record
    eng, bus, topics = memory_engine(durable=True)
    assert eng.changelog is not None
    hosts = [f"10.9.0.{i}" for i in range(20)]
    eng.submit(listed_subnet(hosts), lambda reply: None)
    key = (common.SUBNET, "subnet-vpc-9")

    def records() -> dict[str, bytes]:
        return {m.key: m.value for p in (0, 1) for m in bus.logs[(topics.changelog, p)]}  # the newest of each key

    own = changelog_pb2.DesiredResource.FromString(records()[record_key(key)])
    assert own.host_chunks == eng.changelog.chunks[key] >= 3 and list(own.host_ids) == []
    assert all(len(records()[chunk_key(key, n)]) <= 100 + 16 for n in range(1, own.host_chunks + 1))
    rebuilt = Snapshot("vpc-multicast")
    replayed = replay(bus.source("r1"), topics.changelog, 2, rebuilt)
    assert replayed is not None and replayed.chunks == {key: own.host_chunks}
    assert rebuilt.holders[key] == eng.snapshot.holders[key] == set(hosts)

    eng.submit(goal([subnet("vpc-9", rev=2, op=common.DELETE)], {hosts[0]: ["subnet-vpc-9"]}), lambda reply: None)
    newest = records()
    assert newest[record_key(key)] == b"" and all(newest[chunk_key(key, n)] == b"" for n in range(1, own.host_chunks + 1))
    assert key not in eng.changelog.chunks
    rebuilt = Snapshot("vpc-multicast")
    assert replay(bus.source("r2"), topics.changelog, 2, rebuilt) is not None and key not in rebuilt.resources
