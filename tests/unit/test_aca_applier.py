"""The ACA's semantics (aca_agent.applier) on an in-memory data plane: statuses,
pending parents, FULL vs DELTA, DELETE, gs-full, following VPCs, sequence gaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from aca_agent.applier import Applier, Cursor, FollowChange, follow_cursors
from aca_agent.dataplane import MemoryDataPlane
from aca_agent.testing import Item, dhcp, goal_state, listed, neighbor, port, security_group, subnet, vpc
from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from gsmq import wire

H1, H2, H3 = "10.1.0.1", "10.1.0.2", "10.1.0.3"


@pytest.fixture
def applier() -> Applier:
    return Applier(MemoryDataPlane(), [H1, H2])


def statuses(result: object) -> dict[str, int]:
    assert result is not None
    return {s.resource_id: s.status for s in result.statuses}  # type: ignore[attr-defined]


def table(applier: Applier, host: str, rtype: int) -> dict[str, int]:
    """id -> revision of the host's table of `rtype`."""
    return {rid: s.configuration.revision_number for rid, s in applier.table(host, rtype).items()}


def test_new_resources_are_applied_and_counted_as_flows(applier: Applier) -> None:
    result = applier.apply_unicast(H1, goal_state(H1, vpc(), subnet(), port(), security_group(rules=3), dhcp()), {})
    assert statuses(result) == {"vpc-1": 0, "sn-1": 0, "port-1": 0, "sg-1": 0, "dhcp-1": 0}
    assert table(applier, H1, common.PORT) == {"port-1": 1}
    assert applier.dataplane.flows(H1) == 1 + 1 + 3 + 1  # subnet, port, 3 rules, dhcp
    assert applier.dataplane.flows(H2) == 0
    assert applier.counters.messages_applied == 1


def test_same_revision_is_a_counted_duplicate_and_older_is_out_of_order(applier: Applier) -> None:
    applier.apply_unicast(H1, goal_state(H1, subnet(), port(rev=5)), {})
    dup = applier.apply_unicast(H1, goal_state(H1, port(rev=5)), {})
    assert statuses(dup) == {"port-1": common.SUCCESS}
    assert applier.counters.duplicates == 1
    old = applier.apply_unicast(H1, goal_state(H1, port(rev=4)), {})
    assert statuses(old) == {"port-1": common.OUT_OF_ORDER}
    assert applier.counters.out_of_order == 1
    newer = applier.apply_unicast(H1, goal_state(H1, port(rev=6)), {})
    assert statuses(newer) == {"port-1": common.SUCCESS}
    assert table(applier, H1, common.PORT) == {"port-1": 6}


@pytest.mark.parametrize("child", [port("c-1", "sn-9"), dhcp("c-1", "sn-9"), neighbor("c-1", H3, "sn-9")])
def test_missing_parent_is_pending_then_applied_with_the_parent(applier: Applier, child: Item) -> None:
    first = applier.apply_unicast(H1, goal_state(H1, port("anchor", "sn-1"), subnet("sn-1"), child), {})
    assert statuses(first)["c-1"] == common.PENDING
    assert "c-1" not in applier.dataplane.table(H1, child[0])
    assert applier.pending_count() == 1
    again = applier.apply_unicast(H1, goal_state(H1, child), {})  # still no parent
    assert statuses(again) == {"c-1": common.PENDING}
    parent = applier.apply_unicast(H1, goal_state(H1, subnet("sn-9")), {})
    assert statuses(parent) == {"sn-9": common.SUCCESS, "c-1": common.SUCCESS}  # reported with the parent
    assert "c-1" in applier.dataplane.table(H1, child[0])
    assert applier.pending_count() == 0


def test_parent_in_the_same_message_is_applied_first(applier: Applier) -> None:
    result = applier.apply_unicast(H1, goal_state(H1, dhcp(), port(), subnet()), {})
    assert set(statuses(result).values()) == {common.SUCCESS}


def test_delete_removes_and_delete_of_unknown_succeeds(applier: Applier) -> None:
    applier.apply_unicast(H1, goal_state(H1, subnet(), port(rev=3), dhcp(rev=2)), {})
    stale = applier.apply_unicast(H1, goal_state(H1, port(rev=2, op=common.DELETE)), {})
    assert statuses(stale) == {"port-1": common.OUT_OF_ORDER}
    assert "port-1" in applier.dataplane.table(H1, common.PORT)
    gone = applier.apply_unicast(H1, goal_state(H1, port(rev=4, op=common.DELETE), dhcp("nope", op=common.DELETE)), {})
    assert statuses(gone) == {"port-1": common.SUCCESS, "nope": common.SUCCESS}
    assert table(applier, H1, common.PORT) == {}
    assert table(applier, H1, common.DHCP) == {"dhcp-1": 2}


def test_delete_of_a_pending_resource_drops_it(applier: Applier) -> None:
    applier.apply_unicast(H1, goal_state(H1, port(subnet_id="sn-9")), {})
    assert applier.pending_count() == 1
    applier.apply_unicast(H1, goal_state(H1, port(subnet_id="sn-9", rev=2, op=common.DELETE)), {})
    assert applier.pending_count() == 0
    assert statuses(applier.apply_unicast(H1, goal_state(H1, subnet("sn-9")), {})) == {"sn-9": common.SUCCESS}
    assert table(applier, H1, common.PORT) == {}


def test_missing_configuration_empty_id_or_unlisted_state_is_invalid(applier: Applier) -> None:
    goal = goal_state(H1, subnet())
    goal.port_states["bare"].operation_type = common.CREATE  # no configuration
    goal.host_resources[H1].resources.add(type=common.PORT, id="bare")
    goal.dhcp_states["noid"].configuration.revision_number = 1  # configuration without id
    goal.host_resources[H1].resources.add(type=common.DHCP, id="noid")
    goal.host_resources[H1].resources.add(type=common.ROUTER, id="absent")  # listed, not carried
    result = applier.apply_unicast(H1, goal, {})
    assert statuses(result) == {"sn-1": 0, "bare": common.INVALID_ARG, "noid": common.INVALID_ARG, "absent": common.INVALID_ARG}
    assert table(applier, H1, common.PORT) == {} and table(applier, H1, common.DHCP) == {}


