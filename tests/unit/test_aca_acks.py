"""A batch's acks (aca_agent.acks.Progress): each host's results summed up, as a plain
sum over its results would give them; a statuses list shared by many results read once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aca_agent.acks import Progress, elapse_bucket
from aca_agent.applier import Applier, Cursor, ResourceStatus, Result
from aca_agent.counters import Counters
from aca_agent.dataplane import MemoryDataPlane
from aca_agent.testing import goal_state, port, security_group, subnet
from alcor.schema import common_pb2 as common
from gsmq import wire
from gsmq.v1 import ack_pb2

HOSTS = ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
VPCS = ["", "vpc-a", "vpc-b"]


def applier() -> Applier:
    """Hosts with watermarks; each follows vpc-a (the last two at the same place), only the
    first vpc-b too."""
    a = Applier(MemoryDataPlane(), HOSTS)
    for i, host in enumerate(HOSTS):
        hs = a.hosts[host]
        hs.epoch, hs.applied, hs.seq = "e1", 3 + i, 5 + i
        hs.cursors["vpc-a"] = Cursor(1, 10, 7 + min(i, 1), "e1", acked=6 + min(i, 1))
        if i == 0:
            hs.cursors["vpc-b"] = Cursor(2, 20, 9, "e2")
    return a


def summed(results: list[Result], a: Applier) -> list[ack_pb2.Ack]:
    """The acks of `results` by their definition (docs/internals.md, "Acknowledgements")."""
    by_host: dict[str, list[Result]] = {}
    for r in results:
        by_host.setdefault(r.host, []).append(r)
    out = []
    for host, rs in by_host.items():
        hs = a.hosts[host]
        ack = ack_pb2.Ack(host_id=host, epoch=hs.epoch or "", unicast_seq=hs.applied, unicast_seen=hs.seq)
        for vpc in sorted({r.vpc for r in rs if r.vpc} | {v for r in rs for v in r.follows}):  # a join or resync moves cursors too
            if (c := hs.cursors.get(vpc)) is not None:
                ack.vpcs.add(vpc_id=vpc, epoch=c.epoch, seq=c.watermark, seen=c.seq)
        for r in rs:
            for s in r.statuses:
                if s.status != common.SUCCESS:
                    ack.failures.add(vpc_id=r.vpc, seq=r.seq, resource_type=s.resource_type, resource_id=s.resource_id,
                                     operation_type=s.operation_type, status=s.status)
        elapses = [r.elapse_us for r in rs if r.elapse_us is not None]
        statuses = [s for r in rs for s in r.statuses]
        ack.timing.CopyFrom(ack_pb2.Timing(
            messages=len(rs), resources=len(statuses), apply_us=sum(r.total_us for r in rs),
            max_dataplane_us=max((s.dataplane_us for s in statuses), default=0),
            max_config_us=max((s.config_us for s in statuses), default=0),
            max_elapse_us=max(elapses, default=0), last_applied_ns=max(r.applied_ns for r in rs),
            elapse_buckets=Counter(elapse_bucket(e) for e in elapses)))
        out.append(ack)
    return out


status_lists = st.lists(
    st.lists(st.builds(ResourceStatus, st.sampled_from(["p-1", "nb-1", "sg-1"]), st.sampled_from([common.PORT, common.NEIGHBOR]),
                       st.just(common.CREATE), st.sampled_from([common.SUCCESS, common.SUCCESS, common.PENDING, common.FAILURE]),
                       st.integers(0, 5000), st.integers(0, 5000)), max_size=4),
    min_size=1, max_size=4)


Batch = list[tuple[str, list[ResourceStatus], int, int, bool, str, int, int | None, tuple[str, ...]]]


def results(a: Applier, batch: Batch) -> list[Result]:
    return [Result(a.hosts[b[0]], *b[1:]) for b in batch]


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    """The results of one batch, as Result's arguments (host id first); several share a
    statuses list, as a VPC message's followers do, and often their times too, as the
    followers of one shared apply do."""
    lists = draw(status_lists)
    return draw(st.lists(st.tuples(
        st.sampled_from(HOSTS), st.sampled_from(lists), st.sampled_from([7, 900]) | st.integers(0, 10**6),
        st.sampled_from([2**60]) | st.integers(0, 2**62), st.booleans(), st.sampled_from(VPCS), st.integers(0, 100),
        st.none() | st.sampled_from([5000]) | st.integers(0, 10**7), st.sampled_from([(), (), ("vpc-a",), ("vpc-a", "vpc-b")])),
        max_size=12))


# No deadline (a timing claim); no example database left in the work tree.
EXAMPLES = settings(deadline=None, database=None)


@EXAMPLES
@given(batches())
def test_a_hosts_ack_sums_its_results_up(batch: Batch) -> None:
    a, progress = applier(), Progress()
    for r in results(a, batch):
        progress.add(r)
    assert len(progress) == len({host for host, *_ in batch})
    assert progress.acks(a) == summed(results(a, batch), a)
    assert progress.acks(a) == []  # started over


@EXAMPLES
@given(batches())
def test_the_records_carry_the_same_acks_keyed_by_host(batch: Batch) -> None:
    a, progress, again = applier(), Progress(), Progress()
    for r in results(a, batch):
        progress.add(r)
        again.add(r)
    records = progress.records(a)
    by_records = a.counters
    a.counters = Counters()
    acks = again.acks(a)
    assert [ack_pb2.Ack.FromString(value) for _, value in records] == acks  # some are a host's fields + a shared rest
    assert [key for key, _ in records] == [ack.host_id for ack in acks]
    assert by_records == a.counters  # the histograms count every host's ack, shared rest or not


def test_followers_of_one_shared_apply_share_the_rest_of_their_acks() -> None:
    hosts = [f"10.2.0.{i}" for i in range(1, 6)]
    a = Applier(MemoryDataPlane(), hosts)
    for i, host in enumerate(hosts):
        hs = a.hosts[host]
        hs.epoch, hs.applied, hs.seq = "e1", i, i
        hs.cursors["vpc-a"] = Cursor(1, 10, 4, "e1", acked=3 if host == hosts[-1] else -1)  # the last one behind a gap
    shared = [ResourceStatus("nb-1", common.NEIGHBOR, common.CREATE, common.FAILURE, 3, 4)]
    progress = Progress()
    for host in hosts:
        progress.add(Result(a.hosts[host], shared, 10, 2**60, False, "vpc-a", 4, 100))
    acks = [ack_pb2.Ack.FromString(value) for _, value in progress.records(a)]
    assert [(x.host_id, x.unicast_seq, [(v.vpc_id, v.seq, v.seen) for v in x.vpcs]) for x in acks] == \
        [(h, i, [("vpc-a", 3 if h == hosts[-1] else 4, 4)]) for i, h in enumerate(hosts)]
    assert all([(f.resource_id, f.status) for f in x.failures] == [("nb-1", common.FAILURE)] for x in acks)
    assert all((x.timing.messages, x.timing.apply_us, x.timing.last_applied_ns, dict(x.timing.elapse_buckets))
               == (1, 10, 2**60, {elapse_bucket(100): 1}) for x in acks)
    assert a.counters.elapse_buckets == {elapse_bucket(100): len(hosts)} and a.counters.apply_us_sum == 10 * len(hosts)


@EXAMPLES
@given(st.lists(st.tuples(st.sampled_from(["", "e1", "1796470000123-7"]), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
                min_size=1, max_size=4))
def test_the_host_fields_of_a_shared_ack_are_each_hosts_own(marks: list[tuple[str, int, int]]) -> None:
    """Followers of one shared apply: each record is the host's fields, written from the wire
    format, then the rest serialized once; both parse to the ack built field by field."""
    hosts = [f"10.3.{i}.{200 + i}" for i in range(len(marks))]
    a = Applier(MemoryDataPlane(), hosts)
    for host, (epoch, applied, seq) in zip(hosts, marks, strict=True):
        hs = a.hosts[host]
        hs.epoch, hs.applied, hs.seq = epoch or None, applied, seq
        hs.cursors["vpc-a"] = Cursor(1, 10, 4, "e1")
    shared: list[ResourceStatus] = []
    progress, again = Progress(), Progress()
    for host in hosts:
        progress.add(Result(a.hosts[host], shared, 10, 2**60, False, "vpc-a", 4, 100))
        again.add(Result(a.hosts[host], shared, 10, 2**60, False, "vpc-a", 4, 100))
    records = progress.records(a)
    assert [ack_pb2.Ack.FromString(value) for _, value in records] == again.acks(a)
    assert [ack_pb2.Ack.FromString(value).unicast_seen for _, value in records] == [seq for _, _, seq in marks]


class CountingList(list[ResourceStatus]):
    reads = 0

    def __iter__(self) -> Iterator[ResourceStatus]:
        CountingList.reads += 1
        return super().__iter__()


@pytest.mark.source("aca_agent.acks")
def test_a_statuses_list_shared_by_many_hosts_is_read_once() -> None:
    hosts = [f"10.2.{i // 256}.{i % 256}" for i in range(300)]
    a = Applier(MemoryDataPlane(), hosts)
    shared = CountingList([ResourceStatus(f"nb-{i}", common.NEIGHBOR, common.CREATE, common.SUCCESS, i, 2 * i) for i in range(50)])
    shared.append(ResourceStatus("nb-x", common.NEIGHBOR, common.CREATE, common.PENDING))
    progress = Progress()
    for host in hosts:
        progress.add(Result(a.hosts[host], shared, 10, 1, False, "vpc-a", 4, 100))
    acks = progress.acks(a)
    assert CountingList.reads == 1
    assert all((ack.timing.resources, ack.timing.max_dataplane_us, ack.timing.max_config_us) == (51, 49, 98) for ack in acks)
    assert all([(f.vpc_id, f.seq, f.resource_id) for f in ack.failures] == [("vpc-a", 4, "nb-x")] for ack in acks)


def _vpc_message_records(a: Applier, seq: int) -> list[tuple[str, bytes]]:
    """A VPC message of vpc-1 at `seq` applied, and the records of its acks, each checked
    against the ack built field by field."""
    progress, again = Progress(), Progress()
    for r in a.apply_multicast("vpc-1", goal_state(None, security_group(rev=seq)), {wire.SEQ: str(seq), wire.EPOCH: "1.e1"}, 4, seq):
        progress.add(r)
        again.add(r)
    records = progress.records(a)
    assert [ack_pb2.Ack.FromString(value) for _, value in records] == again.acks(a)
    return records


def test_a_shared_acks_host_fields_follow_the_hosts_unicast_messages() -> None:
    """A follower's host fields, kept once built, are built again once a unicast message
    moved its watermark: every record parses to the ack built field by field."""
    hosts = ["10.4.0.1", "10.4.0.2", "10.4.0.3"]
    a = Applier(MemoryDataPlane(), hosts)
    follow = {wire.FOLLOW: "vpc-1=4:0:0", wire.EPOCH: "1.e1"}
    for seq in (1, 2):
        for host in hosts:
            a.apply_unicast(host, goal_state(host, subnet(), port(f"port-{host}-{seq}")), {**follow, wire.SEQ: str(seq)})
        records = _vpc_message_records(a, seq)
        assert [(ack_pb2.Ack.FromString(value).unicast_seq, [v.seq for v in ack_pb2.Ack.FromString(value).vpcs])
                for _, value in records] == [(seq, [seq])] * len(hosts)


def test_followers_of_a_vpc_message_at_different_watermarks_each_ack_their_own() -> None:
    """A VPC message applied for followers in step and for one behind a gap: the records
    share a rest only among hosts whose cursors agree, so each ack is the host's own."""
    hosts = ["10.5.0.1", "10.5.0.2", "10.5.0.3", "10.5.0.4", "10.5.0.5"]
    a = Applier(MemoryDataPlane(), hosts)
    for host in hosts:
        joined = {wire.FOLLOW: "vpc-1=4:0:0", wire.EPOCH: "1.e1", wire.SEQ: "1"}
        a.apply_unicast(host, goal_state(host, subnet(), port(f"port-{host}")), joined)
    a.hosts[hosts[3]].cursors["vpc-1"] = Cursor(4, 0, 1, "1.e1", acked=0)  # behind a gap of its own
    marks: dict[str, list[tuple[int, int]]] = {}
    for seq in (1, 2):
        records = _vpc_message_records(a, seq)
        marks = {key: [(v.seq, v.seen) for v in ack_pb2.Ack.FromString(value).vpcs] for key, value in records}
        assert marks == {h: [(a.hosts[h].cursors["vpc-1"].watermark, a.hosts[h].cursors["vpc-1"].seq)] for h in marks}
    assert marks[hosts[0]] == [(2, 2)] and marks[hosts[3]] == [(0, 2)]
