"""The scale path's arithmetic: host ranges over simulator processes, follow sets, the region
fan-out (which partitions a region of real hosts would fetch, and their bytes), the one
function that reads a reply-topic record."""

from __future__ import annotations

import gc
from collections import Counter

import pytest

import gs_bench.measure
from gs_bench.measure import ReplyCollector, ack_samples, readers, region_fetch_bytes
from gs_bench.scenarios import Storm, host_ids, host_ranges
from gsmq import wire
from gsmq.kafka import KafkaSettings
from gsmq.partition import partition_for
from gsmq.v1 import ack_pb2


def test_host_ranges_are_contiguous_near_equal_and_cover_every_host() -> None:
    assert host_ranges(10, "10.1.0.1", 3) == [(4, "10.1.0.1"), (3, "10.1.0.5"), (3, "10.1.0.8")]
    assert host_ranges(5, "10.1.0.250", 1) == [(5, "10.1.0.250")]
    assert host_ranges(2, "10.1.0.1", 8) == [(1, "10.1.0.1"), (1, "10.1.0.2")]  # never an empty simulator
    assert host_ranges(3, "10.1.0.1", 0) == [(3, "10.1.0.1")]
    for count, parts in ((1000, 2), (70_003, 7), (17, 16)):  # 70,003 hosts from 10.1.0.1 cross the second octet
        ranges = host_ranges(count, "10.1.0.1", parts)
        assert sum(n for n, _ in ranges) == count and max(n for n, _ in ranges) - min(n for n, _ in ranges) <= 1
        assert [h for n, first in ranges for h in host_ids(n, first)] == host_ids(count)  # crosses octets in order


def test_follows_names_the_vpcs_where_a_host_has_a_port() -> None:
    storm = Storm(6, vpcs=2, ports=3)  # ports 0 and 2 in vpc-0 (hosts .1, .3), port 1 in vpc-1 (host .2)
    assert storm.follows() == {"10.1.0.1": ["vpc-0"], "10.1.0.3": ["vpc-0"], "10.1.0.2": ["vpc-1"]}
    assert {storm.port(i).host for i in range(3)} == set(storm.follows())
    full = Storm(7, vpcs=3, ports=30)
    assert sorted(full.follows()) == sorted(full.host_list) and all(len(v) == 1 for v in full.follows().values())
    assert Storm(4, vpcs=1, ports=0).follows() == {}


def test_readers_count_each_partition_once_per_host_that_fetches_it() -> None:
    hosts = host_ids(50)
    follows = {h: ["vpc-a", "vpc-b"] if i % 2 else ["vpc-a"] for i, h in enumerate(hosts)}
    got = readers(hosts, follows, unicast=("u", 4), multicast=("m", 3))
    want: Counter[tuple[str, int]] = Counter()
    for h in hosts:
        want[("u", partition_for(h, 4))] += 1
        want.update({("m", partition_for(v, 3)) for v in follows[h]})  # two VPCs on one partition: fetched once
    assert got == want
    assert sum(n for (t, _), n in got.items() if t == "u") == 50  # every host reads exactly one unicast partition
    assert got[("m", partition_for("vpc-a", 3))] == 50
    per_host = readers(hosts[:3], {}, unicast=None, multicast=("m", 3), host_topic="p.host.{}")
    assert per_host == Counter({("p.host.10.1.0.1", 0): 1, ("p.host.10.1.0.2", 0): 1, ("p.host.10.1.0.3", 0): 1})


def test_region_fetch_is_each_partitions_bytes_times_its_readers() -> None:
    sizes = {("u", 0): 1000, ("u", 1): 10, ("m", 0): 500, ("m", 1): 0}
    fetched_by = Counter({("u", 0): 3, ("u", 1): 2, ("m", 0): 5, ("x", 9): 7})  # a partition without bytes adds nothing
    assert region_fetch_bytes(sizes, fetched_by) == 3 * 1000 + 2 * 10 + 5 * 500
    assert region_fetch_bytes(sizes, Counter()) == 0
    # a region of 1,000 hosts on 4 unicast partitions, each in one 100-host VPC on its own multicast partition:
    hosts = host_ids(1000)
    follows = {h: [f"vpc-{i % 10}"] for i, h in enumerate(hosts)}
    counts = readers(hosts, follows, unicast=("u", 4), multicast=("m", 64))
    sizes = {**{("u", p): 100 for p in range(4)}, **{("m", p): 10 for p in range(64)}}
    assert region_fetch_bytes(sizes, counts) == 1000 * 100 + 1000 * 10  # every host: one unicast + one multicast partition


def test_ack_samples_reads_acks_only() -> None:
    assert ack_samples({wire.MSG_TYPE: b"marker"}, b"") is None  # the DPM's start-up markers are not acks
    ack = ack_pb2.Ack(host_id="10.1.0.9").SerializeToString()
    assert ack_samples({wire.MSG_TYPE: b"GoalStateOperationReply"}, ack) is None  # typed as anything else: not an ack
    assert ack_samples({}, b"") is None  # no host: the DPM refuses it too
    assert ack_samples({}, ack) == ("10.1.0.9", 0, [])  # an agent's ack has no headers


def test_ack_samples_reads_a_progress_ack_as_one_sample_per_covered_message() -> None:
    ack = ack_pb2.Ack(host_id="10.1.0.9")
    ack.timing.last_applied_ns = 10_000_000
    ack.timing.elapse_buckets.update({0: 1, 80: 2})  # below 1 us; 2^10 us = 1.024 ms
    read = ack_samples({wire.MSG_TYPE: b"Ack", wire.HOST_ID: b"10.1.0.9"}, ack.SerializeToString())
    assert read == ("10.1.0.9", 10_000_000, [(0, 1), (1_024_000, 2)])
    assert ack_samples({wire.MSG_TYPE: b"Ack"}, b"\xff\xff") is None  # undecodable


class _Pausable:
    """A consumer's pause and resume, recorded."""

    def __init__(self) -> None:
        self.paused = True

    def pause(self, partitions: object) -> None:
        self.paused = True

    def resume(self, partitions: object) -> None:
        self.paused = False


def test_the_collector_reads_unpaused_with_the_cyclic_garbage_collector_off_then_puts_both_back(monkeypatch: pytest.MonkeyPatch) -> None:
    collector = ReplyCollector.__new__(ReplyCollector)  # no broker: only settle() is under test
    collector._kafka, collector._topic = KafkaSettings("127.0.0.1:1"), "t.reply"
    consumer = _Pausable()
    collector._consumer, collector._partitions = consumer, []  # type: ignore[assignment]
    monkeypatch.setattr(gs_bench.measure, "end_offsets", lambda kafka, topics: {})
    seen: list[tuple[bool, bool]] = []

    def read(timeout: float) -> int:
        seen.append((gc.isenabled(), consumer.paused))
        return 0

    collector._read = read  # type: ignore[method-assign]
    collector._past = lambda ends: True  # type: ignore[method-assign]
    assert gc.isenabled()
    collector.settle(quiet=0.0, deadline=0.0)
    assert seen == [(False, False)] and gc.isenabled() and consumer.paused  # paused again: nothing fetched between reads