def test_full_update_replaces_that_type_only(applier: Applier) -> None:
    applier.apply_unicast(H1, goal_state(H1, subnet("sn-1"), subnet("sn-2"), port("p-1"), port("p-2")), {})
    delta = applier.apply_unicast(H1, goal_state(H1, port("p-3")), {})
    assert statuses(delta) == {"p-3": 0}
    assert set(table(applier, H1, common.PORT)) == {"p-1", "p-2", "p-3"}
    applier.apply_unicast(H1, goal_state(H1, port("p-2", full=True), port("p-4", full=True)), {})
    assert set(table(applier, H1, common.PORT)) == {"p-2", "p-4"}
    assert set(table(applier, H1, common.SUBNET)) == {"sn-1", "sn-2"}


def test_gs_full_header_replaces_every_table(applier: Applier) -> None:
    items = (vpc(), subnet("sn-1"), subnet("sn-2"), port("p-1"), dhcp("d-1"), port("p-9", "sn-missing"))
    applier.apply_unicast(H1, goal_state(H1, *items), {})
    assert applier.pending_count() == 1
    result = applier.apply_unicast(H1, goal_state(H1, subnet("sn-2"), port("p-2", "sn-2")), {wire.FULL: "1", wire.EPOCH: "1.e1"})
    assert statuses(result) == {"sn-2": common.SUCCESS, "p-2": common.SUCCESS}
    assert set(table(applier, H1, common.SUBNET)) == {"sn-2"}
    assert set(table(applier, H1, common.PORT)) == {"p-2"}
    assert table(applier, H1, common.DHCP) == {} and table(applier, H1, common.VPC) == {}
    assert applier.pending_count() == 0


@pytest.mark.parametrize("epoch", [None, "", "e1", "0.e1", "1.", "x.1", "1"])
def test_a_full_state_without_a_dpm_incarnation_is_refused_and_nothing_applied(applier: Applier, epoch: str | None) -> None:
    applier.apply_unicast(H1, goal_state(H1, subnet(), port("p-1")), {wire.SEQ: "1", wire.EPOCH: "1.e1"})
    headers = {wire.FULL: "1", wire.SEQ: "2", **({wire.EPOCH: epoch} if epoch is not None else {})}
    with pytest.raises(wire.HeaderError, match="without a DPM incarnation"):
        applier.apply_unicast(H1, gs.GoalStateV2(), headers)  # empty: it would wipe the host
    assert set(table(applier, H1, common.PORT)) == {"p-1"} and set(table(applier, H1, common.SUBNET)) == {"sn-1"}


def test_a_full_state_from_an_older_incarnation_is_refused_a_newer_one_replaces(applier: Applier) -> None:
    applier.apply_unicast(H1, goal_state(H1, subnet(), port("p-1")), {wire.SEQ: "1", wire.EPOCH: "3.c"})
    with pytest.raises(wire.HeaderError, match="incarnation 2 is refused"):
        applier.apply_unicast(H1, gs.GoalStateV2(), {wire.FULL: "1", wire.SEQ: "9", wire.EPOCH: "2.b"})
    assert set(table(applier, H1, common.PORT)) == {"p-1"}
    applier.apply_unicast(H1, goal_state(H1, subnet(), port("p-2")), {wire.FULL: "1", wire.SEQ: "1", wire.EPOCH: "4.d"})
    assert set(table(applier, H1, common.PORT)) == {"p-2"} and applier.hosts[H1].incarnation == 4
    applier.apply_unicast(H1, goal_state(H1, subnet(), port("p-3")), {wire.FULL: "1", wire.SEQ: "2", wire.EPOCH: "4.d"})  # the same one
    assert set(table(applier, H1, common.PORT)) == {"p-3"}


def test_first_port_follows_the_vpc_with_the_gs_follow_cursor(applier: Applier) -> None:
    headers = {wire.FOLLOW: "vpc-1=3:120:7,vpc-x=1:5:1", wire.EPOCH: "1.e1"}
    applier.apply_unicast(H1, goal_state(H1, subnet(), port()), headers)
    assert {vpc: set(hosts) for vpc, hosts in applier.followers.items()} == {"vpc-1": {H1}}
    assert applier.take_follow_changes() == [FollowChange(H1, "vpc-1", True, Cursor(3, 120, 7, "1.e1"))]
    applier.apply_unicast(H1, goal_state(H1, port("port-2")), {})  # second port: no change
    assert applier.take_follow_changes() == []


def test_last_port_leaving_unfollows_and_drops_the_vpcs_shared_states(applier: Applier) -> None:
    applier.apply_unicast(
        H1,
        goal_state(
            H1,
            subnet("sn-1", "vpc-1"), port("p-1", "sn-1", "vpc-1"), port("p-2", "sn-1", "vpc-1"),
            security_group("sg-1", "vpc-1"), neighbor("nb-1", H2, "sn-1", "vpc-1"),
            subnet("sn-2", "vpc-2"), port("p-3", "sn-2", "vpc-2"), neighbor("nb-2", H2, "sn-2", "vpc-2"),
        ),
        {wire.FOLLOW: "vpc-1=0:0:0,vpc-2=1:0:0"},
    )
    assert applier.followed(H1) == {"vpc-1", "vpc-2"}
    applier.take_follow_changes()
    applier.apply_unicast(H1, goal_state(H1, port("p-1", "sn-1", "vpc-1", rev=2, op=common.DELETE)), {})
    assert applier.followed(H1) == {"vpc-1", "vpc-2"}  # p-2 still there
    applier.apply_unicast(H1, goal_state(H1, port("p-2", "sn-1", "vpc-1", rev=2, op=common.DELETE)), {})
    assert applier.followed(H1) == {"vpc-2"}
    assert applier.take_follow_changes() == [FollowChange(H1, "vpc-1", False)]
    assert set(table(applier, H1, common.SUBNET)) == {"sn-2"}
    assert set(table(applier, H1, common.NEIGHBOR)) == {"nb-2"}
    assert table(applier, H1, common.SECURITYGROUP) == {}
    assert {vpc: set(hosts) for vpc, hosts in applier.followers.items()} == {"vpc-2": {H1}}


