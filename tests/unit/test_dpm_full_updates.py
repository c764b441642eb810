"""`update_type FULL` on a host-specific state (port, DHCP, ...) replaces that host's
table of that type on the agent (docs/internals.md, "Statuses an ACA gives"); the DPM's
snapshot must do the same, or the next resync gives the host back what FULL removed."""

from __future__ import annotations

import pytest
from test_dpm_engine_agents import STRATEGIES, Cluster  # the in-memory cluster (tests/unit on sys.path)

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from dpm_server.testing import goal, port, port_goal, subnet_goal
from gsmq.resources import state_map

A, B = "10.0.0.1", "10.0.0.2"


def full_ports(g: gs.GoalStateV2) -> gs.GoalStateV2:
    for state in g.port_states.values():
        state.configuration.update_type = common.FULL
    return g


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_full_port_table_replaces_the_hosts_ports_on_agent_and_snapshot(strategy: str) -> None:
    cluster = Cluster(strategy, hosts=[A, B])
    for vpc in ("vpc-1", "vpc-2"):
        cluster.eng.submit(subnet_goal(vpc, [A, B]), lambda r: None)
    cluster.eng.submit(port_goal("p1", "vpc-1", A, "10.1.0.1", [A, B]), lambda r: None)
    cluster.eng.submit(port_goal("p2", "vpc-1", A, "10.1.0.2", [A, B]), lambda r: None)
    cluster.eng.submit(port_goal("p3", "vpc-2", A, "10.2.0.3", [A]), lambda r: None)
    cluster.eng.submit(port_goal("q1", "vpc-1", B, "10.1.0.9", [A, B]), lambda r: None)
    cluster.settle()
    assert set(cluster.agent_tables(A)["PORT"]) == {"p1", "p2", "p3"}
    # A's ports are now exactly p1 (revision 2): p2 and p3 go, and with p3 A leaves vpc-2
    cluster.eng.submit(full_ports(goal([port("p1", "vpc-1", A, "10.1.0.1", rev=2, op=common.UPDATE)], {A: ["p1"]})), lambda r: None)
    cluster.settle()
    assert cluster.agent_tables(A)["PORT"] == {"p1": 2}
    assert cluster.dpm_tables(A)["PORT"] == {"p1": 2}
    assert cluster.eng.snapshot.host_vpcs(A) == {"vpc-1"} and A not in cluster.eng.snapshot.members.get("vpc-2", set())
    cluster.assert_converged()
    cluster.add_agent(A)  # a restart: the resync must not bring p2 and p3 back
    cluster.settle()
    assert cluster.agent_tables(A)["PORT"] == {"p1": 2}
    cluster.assert_converged()


def test_a_full_state_of_one_type_leaves_the_other_types_alone() -> None:
    cluster = Cluster("vpc-multicast", hosts=[A])
    cluster.eng.submit(subnet_goal("vpc-1", [A]), lambda r: None)
    cluster.eng.submit(port_goal("p1", "vpc-1", A, "10.1.0.1", [A]), lambda r: None)
    cluster.eng.submit(port_goal("p2", "vpc-1", A, "10.1.0.2", [A]), lambda r: None)
    cluster.settle()
    g = port_goal("p1", "vpc-1", A, "10.1.0.1", [A], rev=2, op=common.UPDATE)
    state_map(g, common.DHCP)["dhcp-p1"].configuration.update_type = common.FULL  # DHCP table only
    cluster.eng.submit(g, lambda r: None)
    cluster.settle()
    assert set(cluster.dpm_tables(A)["PORT"]) == {"p1", "p2"} and set(cluster.dpm_tables(A)["DHCP"]) == {"dhcp-p1"}
    cluster.assert_converged()
