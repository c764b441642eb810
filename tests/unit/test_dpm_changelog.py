"""The changelog writer and its replay, over a MemoryBus or a sink that delivers on demand
(the broker-backed tests are in tests/integration/test_dpm_durable.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from dpm_server.changelog import Changelog, parse_key, record_key, replay
from dpm_server.snapshot import Snapshot
from dpm_server.testing import goal, memory_engine, port, published, subnet
from gsmq.transport import Delivered, Envelope, MemoryBus, Sending, send_each
from gsmq.v1 import changelog_pb2

H1, H2 = "10.0.0.1", "10.0.0.2"
SUBNET = "subnet-vpc-1"


def port_of(host: str, pid: str = "p-1", rev: int = 1, op: int = common.CREATE) -> gs.GoalStateV2:
    """A subnet and one port of vpc-1 on `host`."""
    return goal([subnet("vpc-1"), port(pid, "vpc-1", host, "10.1.0.5", rev, op)], {host: [SUBNET, pid]})


class HeldSink:
    """A sink whose deliveries are reported only when the test says so, in any order."""

    def __init__(self) -> None:
        self.sent: list[tuple[Envelope, Delivered | None]] = []

    def send(self, message: Envelope, on_delivered: Delivered | None = None) -> None:
        self.sent.append((message, on_delivered))

    def send_all(self, messages: Sequence[Envelope]) -> Sending:
        return send_each(self, messages)

    def poll(self, timeout: float = 0.0) -> int:
        return 0

    def flush(self, timeout: float = 10.0) -> int:
        return 0

    def deliver(self, index: int, error: str | None = None) -> Envelope:
        message, callback = self.sent[index]
        if callback is not None:
            callback(message, error)
        return message


def port_only(rev: int) -> gs.GoalStateV2:
    return goal([port("p-1", "vpc-1", H1, "10.1.0.5", rev)], {H1: ["p-1"]})


def test_a_change_is_published_only_once_its_records_are_delivered() -> None:
    eng, bus, topics = memory_engine(durable=True)
    eng.submit(port_of(H1), lambda reply: None)
    records = bus.logs[(topics.changelog, 0)] + bus.logs[(topics.changelog, 1)]
    assert sorted(m.key for m in records) == [record_key((common.SUBNET, SUBNET)), record_key((common.PORT, "p-1"))]
    assert published(bus, topics.unicast) == [] and published(bus, topics.multicast) == []
    bus_sink = eng.publisher.sink
    bus_sink.poll()  # the records' deliveries: the change is released
    assert [m.key for m in published(bus, topics.unicast)] == [H1]


def test_writes_are_released_in_the_order_they_were_made() -> None:
    snap, order = Snapshot("vpc-multicast"), list[str]()
    sink = HeldSink()
    log = Changelog(sink, "cl", snap, lambda run: run())
    snap.apply(goal([subnet("vpc-1")], {H1: [SUBNET]}))
    log.write(lambda: order.append("first"))
    snap.apply(goal([port("p-2", "vpc-1", H2, "10.1.0.6")], {H2: ["p-2"]}))
    log.write(lambda: order.append("second"))
    assert len(sink.sent) == 2
    sink.deliver(1)
    assert order == [] and log.pending() == 2
    sink.deliver(0)
    assert order == ["first", "second"] and log.pending() == 0


def test_a_failed_record_is_written_again_from_the_snapshot_as_it_is_now() -> None:
    snap = Snapshot("vpc-multicast")
    sink = HeldSink()
    log = Changelog(sink, "cl", snap, lambda run: run())
    released: list[str] = []
    snap.apply(port_only(rev=1))
    log.write(lambda: released.append("rev1"))
    snap.apply(port_only(rev=2))
    log.write(lambda: released.append("rev2"))
    sink.deliver(0, error="Local: Message timed out")
    assert released == [] and log.failures == 1
    again = sink.sent[2][0]  # the retry carries revision 2, never the older record
    piece = changelog_pb2.DesiredResource.FromString(again.value).piece
    assert piece == snap.resources[(common.PORT, "p-1")].piece
    sink.deliver(1)
    sink.deliver(2)
    assert released == ["rev1", "rev2"]


def test_a_deleted_resource_leaves_a_tombstone_and_replay_forgets_it() -> None:
    eng, bus, topics = memory_engine(durable=True)
    eng.submit(port_of(H1), lambda reply: None)
    eng.submit(goal([port("p-1", "vpc-1", H1, "10.1.0.5", 2, common.DELETE)], {H1: ["p-1"]}), lambda reply: None)
    eng.publisher.sink.poll()
    records = [m for p in (0, 1) for m in bus.logs[(topics.changelog, p)] if m.key == record_key((common.PORT, "p-1"))]
    assert records[-1].value == b""
    rebuilt = Snapshot("vpc-multicast")
    assert replay(bus.source("r"), topics.changelog, 2, rebuilt) == 3
    assert set(rebuilt.resources) == {(common.SUBNET, SUBNET)}
    assert rebuilt.view(H1, "vpc-multicast") == eng.snapshot.view(H1, "vpc-multicast")


def test_an_unreadable_record_is_skipped_and_the_rest_replayed() -> None:
    bus = MemoryBus({"cl": 1})
    snap = Snapshot("vpc-multicast")
    snap.apply(port_of(H1))
    sink = bus.sink()
    log = Changelog(sink, "cl", snap, lambda run: run())
    log.write(lambda: None)
    sink.send(Envelope("cl", "not-a-key", b"x"))
    sink.send(Envelope("cl", record_key((common.PORT, "p-9")), b"\xff\xff"))
    rebuilt = Snapshot("vpc-multicast")
    assert replay(bus.source("r"), "cl", 1, rebuilt) == 4
    assert set(rebuilt.resources) == set(snap.resources)


@pytest.mark.parametrize("text", ["7", "x/1", "/1", ""])
def test_a_key_that_is_not_type_slash_id_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a changelog key"):
        parse_key(text)


def test_keys_round_trip_with_slashes_in_ids() -> None:
    assert parse_key(record_key((common.PORT, "a/b"))) == (common.PORT, "a/b")


def test_an_empty_changelog_replays_into_an_empty_snapshot_and_a_halt_is_none() -> None:
    bus = MemoryBus({"cl": 2})
    assert replay(bus.source("r"), "cl", 2, Snapshot()) == 0
    bus.sink().send(Envelope("cl", record_key((common.SUBNET, "s")), b""))
    halted: Callable[[], bool] = lambda: True  # noqa: E731
    assert replay(bus.source("r"), "cl", 2, Snapshot(), halted) is None