def test_a_pending_port_is_enough_to_follow(applier: Applier) -> None:
    applier.apply_unicast(H1, goal_state(H1, port(subnet_id="sn-later")), {wire.FOLLOW: "vpc-1=2:0:0"})
    assert applier.followed(H1) == {"vpc-1"}
    assert {vpc: set(hosts) for vpc, hosts in applier.followers.items()} == {"vpc-1": {H1}}


def _follow(applier: Applier, host: str, follow: str) -> None:
    applier.apply_unicast(host, goal_state(host, subnet(), port(f"port-{host}")), {wire.FOLLOW: follow, wire.EPOCH: "1.e1"})


def test_multicast_applies_to_followers_except_their_own_neighbors() -> None:
    applier = Applier(MemoryDataPlane(), [H1, H2, H3])
    _follow(applier, H1, "vpc-1=4:10:2")
    _follow(applier, H2, "vpc-1=4:10:2")
    message = goal_state(None, neighbor("nb-h1", H1), neighbor("nb-h2", H2), security_group())
    results = applier.apply_multicast("vpc-1", message, {wire.SEQ: "3", wire.EPOCH: "1.e1"}, partition=4, offset=11)
    by_host = {r.host: statuses(r) for r in results}
    assert by_host == {H1: {"nb-h2": 0, "sg-1": 0}, H2: {"nb-h1": 0, "sg-1": 0}}  # H3 does not follow vpc-1
    assert set(table(applier, H1, common.NEIGHBOR)) == {"nb-h2"}
    assert table(applier, H3, common.SECURITYGROUP) == {}
    assert applier.apply_multicast("vpc-9", message, {}, partition=4, offset=12) == []


def test_multicast_before_the_cursor_or_already_applied_is_skipped(applier: Applier) -> None:
    _follow(applier, H1, "vpc-1=4:10:2")
    message = goal_state(None, security_group(rev=1))
    assert applier.apply_multicast("vpc-1", message, {wire.SEQ: "3", wire.EPOCH: "1.e1"}, partition=4, offset=9) == []  # offset < O
    assert applier.apply_multicast("vpc-1", message, {wire.SEQ: "2", wire.EPOCH: "1.e1"}, partition=4, offset=10) == []  # seq <= S
    applied = applier.apply_multicast("vpc-1", message, {wire.SEQ: "3", wire.EPOCH: "1.e1"}, partition=4, offset=10)
    assert [r.resync for r in applied] == [False]
    assert applier.apply_multicast("vpc-1", message, {wire.SEQ: "3", wire.EPOCH: "1.e1"}, partition=4, offset=10) == []  # again
    gap = applier.apply_multicast("vpc-1", goal_state(None, security_group(rev=2)), {wire.SEQ: "5", wire.EPOCH: "1.e1"}, 4, 12)
    assert [r.resync for r in gap] == [True]
    assert table(applier, H1, common.SECURITYGROUP) == {"sg-1": 2}


def test_a_vpc_message_moves_each_followers_cursor_in_place() -> None:
    applier = Applier(MemoryDataPlane(), [H1, H2])
    _follow(applier, H1, "vpc-1=4:10:2")
    _follow(applier, H2, "vpc-1=4:10:2")
    before = {h: applier.hosts[h].cursors["vpc-1"] for h in (H1, H2)}
    results = applier.apply_multicast("vpc-1", goal_state(None, security_group()), {wire.SEQ: "4", wire.EPOCH: "1.e2"}, 4, 11)
    for r in results:  # the same object, moved: a region's cursors are not made anew per message
        assert r.cursor is before[r.host] is applier.hosts[r.host].cursors["vpc-1"]
        assert r.cursor == Cursor(4, 10, 4, "1.e2", acked=0)  # a new incarnation's seq 4 after 2: a gap, nothing acked
    assert before[H1] is not before[H2]


def test_unicast_sequence_gap_asks_for_resync(applier: Applier) -> None:
    def send(seq: int, epoch: str = "1.e1", **extra: str) -> bool:
        result = applier.apply_unicast(H1, goal_state(H1, subnet(rev=seq)), {wire.SEQ: str(seq), wire.EPOCH: epoch, **extra})
        assert result is not None
        return result.resync

    assert [send(1), send(2), send(3)] == [False, False, False]
    assert send(5) is True
    assert send(6) is False
    assert send(6) is False  # a repeat is no gap
    assert send(1, epoch="2.e2") is False  # a new DPM epoch restarts sequences
    assert send(7, epoch="2.e2", **{wire.FULL: "1"}) is False  # a resync answer is no gap
    assert send(9, epoch="2.e2") is True
    other = applier.apply_unicast(H2, goal_state(H2, subnet()), {wire.SEQ: "40", wire.EPOCH: "1.e1"})  # per host
    assert other is not None and other.resync is False


def test_other_hosts_are_not_applied(applier: Applier) -> None:
    assert applier.apply_unicast(H3, goal_state(H3, subnet()), {}) is None
    assert applier.apply_direct(gs.GoalStateV2()) == []
    goal = goal_state(H1, subnet(), port())
    goal.host_resources[H3].resources.add(type=common.SUBNET, id="sn-1")
    assert [r.host for r in applier.apply_direct(goal)] == [H1]
    assert table(applier, H2, common.SUBNET) == {}


def test_unicast_lists_only_what_host_resources_names_for_the_host(applier: Applier) -> None:
    goal = goal_state(H1, subnet())
    goal.port_states["not-listed"].CopyFrom(port("not-listed")[2])
    assert statuses(applier.apply_unicast(H1, goal, {})) == {"sn-1": 0}
    assert table(applier, H1, common.PORT) == {}


