"""Revisions decide, in the DPM as in an ACA (docs/internals.md, "Statuses an ACA gives"):
an older state or an older DELETE never replaces a newer state, neither in the snapshot
nor when inputs are coalesced into one batch; otherwise the snapshot (source of every
resync) and the agents drift apart, and callers are told SUCCESS for states never sent."""

from __future__ import annotations

from typing import Any

from test_dpm_engine_agents import Cluster, statuses

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp
from dpm_server.inputs import Input, merge
from dpm_server.snapshot import Snapshot
from dpm_server.testing import goal, port, port_goal, published, subnet_goal

A, B = "10.0.0.1", "10.0.0.2"
PORT = (common.PORT, "p0")


def with_port(rev: int) -> Snapshot:
    snap = Snapshot()
    snap.apply(subnet_goal("vpc-1", [A, B]))
    snap.apply(port_goal("p0", "vpc-1", A, "10.1.0.1", [A, B], rev=rev))
    return snap


def test_an_older_delete_leaves_the_newer_state_and_the_hosts_vpc() -> None:
    snap = with_port(rev=5)
    view = snap.view(A, "vpc-multicast")
    change = snap.apply(port_goal("p0", "vpc-1", A, "10.1.0.1", [A, B], rev=3, op=common.DELETE))
    assert snap.resources[PORT].state.configuration.revision_number == 5
    assert snap.view(A, "vpc-multicast") == view and snap.host_vpcs(A) == {"vpc-1"} and not change.left
    assert snap.routable(A, "10.1.0.1") and (common.NEIGHBOR, "nb-p0") in snap.listed[B]


def test_a_delete_of_the_same_newer_or_zero_revision_deletes() -> None:
    for rev in (5, 6, 0):
        snap = with_port(rev=5)
        snap.apply(goal([port("p0", "vpc-1", A, "10.1.0.1", rev=rev, op=common.DELETE)], {A: ["p0"]}))
        assert PORT not in snap.resources and snap.host_vpcs(A) == set(), rev


def test_a_refused_delete_does_not_give_the_resource_to_hosts_that_lacked_it() -> None:
    snap = with_port(rev=5)
    snap.apply(goal([port("p0", "vpc-1", A, "10.1.0.1", rev=3, op=common.DELETE)], {A: ["p0"], B: ["p0"]}))
    assert PORT in snap.listed[A] and PORT not in snap.listed[B] and snap.host_vpcs(B) == set()


def test_agents_refuse_an_older_delete_and_keep_matching_the_snapshot() -> None:
    cluster = Cluster("vpc-multicast", hosts=[A, B])
    cluster.eng.submit(subnet_goal("vpc-1", [A, B]), lambda r: None)
    cluster.eng.submit(port_goal("p0", "vpc-1", A, "10.1.0.1", [A, B], rev=5), lambda r: None)
    cluster.settle()
    replies: list[gsp.GoalStateOperationReply] = []
    cluster.eng.submit(port_goal("p0", "vpc-1", A, "10.1.0.1", [A, B], rev=3, op=common.DELETE), replies.append)
    cluster.settle()
    (reply,) = replies
    assert statuses(reply)["p0"] == common.OUT_OF_ORDER  # what A's agent answered
    assert cluster.agent_tables(A)["PORT"] == {"p0": 5}
    cluster.assert_converged()
    cluster.add_agent(A)  # a restart: the resync must give the port back, not wipe it
    cluster.settle()
    assert cluster.agent_tables(A)["PORT"] == {"p0": 5}


def test_merge_keeps_the_newest_revision_whatever_the_order() -> None:
    newer = goal([port("p0", "vpc-1", A, "10.1.0.3", rev=3)], {A: ["p0"]})
    older = goal([port("p0", "vpc-1", A, "10.1.0.2", rev=2)], {A: ["p0"]})
    def p0(*goals: gs.GoalStateV2) -> Any:
        return merge([Input.of(g) for g in goals]).states[(common.PORT, "p0")]

    assert p0(newer, older).configuration.revision_number == 3
    assert p0(older, newer).configuration.revision_number == 3
    same = goal([port("p0", "vpc-1", A, "10.1.0.9", rev=3)], {A: ["p0"]})
    assert p0(newer, same).configuration.fixed_ips[0].ip_address == "10.1.0.9"  # later wins a tie
    delete0 = goal([port("p0", "vpc-1", A, "10.1.0.3", rev=0, op=common.DELETE)], {A: ["p0"]})
    assert p0(newer, delete0).operation_type == common.DELETE  # revision 0: unconditional


def test_a_coalesced_older_state_is_out_of_order_for_its_caller_and_never_sent() -> None:
    cluster = Cluster("vpc-multicast", hosts=[A])
    cluster.eng.submit(subnet_goal("vpc-1", [A]), lambda r: None)
    cluster.eng.submit(port_goal("p0", "vpc-1", A, "10.1.0.1", [A], rev=1), lambda r: None)
    cluster.settle()
    got: dict[str, gsp.GoalStateOperationReply] = {}
    newer = port_goal("p0", "vpc-1", A, "10.1.0.1", [A], rev=3, op=common.UPDATE)
    older = port_goal("p0", "vpc-1", A, "10.1.0.1", [A], rev=2, op=common.UPDATE)  # a late copy, in the same batch
    seen = {(m.topic, m.partition, m.offset) for m in published(cluster.bus)}
    cluster.eng.submit_many([(newer, lambda r: got.__setitem__("newer", r)), (older, lambda r: got.__setitem__("older", r))])
    cluster.settle()
    sent = [gs.GoalStateV2.FromString(m.value) for m in published(cluster.bus) if (m.topic, m.partition, m.offset) not in seen]
    assert [m.port_states["p0"].configuration.revision_number for m in sent if "p0" in m.port_states] == [3]
    assert statuses(got["newer"])["p0"] == common.SUCCESS
    assert statuses(got["older"])["p0"] == common.OUT_OF_ORDER
    assert cluster.eng.snapshot.resources[PORT].state.configuration.revision_number == 3
    assert cluster.agent_tables(A)["PORT"] == {"p0": 3}
