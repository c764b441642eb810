"""Bench generators and arithmetic: storms, their byte encoding, percentiles, the push plan;
what an interrupted suite keeps."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from gs_bench import main as bench_main
from gs_bench import report, scenarios
from gs_bench.footprint import footprint
from gs_bench.measure import Push, Reply, Samples, cdf_sample, jit_cores, percentiles, phase_figures
from gs_bench.runner import Env
from gs_bench.scenarios import SCENARIOS, SUITES, Listing, Storm, host_ids, resources_in
from gs_bench.topology import port_message


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert percentiles(values) == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0, "count": 100}
    assert percentiles([7.0]) == {"p50": 7.0, "p95": 7.0, "p99": 7.0, "max": 7.0, "count": 1}
    assert percentiles([]) == {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "count": 0}
    assert percentiles([1.0, 2.0], points=(99.9,)) == {"p99.9": 2.0, "max": 2.0, "count": 2}


def test_cdf_sample_keeps_the_ends_and_the_order() -> None:
    values = [float(v) for v in range(10_000, 0, -1)]
    sample = cdf_sample(values, 50)
    assert len(sample) == 50 and sample[0] == 1.0 and sample[-1] == 10_000.0 and sample == sorted(sample)
    assert cdf_sample([3.0, 1.0]) == [1.0, 3.0]


def test_storm_layout_gives_every_host_a_port_first_and_neighbors_to_the_rest_of_its_vpc() -> None:
    storm = Storm(6, vpcs=2, ports=8)
    assert storm.layout == {"vpc-0": ["10.1.0.1", "10.1.0.3", "10.1.0.5"], "vpc-1": ["10.1.0.2", "10.1.0.4", "10.1.0.6"]}
    ports = [storm.port(i) for i in range(8)]
    assert {p.host for p in ports[:6]} == set(storm.host_list)  # bring-up round first
    assert len({p.id for p in ports}) == len({p.ip for p in ports}) == len({p.mac for p in ports}) == 8
    assert all(p.host in storm.layout[p.vpc] for p in ports)
    first = gs.GoalStateV2.FromString(storm.encode(0))
    assert resources_in(first) == storm.resources(0) == 4  # port + DHCP on its host, a neighbor on the 2 others
    assert storm.total_resources() == 8 * 4
    assert storm.describe() == {"hosts": 6, "vpcs": 2, "ports": 8, "hosts_per_vpc": 3}


@pytest.mark.parametrize(("hosts", "vpcs", "ports"), [(1, 1, 3), (7, 3, 30), (300, 1, 5), (130, 2, 9)])
def test_byte_encoding_is_exactly_the_protobuf_builders(hosts: int, vpcs: int, ports: int) -> None:
    storm = Storm(hosts, vpcs, ports, first_port=990)
    for i in range(ports):
        port = storm.port(i)
        assert gs.GoalStateV2.FromString(storm.encode(i)) == port_message(port, storm.layout[port.vpc])
        update = gs.GoalStateV2.FromString(storm.encode(i, 4, common.UPDATE))
        assert update == port_message(port, storm.layout[port.vpc], 4, common.UPDATE)


def test_region_shape_lists_a_neighbor_only_for_hosts_with_an_earlier_port_in_its_vpc() -> None:
    storm = Storm(6, vpcs=2, ports=8, region=True)
    listed = [set(gs.GoalStateV2.FromString(storm.encode(i)).host_resources) for i in range(8)]
    vpc0 = storm.layout["vpc-0"]
    assert [listed[i] for i in (0, 2, 4)] == [{vpc0[0]}, {vpc0[0], vpc0[1]}, {vpc0[0], vpc0[1], vpc0[2]}]  # its own host + earlier
    assert listed[6] == set(vpc0)  # after bring-up every host of the VPC has a port: all listed
    assert [storm.resources(i) for i in range(8)] == [2, 2, 3, 3, 4, 4, 4, 4]
    for i in range(8):
        assert gs.GoalStateV2.FromString(storm.encode(i)) == storm.message(i)
        assert resources_in(storm.message(i)) == storm.resources(i)
    assert Storm(6, vpcs=2, ports=8).resources(0) == 4  # the default shape lists every other host


def test_listing_skips_one_host_and_handles_the_edges() -> None:
    listing = Listing(host_ids(3))
    goal = gs.GoalStateV2.FromString(listing.encode(common.NEIGHBOR, "nb-1", skip="10.1.0.2"))
    assert sorted(goal.host_resources) == ["10.1.0.1", "10.1.0.3"]
    assert [(r.type, r.id) for r in goal.host_resources["10.1.0.3"].resources] == [(common.NEIGHBOR, "nb-1")]
    assert Listing(["10.0.0.1"]).encode(common.NEIGHBOR, "x", skip="10.0.0.1") == b""
    assert Listing([]).encode(common.NEIGHBOR, "x") == b""


def test_updates_cycle_over_the_ports_with_rising_revisions_and_stable_lanes() -> None:
    storm = Storm(4, 1, 3)
    payloads, lanes = storm.updates(7, start=1, revision=2)
    assert lanes == [1, 2, 0, 1, 2, 0, 1]
    states = [gs.GoalStateV2.FromString(p).port_states[storm.port(i).id] for p, i in zip(payloads, lanes, strict=True)]
    assert [s.configuration.revision_number for s in states] == [2, 2, 3, 3, 3, 4, 4]
    assert all(s.operation_type == common.UPDATE for s in states)


def test_subnets_list_every_host_of_their_vpc() -> None:
    storm = Storm(5, 2, 4)
    subnets = storm.subnets()
    assert [sorted(s.host_resources) for s in subnets] == [sorted(h) for h in storm.layout.values()]


def test_suites_name_known_scenarios_and_tiny_is_small() -> None:
    assert set(SUITES) == {"default", "tiny", "scale"}
    for suite in SUITES.values():
        assert set(suite.scenarios) <= set(SCENARIOS)
    tiny = SUITES["tiny"]
    assert tiny.hosts * tiny.ports <= 1000 and max(tiny.memory) <= 1000
    scale = SUITES["scale"]
    assert scale.sweep == (100, 1000, 10_000, 100_000, 1_000_000) and scale.sweep_ports_per_host == 1
    assert scale.sweep_hosts_per_vpc == 100 and (1000, 100_000) in scale.vpc_storms  # issue 11's points
    default = SUITES["default"]
    assert (default.sweep_ports_per_host, default.sweep_hosts_per_vpc) == (3, 100)


def test_phase_figures_from_replies_and_caller_times() -> None:
    ms = 1_000_000
    push = Push(sent_ns=[0, 10 * ms], reply_ns=[50 * ms, 100 * ms], failures=0, streams=2)
    replies = Samples.of([Reply(5 * ms, 7 * ms, "a"), Reply(5 * ms, 9 * ms, "b"), Reply(15 * ms, 85 * ms, "a")])
    counters = {"messages_published": 4, "bytes_published": 400, "unicast_messages": 3, "multicast_messages": 1}
    f = phase_figures(push, replies, resources=6, dpm=counters, agents={"bytes_consumed": 900, "messages_applied": 3})
    assert f["convergence_s"] == pytest.approx(0.080)  # first publish (5 ms) -> last applied (85 ms)
    assert f["duration_s"] == pytest.approx(0.100) and f["goal_states_per_s"] == pytest.approx(20.0)
    assert f["resources_per_s"] == pytest.approx(60.0) and f["messages_per_s"] == pytest.approx(50.0)
    assert f["publish_to_applied_ms"]["count"] == 3 and f["publish_to_applied_ms"]["max"] == pytest.approx(70.0)
    assert f["caller_reply_ms"]["p50"] == pytest.approx(50.0) and f["hosts_replied"] == 2
    assert f["avg_message_bytes"] == 100 and f["bytes_consumed"] == 900


def test_an_interrupted_sweep_keeps_the_points_measured_before(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    measured: list[int] = []

    def fake_storm(env: object, storm: Storm, **_: object) -> dict[str, object]:
        if measured == [100, 1000]:
            raise KeyboardInterrupt  # Ctrl-C during the third storm
        measured.append(storm.hosts)
        return {"hosts": storm.hosts, "vpcs": storm.vpcs, "hosts_per_vpc": 100, "ports": storm.ports, "inputs": storm.ports,
                "convergence_s": 1.0, "goal_states_per_s": 1.0, "resources_per_s": 1.0, "bytes_published": 1,
                "sim_rss_bytes": 1, "sim_rss_per_host_bytes": 1.0, "failures": 0, "publish_to_applied_ms": {}}

    monkeypatch.setattr(scenarios, "run_storm", fake_storm)
    suite = dataclasses.replace(SUITES["scale"], scenarios=("hosts",), sweep=(100, 1000, 10000), warm_up_rounds=0)
    results: dict[str, Any] = {}
    with pytest.raises(KeyboardInterrupt):
        bench_main.run_suite(Env("127.0.0.1:9", tmp_path), suite, results)  # the fake storms never reach it
    assert [p["hosts"] for p in results["convergence_vs_hosts"]] == [100, 1000]


def test_the_kafka_and_fast_path_storms_run_in_pairs_and_their_ratio_is_the_median(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rates = iter([(300.0, 100.0), (900.0, 200.0), (500.0, 250.0)])  # pair ratios 3.0, 4.5, 2.0
    calls: list[dict[str, object]] = []

    def fake_storm(env: object, storm: Storm, **kw: object) -> dict[str, object]:
        calls.append(kw)
        kafka, grpc = next(rates)
        return {"goal_states_per_s": kafka, "grpc_fast_path": {"goal_states_per_s": grpc}}

    monkeypatch.setattr(bench_main, "run_storm", fake_storm)
    suite = dataclasses.replace(SUITES["default"], scenarios=("churn", "fast-path"), warm_up_rounds=0, pair_runs=3)
    results: dict[str, Any] = {}
    bench_main.run_suite(Env("127.0.0.1:9", tmp_path), suite, results)
    assert [kw.get("fast_path") for kw in calls] == [True] * 3
    assert [bool(kw.get("churn")) for kw in calls] == [True, False, False]  # churn only on the first pair's daemons
    assert [(p["kafka_goal_states_per_s"], p["grpc_goal_states_per_s"]) for p in results["storm"]["pairs"]] == [
        (300.0, 100.0), (900.0, 200.0), (500.0, 250.0)]
    assert report.ratios(results)["kafka_path_vs_grpc_fast_path"] == 3.0


def test_pair_runs_below_one_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_main.parse(["--pair-runs", "0"])
    assert "--pair-runs: must be at least 1, got 0" in capsys.readouterr().err


def test_the_broker_is_warmed_up_by_the_main_storm_before_the_scenarios_that_use_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    storms: list[tuple[int, int]] = []

    def fake_storm(env: object, storm: Storm, **_: object) -> dict[str, object]:
        storms.append((storm.hosts, storm.ports))
        return {"hosts": storm.hosts, "vpcs": storm.vpcs, "hosts_per_vpc": 100, "ports": storm.ports, "convergence_s": 2.5}

    monkeypatch.setattr(scenarios, "run_storm", fake_storm)
    suite = dataclasses.replace(SUITES["scale"], scenarios=("hosts",), sweep=(100,), sweep_ports_per_host=1)
    results: dict[str, Any] = {}
    bench_main.run_suite(Env("127.0.0.1:9", tmp_path), suite, results)
    assert storms == [(suite.hosts, suite.ports), (100, 100)]  # the warm-up first, then the measured point
    assert results["warm_up"]["convergence_s"] == 2.5 and [p["hosts"] for p in results["convergence_vs_hosts"]] == [100]
    results.clear()
    bench_main.run_suite(Env("127.0.0.1:9", tmp_path), dataclasses.replace(suite, scenarios=("footprint",), footprint=()), results)
    assert "warm_up" not in results  # a scenario without the broker is not warmed up for


@pytest.mark.parametrize(("compiled", "rounds"), [([2.0, 1.5, 0.5, 3.0], 3), ([2.0] * 6, 4), (None, 1)])
def test_the_warm_up_goes_on_until_the_brokers_jit_compilers_are_quiet(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, compiled: list[float] | None, rounds: int
) -> None:
    """Rounds of the main storm with a short churn end at the first one over which the
    broker's compiler threads kept fewer than WARM_JIT_CORES busy, or at the suite's bound; a
    broker the bench cannot read (no pids) gets one round. Each fake round takes 10 s and
    its compiler thread works `compiled[i]` seconds in it, so 0.5 s is 0.05 cores."""
    calls: list[dict[str, object]] = []
    work = iter(compiled or [])
    clock, jit = [0.0], [0.0]

    def fake_storm(env: object, storm: Storm, **kw: object) -> dict[str, object]:
        calls.append(kw)
        clock[0] += 10.0
        jit[0] += next(work, 0.0)
        return {"convergence_s": 2.0 + len(calls)}

    monkeypatch.setattr(scenarios, "run_storm", fake_storm)
    monkeypatch.setattr(scenarios, "jit_seconds", lambda pids: {(7, 8): jit[0]} if pids else {})
    env = Env("127.0.0.1:9", tmp_path, say=lambda _: None, broker_pids=(7,) if compiled else ())
    result = scenarios.warm_up(env, Storm(10, 1, 10), 4, clock=lambda: clock[0])
    assert len(result["rounds"]) == len(calls) == rounds
    assert all(kw["churn"] == scenarios.WARM_CHURN for kw in calls)
    assert result["convergence_s"] == 3.0  # the first round's
    assert [r["jit_cores"] for r in result["rounds"]] == pytest.approx([c / 10 for c in (compiled or [0.0])][:rounds])
    assert f"{rounds} round(s) before the scenarios" in "\n".join(report._warm_up({"warm_up": result}))


def test_jit_cores_count_a_compiler_thread_started_in_the_round_whole_and_one_stopped_not_at_all() -> None:
    before = {(1, 10): 5.0, (1, 11): 3.0}
    after = {(1, 10): 6.0, (1, 12): 0.5}  # thread 11 stopped, 12 started
    assert jit_cores(before, after, 5.0) == pytest.approx(0.3)
    assert jit_cores(before, after, 0.0) == 0.0


def test_view_resources_count_what_each_host_holds_once_the_storm_is_applied() -> None:
    # 3 hosts in one VPC, a port each: its port and DHCP entry, the subnet, the 2 other hosts' neighbors
    assert Storm(3, 1, 3).view_resources() == 3 * (2 + 1 + 2)
    # 4 hosts in 2 VPCs, 6 ports: hosts 0 and 2 have 2 ports in their VPC, 1 and 3 one
    storm = Storm(4, 2, 6)
    assert storm.view_resources() == 2 * 6 + sum(1 + 3 - mine for mine in (2, 1, 2, 1))


def test_footprint_measures_both_sides_after_a_storm_every_caller_got_answered() -> None:
    f = footprint(20, hosts_per_vpc=10)
    assert (f["inputs"], f["failures"]) == (20 + 2, 0)  # the ports, and a subnet per VPC
    assert f["dpm_resources"] == 3 * 20 + 2 and f["view_resources"] == Storm(20, 2, 20).view_resources()
    assert {"dpm_per_host_bytes", "dpm_per_resource_bytes", "sim_per_host_bytes", "sim_per_resource_bytes",
            "sim_per_view_resource_bytes", "dpm_per_view_resource_bytes"} <= set(f)