def test_host_state_and_the_shared_vector(applier: Applier, vectors_dir: Path) -> None:
    goal = gs.GoalStateV2.FromString((vectors_dir / "goalstatev2_small.bin").read_bytes())
    host = "192.168.0.11"
    served = Applier(MemoryDataPlane(), [host])
    result = served.apply_unicast(host, goal, {})
    assert result is not None and {s.status for s in result.statuses} == {common.SUCCESS}
    assert len(result.statuses) == len(goal.host_resources[host].resources)
    state = served.host_state(host)
    assert listed(state, host) == listed(goal, host)
    assert state.port_states["port-7-2"] == goal.port_states["port-7-2"]


def test_follow_cursors_carry_the_epoch() -> None:
    assert follow_cursors({wire.FOLLOW: "a=1:2:3,c=4:5:6", wire.EPOCH: "e"}) == {"a": Cursor(1, 2, 3, "e"), "c": Cursor(4, 5, 6, "e")}
    assert follow_cursors({}) == {}


@pytest.mark.parametrize("headers", [
    {wire.FOLLOW: "vpc-1=1:2:3,vpc-2=bad"},
    {wire.FOLLOW: f"vpc-1=1:{2**63}:3"},
    {wire.SEQ: "\u00b2"},
    {wire.SEQ: "abc"},
    {wire.SENT_NS: "-5"},
])
def test_a_malformed_number_header_refuses_the_message_and_applies_nothing(applier: Applier, headers: dict[str, str]) -> None:
    with pytest.raises(wire.HeaderError):
        applier.apply_unicast(H1, goal_state(H1, subnet(), port()), headers)
    assert table(applier, H1, common.PORT) == {} and applier.hosts[H1].seq == 0 and not applier.take_follow_changes()
    if wire.FOLLOW in headers:
        return  # a multicast message joins nothing: gs-follow is read on unicast only
    _follow(applier, H1, "vpc-1=3:120:7")
    before = table(applier, H1, common.SECURITYGROUP)
    with pytest.raises(wire.HeaderError):
        applier.apply_multicast("vpc-1", goal_state(None, security_group()), {wire.EPOCH: "1.e1", wire.SEQ: "8", **headers}, 3, 130)
    assert table(applier, H1, common.SECURITYGROUP) == before and applier.hosts[H1].cursors["vpc-1"].seq == 7


def test_the_same_revision_with_other_content_is_refused_and_the_held_state_stays(applier: Applier) -> None:
    applier.apply_unicast(H1, goal_state(H1, subnet(), port()), {})
    again = port()
    again[2].configuration.mac_address = "aa:bb:cc:dd:ee:ff"
    result = applier.apply_unicast(H1, goal_state(H1, again), {})
    assert statuses(result) == {"port-1": common.INVALID_ARG}
    assert applier.dataplane.table(H1, common.PORT)["port-1"] == port()[2]
    assert statuses(applier.apply_unicast(H1, goal_state(H1, port()), {})) == {"port-1": common.SUCCESS}  # the same: a duplicate
    assert applier.counters.conflicts == 1 and applier.counters.duplicates == 1


def test_a_resync_moves_the_cursor_of_a_vpc_already_followed(applier: Applier) -> None:
    _follow(applier, H1, "vpc-1=3:120:7")
    applier.take_follow_changes()
    full = {wire.FULL: "1", wire.FOLLOW: "vpc-1=3:100:5", wire.EPOCH: "1.e1"}
    applier.apply_unicast(H1, goal_state(H1, subnet(), port(f"port-{H1}")), full)
    assert applier.take_follow_changes() == [FollowChange(H1, "vpc-1", True, Cursor(3, 100, 5, "1.e1"))]
    again = applier.apply_multicast("vpc-1", goal_state(None, security_group()), {wire.SEQ: "6", wire.EPOCH: "1.e1"}, 3, 100)
    assert [r.host for r in again] == [H1]


def test_a_stale_gs_follow_on_a_later_message_keeps_the_cursor(applier: Applier) -> None:
    _follow(applier, H1, "vpc-1=3:120:7")
    applier.apply_multicast("vpc-1", goal_state(None, security_group()), {wire.SEQ: "8", wire.EPOCH: "1.e1"}, 3, 130)
    applier.take_follow_changes()
    applier.apply_unicast(H1, goal_state(H1, port("port-x")), {wire.FOLLOW: "vpc-1=3:100:5", wire.EPOCH: "1.e1"})
    assert applier.take_follow_changes() == []
    assert applier.hosts[H1].cursors["vpc-1"] == Cursor(3, 120, 8, "1.e1")


# ---- followers of a VPC in one simulator share its tables ------------------------------


