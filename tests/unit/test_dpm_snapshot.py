"""The DPM's snapshot: resources stored once, host views per strategy, VPC joins and
leaves, deletes, consistency and routability (no Kafka)."""

from __future__ import annotations

from alcor.schema import common_pb2 as common
from dpm_server.hostsets import Part
from dpm_server.snapshot import Snapshot
from dpm_server.testing import goal, neighbor, port, port_goal, security_group, subnet, subnet_goal

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"
HOSTS = [A, B, C]
MC, UC, TPH = "vpc-multicast", "unicast-only", "topic-per-host"


def build(snap: Snapshot | None = None) -> Snapshot:
    """vpc-1 on A, B, C: its subnet and one port per host (port, DHCP; a neighbor for the others)."""
    snap = snap or Snapshot()
    snap.apply(subnet_goal("vpc-1", HOSTS))
    for i, host in enumerate(HOSTS):
        snap.apply(port_goal(f"p{i}", "vpc-1", host, f"10.1.0.{i}", HOSTS))
    return snap


def ids(keys: list[tuple[int, str]]) -> set[str]:
    return {rid for _, rid in keys}


def test_each_resource_is_stored_once_and_hosts_hold_ids() -> None:
    snap = build()
    assert len(snap.resources) == 1 + 3 * 3  # the subnet + (port, DHCP, neighbor) per port
    assert snap.listed[A] == {(common.SUBNET, "subnet-vpc-1"), (common.PORT, "p0"), (common.DHCP, "dhcp-p0"),
                              (common.NEIGHBOR, "nb-p1"), (common.NEIGHBOR, "nb-p2")}
    assert snap.holders[(common.SUBNET, "subnet-vpc-1")] == set(HOSTS)
    assert snap.vpc_wide["vpc-1"].keys() == {(common.SUBNET, "subnet-vpc-1")} | {(common.NEIGHBOR, f"nb-p{i}") for i in range(3)}
    assert snap.members["vpc-1"] == set(HOSTS) and snap.host_vpcs(B) == {"vpc-1"}
    assert snap.consistent() == []


def test_multicast_view_is_the_vpc_wide_state_of_its_vpcs_minus_its_own_neighbors() -> None:
    snap = build()
    # a security group of vpc-1 listed for B only: A still gets it from the VPC's multicast
    snap.apply(goal([security_group("sg-1", "vpc-1")], {B: ["sg-1"]}))
    view = ids(snap.view(A, MC))
    assert view == {"subnet-vpc-1", "p0", "dhcp-p0", "nb-p1", "nb-p2", "sg-1"}
    assert "nb-p0" not in view  # its own port is local, not a neighbor
    # unicast-only and topic-per-host: exactly what was listed for it
    assert ids(snap.view(A, UC)) == ids(snap.view(A, TPH)) == {"subnet-vpc-1", "p0", "dhcp-p0", "nb-p1", "nb-p2"}


def test_vpc_wide_states_listed_outside_the_hosts_vpcs_stay_in_its_view() -> None:
    snap = build()
    snap.apply(goal([subnet("vpc-2")], {A: ["subnet-vpc-2"]}))  # A has no port in vpc-2
    assert "subnet-vpc-2" in ids(snap.view(A, MC)) and "subnet-vpc-2" in ids(snap.view(A, UC))
    assert snap.host_vpcs(A) == {"vpc-1"}


def test_a_host_leaving_a_vpc_drops_its_vpc_wide_states() -> None:
    snap = build()
    change = snap.apply(port_goal("p0", "vpc-1", A, "10.1.0.0", HOSTS, rev=2, op=common.DELETE))
    assert change.left == {A: {"vpc-1"}} and not change.joined
    assert snap.view(A, MC) == [] and snap.view(A, UC) == []
    assert snap.members["vpc-1"] == {B, C}
    assert "nb-p0" not in ids(snap.view(B, MC))  # the deleted port's neighbor is gone for everyone
    assert (common.SUBNET, "subnet-vpc-1") in snap.resources  # still needed by B and C
    # coming back: a join, and the VPC's state is in the view again
    change = snap.apply(port_goal("p5", "vpc-1", A, "10.1.0.5", HOSTS))
    assert change.joined == {A: {"vpc-1"}}
    assert {"subnet-vpc-1", "nb-p1", "nb-p2", "p5"} <= ids(snap.view(A, MC))


