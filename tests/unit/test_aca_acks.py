"""A batch's acks (aca_agent.acks.Progress): each host's results summed up, as a plain
sum over its results would give them; a statuses list shared by many results read once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from aca_agent.acks import Progress, ack_envelope, elapse_bucket
from aca_agent.applier import Applier, Cursor, ResourceStatus, Result
from aca_agent.dataplane import MemoryDataPlane
from alcor.schema import common_pb2 as common
from gsmq import wire
from gsmq.v1 import ack_pb2

HOSTS = ["10.1.0.1", "10.1.0.2", "10.1.0.3"]
VPCS = ["", "vpc-a", "vpc-b"]


def applier() -> Applier:
    """Hosts with watermarks; each follows vpc-a, only the first vpc-b too."""
    a = Applier(MemoryDataPlane(), HOSTS)
    for i, host in enumerate(HOSTS):
        hs = a.hosts[host]
        hs.epoch, hs.applied, hs.seq = "e1", 3 + i, 5 + i
        hs.cursors["vpc-a"] = Cursor(1, 10, 7 + i, "e1", acked=6 + i)
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


@st.composite
def batches(draw: st.DrawFn) -> list[Result]:
    """Results of one batch; several share a statuses list, as a VPC message's followers do."""
    lists = draw(status_lists)
    return draw(st.lists(st.builds(
        Result, st.sampled_from(HOSTS), st.sampled_from(lists), st.integers(0, 10**6), st.integers(0, 2**62),
        st.booleans(), st.sampled_from(VPCS), st.integers(0, 100), st.none() | st.integers(0, 10**7),
        st.sampled_from([(), (), ("vpc-a",), ("vpc-a", "vpc-b")])), max_size=12))


# No deadline (a timing claim); no example database left in the work tree.
EXAMPLES = settings(deadline=None, database=None)


@EXAMPLES
@given(batches())
def test_a_hosts_ack_sums_its_results_up(results: list[Result]) -> None:
    a, progress = applier(), Progress()
    for r in results:
        progress.add(r)
    assert len(progress) == len({r.host for r in results})
    assert progress.acks(a) == summed(results, a)
    assert progress.acks(a) == []  # started over


@EXAMPLES
@given(batches())
def test_the_records_carry_the_same_acks_keyed_by_host(results: list[Result]) -> None:
    a, progress, again = applier(), Progress(), Progress()
    for r in results:
        progress.add(r)
        again.add(r)
    records = progress.records(a, "t.reply")
    assert records == [ack_envelope("t.reply", ack) for ack in again.acks(a)]
    for record in records:
        assert record.key == record.headers[wire.HOST_ID] == ack_pb2.Ack.FromString(record.value).host_id
        assert record.headers[wire.MSG_TYPE] == "Ack" and record.topic == "t.reply"


class CountingList(list[ResourceStatus]):
    reads = 0

    def __iter__(self) -> Iterator[ResourceStatus]:
        CountingList.reads += 1
        return super().__iter__()


def test_a_statuses_list_shared_by_many_hosts_is_read_once() -> None:
    hosts = [f"10.2.{i // 256}.{i % 256}" for i in range(300)]
    a = Applier(MemoryDataPlane(), hosts)
    shared = CountingList([ResourceStatus(f"nb-{i}", common.NEIGHBOR, common.CREATE, common.SUCCESS, i, 2 * i) for i in range(50)])
    shared.append(ResourceStatus("nb-x", common.NEIGHBOR, common.CREATE, common.PENDING))
    progress = Progress()
    for host in hosts:
        progress.add(Result(host, shared, 10, 1, False, "vpc-a", 4, 100))
    acks = progress.acks(a)
    assert CountingList.reads == 1
    assert all((ack.timing.resources, ack.timing.max_dataplane_us, ack.timing.max_config_us) == (51, 49, 98) for ack in acks)
    assert all([(f.vpc_id, f.seq, f.resource_id) for f in ack.failures] == [("vpc-a", 4, "nb-x")] for ack in acks)