class CountingDataPlane(MemoryDataPlane):
    """Counts program/remove calls: the cost of applying."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def program(self, host: str, rtype: int, rid: str, state: object) -> None:
        self.calls += 1
        super().program(host, rtype, rid, state)

    def remove(self, host: str, rtype: int, rid: str) -> bool:
        self.calls += 1
        return super().remove(host, rtype, rid)


def _join(applier: Applier, host: str, seq: int, *items: Item, epoch: str = "1.e1", full: bool = False,
          raw: bool = False) -> dict[str, int]:
    """`host` gets a port in vpc-1 with the VPC's bundle `items` as of VPC position `seq`;
    `raw`: with the message's bytes too, as the consumer gives it (pieces the table knows
    are then taken from it)."""
    headers = {wire.FOLLOW: f"vpc-1=4:0:{seq}", wire.EPOCH: epoch, **({wire.FULL: "1"} if full else {})}
    goal = goal_state(host, *items, port(f"port-{host}"))
    return statuses(applier.apply_unicast(host, goal, headers, goal.SerializeToString() if raw else None))


def _multicast(applier: Applier, seq: int, *items: Item) -> dict[str, dict[str, int]]:
    results = applier.apply_multicast("vpc-1", goal_state(None, *items), {wire.SEQ: str(seq), wire.EPOCH: "1.e1"}, 4, seq)
    return {r.host: statuses(r) for r in results}


def test_a_followed_vpcs_states_in_a_later_unicast_are_passed_over_for_the_tables_newer_ones() -> None:
    """A unicast message without gs-follow may carry a followed VPC's states: the DPM planned it
    before the host joined, and the join (or resync) that made the host follow came from a later
    snapshot. The table's newer states stay, a deletion is not undone, the other followers see
    nothing of it, and the host's own tables take none of it (their states would hide the table's)."""
    applier = Applier(MemoryDataPlane(), [H1, H2])
    for host in (H1, H2):
        _join(applier, host, 0, subnet(), neighbor("nb-1", H3), neighbor("nb-2", H3))
    assert _multicast(applier, 1, neighbor("nb-1", H3, rev=2), neighbor("nb-2", H3, rev=2, op=common.DELETE)) == {
        H1: {"nb-1": common.SUCCESS, "nb-2": common.SUCCESS}, H2: {"nb-1": common.SUCCESS, "nb-2": common.SUCCESS}}
    late = statuses(applier.apply_unicast(H1, goal_state(H1, neighbor("nb-1", H3), neighbor("nb-2", H3)), {}))
    assert late == {"nb-1": common.SUCCESS, "nb-2": common.SUCCESS}
    assert table(applier, H1, common.NEIGHBOR) == table(applier, H2, common.NEIGHBOR) == {"nb-1": 2}
    assert applier.dataplane.table(H1, common.NEIGHBOR) == {}
    assert _multicast(applier, 2, neighbor("nb-1", H3, rev=3)) == {H1: {"nb-1": common.SUCCESS}, H2: {"nb-1": common.SUCCESS}}
    assert table(applier, H1, common.NEIGHBOR) == {"nb-1": 3}


@pytest.mark.parametrize("followers", [1, 10])
def test_a_multicast_is_applied_once_whatever_the_number_of_followers(followers: int) -> None:
    hosts = [f"10.2.0.{i}" for i in range(followers)]
    dp = CountingDataPlane()
    applier = Applier(dp, hosts)
    for host in hosts:
        _join(applier, host, 0, subnet())
    dp.calls = 0
    message = [neighbor(f"nb-{i}", "10.9.9.9") for i in range(20)] + [security_group(rev=2)]
    by_host = _multicast(applier, 1, *message)
    assert dp.calls == 21  # the shared table once, not once per follower
    assert set(by_host) == set(hosts) and all(s == {r: common.SUCCESS for _, r, _ in message} for s in by_host.values())
    assert set(applier.tables) == {"vpc-1"} and applier.tables["vpc-1"].followers == set(hosts)
    first, last = applier.table(hosts[0], common.NEIGHBOR), applier.table(hosts[-1], common.NEIGHBOR)
    assert set(first) == set(last) == {f"nb-{i}" for i in range(20)}
    assert all(first[rid] is last[rid] for rid in first)  # one object holds each state
    assert [r.seq for r in applier.apply_multicast("vpc-1", goal_state(None, *message), {wire.SEQ: "1", wire.EPOCH: "1.e1"}, 4, 1)] == []


def test_every_followers_keys_for_a_vpc_are_one_object_whatever_message_named_it() -> None:
    """VPC ids are interned where they come in: a VPC message's lookups for each follower then
    match by identity, without reading each host's own copy of the id."""
    hosts = [f"10.2.0.{i}" for i in range(5)]
    applier = Applier(MemoryDataPlane(), hosts)
    for host in hosts:  # each join decodes its own copy of "vpc-1" from its headers and its port
        _join(applier, host, 0, subnet())
    fresh = b"vpc-1".decode()  # a copy of its own, not the interned literal
    results = applier.apply_multicast(fresh, goal_state(None, neighbor("nb-1", "10.9.9.9")), {wire.SEQ: "1", wire.EPOCH: "1.e1"}, 4, 1)
    assert {r.host for r in results} == set(hosts)
    keys = [k for hs in applier.hosts.values() for k in (*hs.cursors, *hs.vpc_ports, *hs.shared)]
    assert len(keys) == 3 * len(hosts) and all(k is keys[0] for k in keys)
    assert all(r.vpc is keys[0] for r in results)
    assert len({id(hs.cursors[keys[0]].epoch) for hs in applier.hosts.values()}) == 1


def test_followers_share_a_table_yet_each_host_excludes_its_own_neighbors() -> None:
    applier = Applier(MemoryDataPlane(), [H1, H2, H3])
    for host in (H1, H2, H3):
        _join(applier, host, 0, subnet())
    by_host = _multicast(applier, 1, neighbor("nb-h1", H1), neighbor("nb-h2", H2), neighbor("nb-x", "10.9.9.9"))
    assert by_host == {H1: {"nb-h2": 0, "nb-x": 0}, H2: {"nb-h1": 0, "nb-x": 0}, H3: {"nb-h1": 0, "nb-h2": 0, "nb-x": 0}}
    assert set(applier.dataplane.table("vpc/vpc-1", common.NEIGHBOR)) == {"nb-h1", "nb-h2", "nb-x"}  # held once
    assert set(table(applier, H1, common.NEIGHBOR)) == {"nb-h2", "nb-x"}
    assert set(table(applier, H2, common.NEIGHBOR)) == {"nb-h1", "nb-x"}
    assert set(listed(applier.host_state(H3), H3)) >= {(common.NEIGHBOR, "nb-h1"), (common.NEIGHBOR, "nb-h2")}
    assert (common.NEIGHBOR, "nb-h1") not in listed(applier.host_state(H1), H1)