def test_delete_removes_the_resource_from_every_host_and_index() -> None:
    snap = build()
    snap.apply(goal([neighbor("nb-p1", "vpc-1", B, "10.1.0.1", rev=2, op=common.DELETE)], {A: ["nb-p1"], C: ["nb-p1"]}))
    key = (common.NEIGHBOR, "nb-p1")
    assert key not in snap.resources and key not in snap.vpc_wide["vpc-1"] and key not in snap.holders
    assert all(key not in snap.listed[host] for host in HOSTS)
    assert snap.addresses["10.1.0.1"] == {(common.PORT, "p1")}  # B's port itself is still there
    assert snap.consistent() == []


def test_an_older_revision_never_replaces_a_newer_one() -> None:
    snap = Snapshot()
    snap.apply(goal([port("p", "vpc-1", A, "10.1.0.9", rev=5)], {A: ["p"]}))
    snap.apply(goal([port("p", "vpc-1", A, "10.1.0.7", rev=3)], {A: ["p"]}))
    assert snap.resources[(common.PORT, "p")].state.configuration.revision_number == 5
    assert snap.routable(A, "10.1.0.9") and not snap.routable(A, "10.1.0.7")


def test_a_port_moving_to_another_vpc_moves_its_host() -> None:
    snap = build()
    snap.apply(subnet_goal("vpc-2", [A]))
    change = snap.apply(goal([port("p0", "vpc-2", A, "10.2.0.1", rev=2, op=common.UPDATE, subnet_id="subnet-vpc-2")], {A: ["p0"]}))
    assert change.left == {A: {"vpc-1"}} and change.joined == {A: {"vpc-2"}}
    assert snap.host_vpcs(A) == {"vpc-2"} and A not in snap.members["vpc-1"]
    assert not snap.routable(A, "10.1.0.1") and snap.routable(A, "10.2.0.1")


def test_consistency_names_references_that_do_not_resolve() -> None:
    snap = Snapshot()
    snap.apply(port_goal("p0", "vpc-9", A, "10.9.0.1", [A, B]))
    problems = snap.consistent()
    assert sorted(problems) == sorted([
        "port p0 in unknown subnet subnet-vpc-9", "dhcp dhcp-p0 in unknown subnet subnet-vpc-9",
        "neighbor nb-p0 in unknown subnet subnet-vpc-9"])
    assert snap.problems([(common.PORT, "p0")]) == ["port p0 in unknown subnet subnet-vpc-9"]
    snap.apply(subnet_goal("vpc-9", [A, B]))
    assert snap.consistent() == []
    snap.listed[C].add((common.PORT, "ghost"))  # what the check exists to catch
    assert snap.consistent() == [f"host {C} lists missing {(common.PORT, 'ghost')}"]


def test_routable_only_within_the_hosts_vpcs() -> None:
    snap = build()
    snap.apply(subnet_goal("vpc-2", ["10.0.0.9"]))
    snap.apply(port_goal("q0", "vpc-2", "10.0.0.9", "10.2.0.1", ["10.0.0.9"]))
    assert snap.routable(A, "10.1.0.2")  # C's port: a neighbor of A in vpc-1
    assert snap.routable(A, "10.1.0.0")  # A's own port
    assert not snap.routable(A, "10.2.0.1")  # vpc-2, where A has no port
    assert not snap.routable("10.0.0.77", "10.1.0.2")  # unknown host: no VPCs
    snap.apply(goal([port("p-noip", "vpc-1", A, "")], {A: ["p-noip"]}))
    assert not snap.routable(A, "") and "" not in snap.addresses


def test_host_goal_state_lists_everything_it_carries() -> None:
    snap = build()
    state = snap.as_goal_state(B, MC)
    listed = {(r.type, r.id) for r in state.host_resources[B].resources}
    assert listed == set(snap.view(B, MC))
    assert set(state.port_states) == {"p1"} and set(state.neighbor_states) == {"nb-p0", "nb-p2"}
    assert state.port_states["p1"] == snap.resources[(common.PORT, "p1")].state