def test_a_vpc_message_addressed_to_one_follower_moves_that_follower_alone_and_the_table_once() -> None:
    """The gRPC channel sends each member host its own copy (`only`): the first copy applies
    the shared table, the others are bookkeeping, and each acks its own host."""
    dp = CountingDataPlane()
    applier = Applier(dp, [H1, H2, H3])
    for host in (H1, H2, H3):
        _join(applier, host, 0, subnet())
    dp.calls = 0
    message = goal_state(None, neighbor("nb-h1", H1), neighbor("nb-x", "10.9.9.9"))
    headers = {wire.SEQ: "1", wire.EPOCH: "1.e1"}
    first = applier.apply_multicast("vpc-1", message, headers, -1, -1, only=H1)
    assert [(r.host, statuses(r)) for r in first] == [(H1, {"nb-x": 0})] and dp.calls == 2
    assert applier.hosts[H2].cursors["vpc-1"].seq == 0  # not its copy yet
    second = applier.apply_multicast("vpc-1", message, headers, -1, -1, only=H2)
    assert [(r.host, statuses(r)) for r in second] == [(H2, {"nb-h1": 0, "nb-x": 0})] and dp.calls == 2
    assert applier.apply_multicast("vpc-1", message, headers, -1, -1, only=H2) == []  # a copy seen already
    assert applier.apply_multicast("vpc-1", message, headers, -1, -1, only="10.2.9.9") == []  # not a follower
    assert applier.hosts[H3].cursors["vpc-1"].seq == 0 and set(table(applier, H2, common.NEIGHBOR)) == {"nb-h1", "nb-x"}
    # a copy costs O(1) for the message: the statuses the table's apply gave are read again, not rebuilt
    (third,) = applier.apply_multicast("vpc-1", message, headers, -1, -1, only=H3)
    assert third.statuses is second[0].statuses and applier.hosts[H3].cursors["vpc-1"].seq == 1


def test_a_failure_of_the_tables_apply_reaches_every_followers_copy() -> None:
    """Only the first copy applies the table; the others must still report what it found."""
    applier = Applier(MemoryDataPlane(), [H1, H2, H3])
    for host in (H1, H2, H3):
        _join(applier, host, 0, subnet())

    def copies(seq: int, *items: Item) -> dict[str, dict[str, int]]:
        headers = {wire.SEQ: str(seq), wire.EPOCH: "1.e1"}
        return {r.host: statuses(r) for host in (H1, H2, H3)
                for r in applier.apply_multicast("vpc-1", goal_state(None, *items), headers, -1, -1, only=host)}

    assert copies(1, neighbor("nb-h1", H1, rev=2), security_group(rev=2)) == {
        H1: {"sg-1": common.SUCCESS}, H2: {"nb-h1": common.SUCCESS, "sg-1": common.SUCCESS},
        H3: {"nb-h1": common.SUCCESS, "sg-1": common.SUCCESS}}
    late = copies(2, neighbor("nb-h1", H1, rev=1), security_group(rev=1))  # older revisions: OUT_OF_ORDER for all
    assert late[H2] == late[H3] == {"nb-h1": common.OUT_OF_ORDER, "sg-1": common.OUT_OF_ORDER}
    assert late[H1] == {"sg-1": common.OUT_OF_ORDER}  # its own neighbor is not in its view


def test_followers_that_own_none_of_a_multicasts_neighbors_share_one_statuses_list() -> None:
    applier = Applier(MemoryDataPlane(), [H1, H2, H3])
    for host in (H1, H2, H3):
        _join(applier, host, 0, subnet())
    results = {r.host: r for r in applier.apply_multicast(
        "vpc-1", goal_state(None, neighbor("nb-h1", H1), neighbor("nb-x", "10.9.9.9")), {wire.SEQ: "1", wire.EPOCH: "1.e1"}, 4, 1)}
    assert results[H2].statuses is results[H3].statuses  # read once by the acks of both
    assert sorted(s.resource_id for s in results[H2].statuses) == ["nb-h1", "nb-x"]
    assert [s.resource_id for s in results[H1].statuses] == ["nb-x"]  # its own list, without its own neighbor


def test_a_join_behind_the_shared_table_fills_in_what_the_table_never_had() -> None:
    applier = Applier(MemoryDataPlane(), [H1, H2])
    # H1's bundle leaves out H1's own neighbor: the table, built from it, lacks nb-h1
    _join(applier, H1, 2, subnet(), security_group(rev=1), neighbor("nb-h2", H2))
    assert _multicast(applier, 3, security_group(rev=2)) == {H1: {"sg-1": 0}}
    assert _multicast(applier, 4, neighbor("nb-x", H3)) == {H1: {"nb-x": 0}}
    joined = _join(applier, H2, 3, subnet(), security_group(rev=2), neighbor("nb-h1", H1))  # the table (4) is ahead
    assert set(joined.values()) == {common.SUCCESS}
    assert table(applier, H2, common.NEIGHBOR) == {"nb-h1": 1, "nb-x": 1}
    assert table(applier, H2, common.SECURITYGROUP) == {"sg-1": 2}
    assert table(applier, H1, common.NEIGHBOR) == {"nb-h2": 1, "nb-x": 1}
    # H2 reads message 4 again (its cursor is 3): bookkeeping only, the same statuses
    assert _multicast(applier, 4, neighbor("nb-x", H3)) == {H2: {"nb-x": 0}}
    assert applier.hosts[H2].cursors["vpc-1"].seq == 4 and applier.tables["vpc-1"].seq == 4


def test_a_join_after_a_message_the_table_missed_takes_the_bundles_states() -> None:
    """A join's states the table holds are taken as they are only while the table has every
    message since it got them (`VpcTable.exact_from`): after a gap the bundle decides."""
    applier = Applier(MemoryDataPlane(), [H1, H2])
    _join(applier, H1, 2, subnet(), security_group(rev=1), neighbor("nb-a", H3))
    assert _multicast(applier, 3, security_group(rev=2)) == {H1: {"sg-1": 0}}
    # message 4 (nb-a at rev 2) never reaches this process; 5 does
    assert _multicast(applier, 5, neighbor("nb-b", H3)) == {H1: {"nb-b": 0}}
    joined = _join(applier, H2, 5, subnet(), security_group(rev=2), neighbor("nb-a", H3, rev=2), neighbor("nb-b", H3))
    assert set(joined.values()) == {common.SUCCESS}
    assert table(applier, H2, common.NEIGHBOR) == {"nb-a": 2, "nb-b": 1}
    assert table(applier, H2, common.SECURITYGROUP) == {"sg-1": 2}