def test_a_multicast_snapshot_keeps_no_per_host_copy_of_its_vpcs_ids_and_gives_the_same_views() -> None:
    full, compact = Snapshot(), Snapshot(MC)
    steps = [
        subnet_goal("vpc-1", HOSTS),
        *[port_goal(f"p{i}", "vpc-1", host, f"10.1.0.{i}", HOSTS) for i, host in enumerate(HOSTS)],
        goal([security_group("sg-1", "vpc-1")], {B: ["sg-1"]}),
        goal([subnet("vpc-2")], {A: ["subnet-vpc-2"]}),  # outside A's VPCs: kept for A
        port_goal("p0", "vpc-1", A, "10.1.0.0", HOSTS, rev=2, op=common.DELETE),  # A leaves vpc-1
        port_goal("p3", "vpc-1", A, "10.1.0.3", HOSTS),  # and comes back
        port_goal("q0", "vpc-2", A, "10.2.0.0", [A]),  # A joins vpc-2, whose subnet it already held
    ]
    for i, step in enumerate(steps):
        full.apply(step)
        compact.apply(step)
        for host in HOSTS:
            assert compact.view(host, MC) == full.view(host, MC), (i, host)
        if i == len(HOSTS):  # every port created: members hold their own ports and DHCP entries only
            assert compact.listed[B] == {(common.PORT, "p1"), (common.DHCP, "dhcp-p1")}
            assert not compact.holders[(common.SUBNET, "subnet-vpc-1")] and full.holders[(common.SUBNET, "subnet-vpc-1")] == set(HOSTS)
    assert compact.consistent() == [] and compact.hosts() == full.hosts()


def test_indexes_keep_no_emptied_entry() -> None:
    """Every host's ports deleted: what was listed, held, addressed or joined for them goes
    from every index, none keeps an empty set for them; the ids listed before a host's join
    (its VPC's neighbors) went from its list and their holders at the join."""
    snap = Snapshot(MC)
    build(snap)
    assert all(snap.holders.get((common.NEIGHBOR, f"nb-p{i}")) is None for i in range(3))  # in the views through vpc-1
    for i, host in enumerate(HOSTS):
        snap.apply(port_goal(f"p{i}", "vpc-1", host, f"10.1.0.{i}", HOSTS, rev=2, op=common.DELETE))
    assert (dict(snap.listed), dict(snap.holders), dict(snap.host_ports), dict(snap.members), dict(snap.addresses)) == ({}, {}, {}, {}, {})
    assert {vpc: set(wide) for vpc, wide in snap.vpc_wide.items()} == {"vpc-1": {(common.SUBNET, "subnet-vpc-1")}}
    assert snap.hosts() == [] and snap.consistent() == []


def test_a_stored_state_is_parsed_from_its_piece() -> None:
    """The snapshot keeps each resource's bytes, not its parsed state (which would keep the
    whole input message alive); the state read back is the one given."""
    given = port_goal("p0", "vpc-1", A, "10.1.0.0", HOSTS)
    snap = build()
    snap.apply(given)
    stored = snap.resources[(common.PORT, "p0")]
    assert not hasattr(stored, "__dict__") and stored.state == given.port_states["p0"]
    assert snap.resources[(common.NEIGHBOR, "nb-p0")].located == A and stored.located is None


def test_hosts_are_known_within_a_vpcs_members_by_their_base_until_a_member_leaves() -> None:
    snap = build(Snapshot(MC))
    base = {A, B, C}
    b_and_c = Part(base, {A})
    assert snap.outside("vpc-1", b_and_c) == set() and snap.within_members("vpc-1", b_and_c)
    assert snap.within_members("vpc-1", base)  # the base itself, known now
    assert not snap.within_members("vpc-1", {A, B})  # a set that is no part: not read here (unknown)
    snap.apply(port_goal("p2", "vpc-1", C, "10.1.0.2", HOSTS, rev=2, op=common.DELETE))  # C leaves vpc-1
    assert snap.outside("vpc-1", b_and_c) == {C} and not snap.within_members("vpc-1", b_and_c)
    snap.apply(port_goal("p7", "vpc-1", C, "10.1.0.7", HOSTS))  # and joins again
    assert snap.within_members("vpc-1", b_and_c) and snap.outside("vpc-1", b_and_c) == set()