def test_a_join_after_a_state_the_table_could_not_take_takes_the_bundles_state() -> None:
    applier = Applier(MemoryDataPlane(), [H1, H2])
    _join(applier, H1, 1, subnet(), neighbor("nb-a", H3, rev=2))
    assert _multicast(applier, 2, neighbor("nb-a", H3, rev=1)) == {H1: {"nb-a": common.OUT_OF_ORDER}}
    _join(applier, H2, 2, subnet(), neighbor("nb-a", H3, rev=1))  # the bundle says what message 2 said
    assert table(applier, H2, common.NEIGHBOR) == table(applier, H1, common.NEIGHBOR) == {"nb-a": 1}


def test_a_join_after_a_message_without_gs_seq_takes_the_bundles_state() -> None:
    applier = Applier(MemoryDataPlane(), [H1, H2])
    _join(applier, H1, 1, subnet(), neighbor("nb-a", H3))
    applier.apply_multicast("vpc-1", goal_state(None, neighbor("nb-a", H3, rev=2)), {wire.EPOCH: "1.e1"}, 4, 1)
    assert table(applier, H1, common.NEIGHBOR) == {"nb-a": 2}  # changed at no position
    _join(applier, H2, 1, subnet(), neighbor("nb-a", H3))
    assert table(applier, H2, common.NEIGHBOR) == {"nb-a": 1}


def test_a_join_ahead_of_the_shared_table_keeps_later_states_from_earlier_messages() -> None:
    applier = Applier(MemoryDataPlane(), [H1, H2])
    _join(applier, H1, 2, subnet(), security_group(rev=1), neighbor("nb-a", H3), neighbor("nb-b", H3))
    # H2 joins as of position 5: sg-1 at rev 3, nb-a deleted meanwhile, nb-b unchanged
    _join(applier, H2, 5, subnet(), security_group(rev=3), neighbor("nb-b", H3))
    assert table(applier, H1, common.SECURITYGROUP) == {"sg-1": 3}
    assert set(table(applier, H1, common.NEIGHBOR)) == {"nb-b"}
    # H1 catches up on 3..5: no OUT_OF_ORDER, nothing resurrected; H2 skips them
    assert _multicast(applier, 3, security_group(rev=2), neighbor("nb-a", H3, rev=2)) == {H1: {"sg-1": 0, "nb-a": 0}}
    assert _multicast(applier, 4, security_group(rev=3)) == {H1: {"sg-1": 0}}
    assert _multicast(applier, 5, neighbor("nb-a", H3, rev=3, op=common.DELETE)) == {H1: {"nb-a": 0}}
    assert _multicast(applier, 6, neighbor("nb-c", H3)) == {H1: {"nb-c": 0}, H2: {"nb-c": 0}}
    for host in (H1, H2):
        assert table(applier, host, common.SECURITYGROUP) == {"sg-1": 3}
        assert table(applier, host, common.NEIGHBOR) == {"nb-b": 1, "nb-c": 1}


def test_a_join_of_known_pieces_still_deletes_what_its_bundle_lacks() -> None:
    """Every piece of the second join is one the table knows, held as it is: the table
    keeps what the bundle names, and loses what it does not (deleted by then)."""
    applier = Applier(MemoryDataPlane(), [H1, H2, H3])
    _join(applier, H1, 2, subnet(), neighbor("nb-a", "10.9.0.1"), neighbor("nb-b", "10.9.0.2"), raw=True)
    known = applier.counters.bundle_states_known
    _join(applier, H2, 2, subnet(), neighbor("nb-a", "10.9.0.1"), neighbor("nb-b", "10.9.0.2"), raw=True)
    assert applier.counters.bundle_states_known == known + 3
    assert set(table(applier, H2, common.NEIGHBOR)) == {"nb-a", "nb-b"}
    _join(applier, H3, 3, subnet(), neighbor("nb-b", "10.9.0.2"), raw=True)  # nb-a deleted by position 3
    assert applier.counters.bundle_states_known == known + 5
    for host in (H1, H2, H3):
        assert set(table(applier, host, common.NEIGHBOR)) == {"nb-b"} and table(applier, host, common.SUBNET) == {"sn-1": 1}


def test_a_join_naming_a_known_piece_twice_still_deletes_what_its_bundle_lacks() -> None:
    """A listing whose count of known keys matches the table only because it names one twice."""
    applier = Applier(MemoryDataPlane(), [H1, H2])
    _join(applier, H1, 2, subnet(), neighbor("nb-a", "10.9.0.1"), neighbor("nb-b", "10.9.0.2"), raw=True)
    goal = goal_state(H2, subnet(), neighbor("nb-b", "10.9.0.2"), port(f"port-{H2}"))
    goal.host_resources[H2].resources.add(type=common.NEIGHBOR, id="nb-b")
    applier.apply_unicast(H2, goal, {wire.FOLLOW: "vpc-1=4:0:3", wire.EPOCH: "1.e1"}, goal.SerializeToString())
    for host in (H1, H2):
        assert set(table(applier, host, common.NEIGHBOR)) == {"nb-b"}


def test_unfollowing_leaves_the_table_to_the_others_and_the_last_follower_drops_it() -> None:
    applier = Applier(MemoryDataPlane(), [H1, H2])
    for host in (H1, H2):
        _join(applier, host, 0, subnet(), security_group())
    applier.take_follow_changes()
    applier.apply_unicast(H1, goal_state(H1, port(f"port-{H1}", rev=2, op=common.DELETE)), {})
    assert applier.take_follow_changes() == [FollowChange(H1, "vpc-1", False)]
    assert table(applier, H1, common.SUBNET) == {} and table(applier, H1, common.SECURITYGROUP) == {}
    assert table(applier, H2, common.SECURITYGROUP) == {"sg-1": 1} and applier.tables["vpc-1"].followers == {H2}
    assert _multicast(applier, 1, security_group(rev=2)) == {H2: {"sg-1": 0}}
    applier.apply_unicast(H2, goal_state(H2, port(f"port-{H2}", rev=2, op=common.DELETE)), {})
    assert applier.tables == {} and applier.followers == {}
    assert applier.dataplane.resources() == 0 and applier.dataplane.flows() == 0


def test_a_subnet_arriving_in_the_shared_table_releases_every_followers_pending_states() -> None:
    applier = Applier(MemoryDataPlane(), [H1, H2])
    for host in (H1, H2):
        _join(applier, host, 0, subnet())
    waiting = applier.apply_unicast(H1, goal_state(H1, port("p-9", "sn-9"), dhcp("d-9", "sn-9")), {})
    assert statuses(waiting) == {"p-9": common.PENDING, "d-9": common.PENDING}
    assert _multicast(applier, 1, neighbor("nb-9", H3, "sn-9")) == {H1: {"nb-9": common.PENDING}, H2: {"nb-9": common.PENDING}}
    assert applier.pending_states(H2) == {(common.NEIGHBOR, "nb-9"): applier.tables["vpc-1"].scope.pending[(common.NEIGHBOR, "nb-9")].state}
    by_host = _multicast(applier, 2, subnet("sn-9"))
    assert by_host == {H1: {"sn-9": 0, "nb-9": 0, "p-9": 0, "d-9": 0}, H2: {"sn-9": 0, "nb-9": 0}}
    assert applier.pending_count() == 0
    assert set(table(applier, H1, common.PORT)) == {f"port-{H1}", "p-9"} and set(table(applier, H2, common.NEIGHBOR)) == {"nb-9"}
    # a port's subnet found in the shared table: applied at once
    assert statuses(applier.apply_unicast(H2, goal_state(H2, port("p-2", "sn-9")), {})) == {"p-2": common.SUCCESS}


def test_a_vpc_wide_state_of_a_vpc_without_the_hosts_port_stays_the_hosts_own() -> None:
    applier = Applier(MemoryDataPlane(), [H1, H2])
    _join(applier, H1, 0, subnet())
    applier.apply_unicast(H2, goal_state(H2, subnet("sn-2", "vpc-2"), security_group("sg-2", "vpc-2")), {})
    assert set(table(applier, H2, common.SUBNET)) == {"sn-2"} and set(applier.tables) == {"vpc-1"}
    assert set(applier.dataplane.table(H2, common.SECURITYGROUP)) == {"sg-2"}  # in H2's own tables
    assert set(table(applier, H1, common.SUBNET)) == {"sn-1"}


def test_full_on_a_vpc_wide_type_in_a_multicast_replaces_the_shared_table_of_that_vpc() -> None:
    applier = Applier(MemoryDataPlane(), [H1, H2])
    for host in (H1, H2):
        _join(applier, host, 0, subnet(), security_group("sg-1"), security_group("sg-2"))
    full = security_group("sg-3")
    full[2].configuration.update_type = common.FULL
    _multicast(applier, 1, full)
    for host in (H1, H2):
        assert set(table(applier, host, common.SECURITYGROUP)) == {"sg-3"}
        assert set(table(applier, host, common.SUBNET)) == {"sn-1"}


def test_a_resync_of_one_follower_merges_into_the_shared_table() -> None:
    applier = Applier(MemoryDataPlane(), [H1, H2])
    for host in (H1, H2):
        _join(applier, host, 0, subnet(), security_group(), neighbor("nb-1", H3))
    _multicast(applier, 1, security_group(rev=2))
    resync = _join(applier, H1, 1, subnet(), security_group(rev=2), neighbor("nb-1", H3), full=True)
    assert set(resync.values()) == {common.SUCCESS}
    for host in (H1, H2):
        assert table(applier, host, common.SECURITYGROUP) == {"sg-1": 2} and table(applier, host, common.NEIGHBOR) == {"nb-1": 1}
    assert table(applier, H1, common.PORT) == {f"port-{H1}": 1}


def test_the_data_plane_holds_its_own_copy_of_each_state_shared_by_equal_ones() -> None:
    """A programmed state is copied (a parsed state keeps its whole message alive); hosts
    programming an equal state share that one copy."""
    dp = MemoryDataPlane()
    _, rid, state = neighbor("nb-1", H3)
    dp.program(H1, common.NEIGHBOR, rid, state)
    dp.program(H2, common.NEIGHBOR, rid, state)
    held = dp.table(H1, common.NEIGHBOR)[rid]
    assert held is not state and held == state and dp.table(H2, common.NEIGHBOR)[rid] is held


def test_a_host_message_at_or_below_the_seq_seen_is_skipped_even_a_full_state(applier: Applier) -> None:
    """Sequences continue across the DPM's channels: a message overtaken by a newer one (sent
    on the other channel) is never applied after it, a resync's full state neither."""
    epoch = "1.e1"
    applier.apply_unicast(H1, goal_state(H1, subnet(), port("p-1")), {wire.SEQ: "1", wire.EPOCH: epoch})
    gap = applier.apply_unicast(H1, goal_state(H1, port("p-1", rev=3)), {wire.SEQ: "3", wire.EPOCH: epoch})
    assert gap is not None and gap.resync and applier.hosts[H1].applied == 1  # seq 2 is missing
    late = applier.apply_unicast(H1, goal_state(H1, port("p-1", rev=2)), {wire.SEQ: "2", wire.EPOCH: epoch})
    assert late is not None and late.statuses == [] and not late.resync
    old_full = applier.apply_unicast(H1, goal_state(H1, subnet()), {wire.SEQ: "3", wire.EPOCH: epoch, wire.FULL: "1"})
    assert old_full is not None and old_full.statuses == []
    assert table(applier, H1, common.PORT) == {"p-1": 3} and applier.counters.stale_messages == 2
    assert applier.counters.out_of_order == 0
    closing = applier.apply_unicast(H1, goal_state(H1, subnet(), port("p-1", rev=3)), {wire.SEQ: "4", wire.EPOCH: epoch, wire.FULL: "1"})
    assert closing is not None and statuses(closing) == {"sn-1": common.SUCCESS, "p-1": common.SUCCESS}
    assert applier.hosts[H1].applied == 4
