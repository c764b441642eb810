"""Report structure from synthetic figures: ratios, targets (met or missed by how much), files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from gs_bench import baselines, report


def _lat(p99: float = 4.0, p50: float = 1.0) -> dict[str, float]:
    return {"p50": p50, "p95": 2.0, "p99": p99, "max": 5.0, "count": 3}


def _storm(**extra: Any) -> dict[str, Any]:
    return {"hosts": 200, "vpcs": 2, "hosts_per_vpc": 100, "ports": 3, "inputs": 3, "streams": 2, "resources": 9,
            "convergence_s": 1.0, "goal_states_per_s": 3.0, "resources_per_s": 9.0, "messages_per_s": 50.0,
            "messages_published": 50, "publish_to_applied_ms": _lat(), "caller_reply_ms": _lat(), "bytes_published": 10,
            "bytes_consumed": 20, "sim_rss_bytes": 2**20, "sim_rss_per_host_bytes": 1024.0, "cdf_publish_to_applied_ms": [1.0, 2.0, 5.0],
            **extra}


def _synthetic(multicast_bytes: int, unicast_bytes: int) -> dict[str, Any]:
    churn = [{"fraction": 0.5, "offered_per_s": 2.0, "achieved_per_s": 2.0, "publish_to_applied_ms": _lat(20.0),
              "cdf_publish_to_applied_ms": [1.0, 20.0]}]
    fast = {"goal_states_per_s": 6.0, "caller_reply_ms": _lat(), "cdf_caller_reply_ms": [0.5, 1.0], "path": "grpc", "grpc_messages": 9,
            "kafka_messages": 0}
    strategies = [_storm(strategy=name, bytes_published=total, messages_published=n,
                         steady={"inputs": 1, "bytes_published": total // 2, "messages_published": n})
                  for name, total, n in (("vpc-multicast", multicast_bytes, 1), ("unicast-only", unicast_bytes, 9),
                                         ("topic-per-host", unicast_bytes, 9))]
    return {"started": "now", "elapsed_s": 1.0, "machine": report.machine(), "config": {"suite": "synthetic"},
            "storm": _storm(churn=churn, grpc_fast_path=fast),
            "raw_ceiling": {"messages_per_s": 100.0, "message_bytes": 10, "latency_ms": _lat(), "cdf_latency_ms": [1.0]},
            "raw_at_50": {"offered_per_s": 1.0, "latency_ms": _lat(5.0), "cdf_latency_ms": [1.0]},
            "strategies": strategies,
            "memory": [{"hosts": 10000, "rss_bytes": 1, "per_host_bytes": 2048.0, "above_one_host_per_host_bytes": 1.0}],
            "convergence_vs_hosts": [
                {"hosts": 10, "vpcs": 1, "ports": 20, "convergence_s": 1.0, "goal_states_per_s": 1.0, "sim_rss_per_host_bytes": 10.0,
                 "sim_rss_growth_per_host_bytes": 10.0},
                {"hosts": 100, "vpcs": 1, "ports": 200, "convergence_s": 2.0, "goal_states_per_s": 1.0, "sim_rss_per_host_bytes": 5.0,
                 "sim_rss_growth_per_host_bytes": 5.0},
            ],
            "vpc_storms": [_storm(hosts=1000, vpcs=1, ports=100_000, convergence_s=7.5)]}


def test_ratios_and_targets_say_met_or_missed_by_how_much(tmp_path: Path) -> None:
    results = _synthetic(multicast_bytes=100, unicast_bytes=2000)
    assert report.ratios(results) == {"throughput_vs_raw": 0.5, "p99_vs_raw_p99": 4.0, "unicast_vs_multicast_bytes": 20.0,
                                      "unicast_vs_multicast_bytes_whole_storm": 20.0, "kafka_path_vs_grpc_fast_path": 0.5,
                                      "region_fetch_vs_sims_fetch": None, "channels_auto_vs_grpc": None, "channels_auto_vs_mq": None,
                                      "channels_light_grpc_vs_auto_p50": None, "channels_light_mq_vs_auto_p50": None,
                                      "channels_light_grpc_vs_auto_p99": None, "channels_light_mq_vs_auto_p99": None}
    assert set(report.RATIO_TEXT) == set(report.ratios(results)) and all(" / " in t for t in report.RATIO_TEXT.values())
    verdicts = {t["target"]: t for t in report.targets(results)}
    assert len(verdicts) == 11
    throughput = verdicts["Kafka path moves its records at >= 0.5x the raw rate (same records)"]
    assert throughput["met"] is True and throughput["measured"] == 0.5
    versus_fast = verdicts["Kafka path >= 3x the gRPC fast path's goal states/s (main storm)"]
    assert versus_fast["met"] is False and versus_fast["measured"] == 0.5 and "6.00x off" in versus_fast["by"]
    assert "--path grpc" in versus_fast["by"]  # the gRPC fast path is the DPM's gRPC channel
    rows = dict(report.summary_rows(results))
    assert "9 messages on gRPC, 0 on Kafka" in rows["gRPC fast path (the storm through the DPM, --path grpc, a stream per host, no Kafka)"]
    assert verdicts["p99 publish->applied at 50% load <= 2x raw p99 at the same rate"]["met"] is False
    assert verdicts["multicast >= 10x fewer bytes than unicast-only (VPCs >= 100 hosts)"]["met"] is True
    memory = verdicts["<= 10 KiB simulator memory per loaded host (1,000,000 hosts)"]  # judged at region size only
    assert memory["met"] is None and "needs the 1,000,000-host point" in memory["by"] and "grown at 100 hosts" in memory["by"]
    vpc = verdicts["100,000-port VPC on 1,000 hosts converged <= 30 s"]
    assert vpc["met"] is True and vpc["measured"] == 7.5 and "extrapolated" not in vpc["by"]
    # the sweep's points are below 1,000 hosts: no exponent to judge, no projection
    assert verdicts["growth exponent of convergence against hosts (1,000 .. 1,000,000) <= 1.1"]["met"] is None
    assert verdicts["1,000,000 hosts converged <= 15 min"]["met"] is None


def test_region_targets_are_projected_along_the_fitted_growth_and_said_so() -> None:
    results = _synthetic(100, 2000)
    results["convergence_vs_hosts"] = [{"hosts": h, "vpcs": h // 100, "ports": h, "convergence_s": h / 100, "goal_states_per_s": 1.0,
                                        "sim_rss_per_host_bytes": 12 * 1024.0, "sim_rss_growth_per_host_bytes": 12 * 1024.0}
                                       for h in (1000, 10_000)]
    verdicts = {t["target"]: t for t in report.targets(results)}
    exponent = verdicts["growth exponent of convergence against hosts (1,000 .. 1,000,000) <= 1.1"]
    assert exponent["measured"] == pytest.approx(1.0) and exponent["met"] is True and "2 points, 1,000 .. 10,000 hosts" in exponent["by"]
    region = verdicts["1,000,000 hosts converged <= 15 min"]
    assert region["measured"] == pytest.approx(10_000 / 60) and region["met"] is False and "projected from 10,000 hosts" in region["by"]
    assert verdicts["<= 10 KiB simulator memory per loaded host (1,000,000 hosts)"]["met"] is None  # 12 KiB, at 10,000 hosts
    results["convergence_vs_hosts"].append({"hosts": 1_000_000, "convergence_s": 600.0, "sim_rss_per_host_bytes": 9 * 1024.0,
                                            "sim_rss_growth_per_host_bytes": 9 * 1024.0})
    verdicts = {t["target"]: t for t in report.targets(results)}
    region = verdicts["1,000,000 hosts converged <= 15 min"]
    assert region["measured"] == 10.0 and "projected" not in region["by"]
    memory = verdicts["<= 10 KiB simulator memory per loaded host (1,000,000 hosts)"]
    assert memory["met"] is True and memory["measured"] == 9.0 and "grown over a storm of 1,000,000 hosts" in memory["by"]
    results["convergence_vs_hosts"][-1]["sim_rss_growth_per_host_bytes"] = 11 * 1024.0
    assert {t["target"]: t for t in report.targets(results)}["<= 10 KiB simulator memory per loaded host (1,000,000 hosts)"]["met"] is False


def test_the_kafka_vs_fast_path_target_takes_the_median_of_the_pairs_and_lists_them() -> None:
    results = _synthetic(100, 2000)
    results["storm"]["pairs"] = [report.pair_of(results["storm"]),  # 3 / 6 goal states/s
                                 {"kafka_goal_states_per_s": 900.0, "grpc_goal_states_per_s": 200.0},
                                 {"kafka_goal_states_per_s": 500.0, "grpc_goal_states_per_s": 250.0}]
    assert report.ratios(results)["kafka_path_vs_grpc_fast_path"] == 2.0  # of 0.5, 4.5, 2.0
    verdict = {t["target"]: t for t in report.targets(results)}["Kafka path >= 3x the gRPC fast path's goal states/s (main storm)"]
    assert verdict["met"] is False and verdict["measured"] == 2.0
    rows = dict(report.summary_rows(results))
    assert rows["Kafka path / gRPC fast path, 3 pairs of storms run in turn (goal states/s)"] == (
        "3 / 6 = 0.50x; 900 / 200 = 4.50x; 500 / 250 = 2.00x; median 2.00x")
    results["storm"]["pairs"][1]["grpc_goal_states_per_s"] = 0.0  # a fast path that answered nothing: no ratio of its own
    assert report.ratios(results)["kafka_path_vs_grpc_fast_path"] == 1.25  # of 0.5 and 2.0
    assert dict(report.summary_rows(results))["Kafka path / gRPC fast path, 3 pairs of storms run in turn (goal states/s)"] == (
        "3 / 6 = 0.50x; 900 / 0; 500 / 250 = 2.00x; median 1.25x")


def test_a_measure_just_past_its_limit_reads_apart_from_it() -> None:
    results = _synthetic(100, 2000)
    # 1,000 -> 1,000,000 hosts, slope 1.1036: three digits would print it as the limit, 1.1
    results["convergence_vs_hosts"] = [{"hosts": h, "vpcs": h // 100, "ports": h, "convergence_s": (h / 1000) ** 1.1036,
                                        "goal_states_per_s": 1.0, "sim_rss_per_host_bytes": 1.0, "sim_rss_growth_per_host_bytes": 1.0}
                                       for h in (1000, 1_000_000)]
    exponent = {t["target"]: t for t in report.targets(results)}["growth exponent of convergence against hosts (1,000 .. 1,000,000) <= 1.1"]
    assert exponent["met"] is False and exponent["by"].startswith("missed: 1.104 against 1.1, 0.0036 short")
    region = {t["target"]: t for t in report.targets(results)}["1,000,000 hosts converged <= 15 min"]
    assert region["by"].startswith("missed: 34.1 min against 15 min")  # far apart: three digits


def test_a_smaller_vpc_storm_is_extrapolated_and_said_so() -> None:
    results = _synthetic(100, 2000)
    results["vpc_storms"] = [_storm(hosts=1000, vpcs=1, ports=5000, convergence_s=2.0)]
    vpc = {t["target"]: t for t in report.targets(results)}["100,000-port VPC on 1,000 hosts converged <= 30 s"]
    assert vpc["measured"] == 40.0 and vpc["met"] is False and "extrapolated linearly from 5,000 ports" in vpc["by"]


def test_targets_not_measured_or_not_judged_are_said_so() -> None:
    results = _synthetic(100, 2000)
    for s in results["strategies"]:
        s["hosts_per_vpc"] = 10
    del results["vpc_storms"], results["memory"], results["storm"]["churn"]
    verdicts = {t["target"]: t for t in report.targets(results)}
    assert verdicts["multicast >= 10x fewer bytes than unicast-only (VPCs >= 100 hosts)"]["met"] is None
    assert "VPCs of 10 hosts" in verdicts["multicast >= 10x fewer bytes than unicast-only (VPCs >= 100 hosts)"]["by"]
    assert verdicts["100,000-port VPC on 1,000 hosts converged <= 30 s"]["by"] == "not measured in this run"
    assert verdicts["p99 publish->applied at 50% load <= 2x raw p99 at the same rate"]["met"] is None


def test_the_p99_target_is_not_judged_against_a_raw_baseline_stalled_in_every_run() -> None:
    name = "p99 publish->applied at 50% load <= 2x raw p99 at the same rate"
    results = _synthetic(100, 2000)
    results["raw_at_50"]["latency_ms"] = _lat(p99=890.3, p50=3.1)  # bench29c: ~1 s waits in every run, the p50 as usual
    verdict = {t["target"]: t for t in report.targets(results)}[name]
    assert verdict["met"] is None and verdict["measured"] is None
    assert verdict["by"] == "not judged: the raw baseline was stalled in every run (its best p99 890.3 ms is 287x its p50 3.1 ms)"
    results["raw_at_50"]["latency_ms"] = _lat(p99=report.RAW_STALLED * 3.1, p50=3.1)  # at the bound: judged
    verdict = {t["target"]: t for t in report.targets(results)}[name]
    assert verdict["met"] is True and verdict["measured"] == pytest.approx(20.0 / (report.RAW_STALLED * 3.1))


def test_write_gives_json_markdown_and_plots(tmp_path: Path) -> None:
    results = _synthetic(100, 2000)
    plots = report.write(tmp_path, results)
    assert {p.name for p in plots} == {*report.PLOTS, "memory_per_host.png"}
    assert all(p.stat().st_size > 1000 for p in plots)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["ratios"]["throughput_vs_raw"] == 0.5 and len(saved["targets"]) == 11 and saved["plots"]
    text = (tmp_path / "report.md").read_text()
    assert "## Summary" in text and "## Targets" in text and "missed" in text and "ratio unicast_vs_multicast_bytes" in text
    assert "latency_cdf.png" in text
    assert report.table(report.summary_rows(results)).count("\n") == len(report.summary_rows(results)) - 1


def test_machine_facts_name_cpus_memory_and_versions() -> None:
    m = report.machine()
    assert m["cpus"] >= 1 and m["memory_bytes"] > 0
    assert {"python", "confluent-kafka", "librdkafka", "grpcio", "protobuf"} <= set(m["versions"])
    assert all(isinstance(v, str) for v in m["versions"].values())


def test_growth_exponent_is_the_log_log_least_squares_slope() -> None:
    points = [{"hosts": h, "convergence_s": 0.5 * h**1.5} for h in (100, 1000, 10_000, 100_000)]
    assert report.growth_exponent(points) == pytest.approx(1.5)
    # noisy points: the fitted slope of the logs, by hand: x = log10 h = 2, 3, 4; y = log10 s = 0, 1, 1.5
    noisy = [{"hosts": 100, "convergence_s": 1.0}, {"hosts": 1000, "convergence_s": 10.0}, {"hosts": 10_000, "convergence_s": 10**1.5}]
    assert report.growth_exponent(noisy) == pytest.approx(0.75)  # sum((x-3)(y-5/6)) / sum((x-3)^2) = 1.5 / 2
    assert report.growth_exponent([{"hosts": 100, "convergence_s": 1.0}]) is None
    assert report.growth_exponent([{"hosts": 100, "convergence_s": 1.0}, {"hosts": 100, "convergence_s": 2.0}]) is None
    assert report.growth_exponent([{"hosts": 100, "convergence_s": 0.0}, {"hosts": 1000, "convergence_s": 2.0}]) is None


def test_the_report_states_load_memory_fanout_and_the_exponent(tmp_path: Path) -> None:
    results = _synthetic(100, 2000)
    load = {"acks_received": 7, "ack_bytes": 70, "broker_bytes_in": 80, "broker_bytes_out": 90, "simulators": 2,
            "dpm_rss_bytes": 2**21, "dpm_rss_per_host_bytes": 2048.0, "dpm_rss_growth_per_host_bytes": 1024.0,
            "dpm_rss_growth_per_resource_bytes": 300.0, "sim_rss_growth_per_host_bytes": 512.0, "sim_rss_growth_per_resource_bytes": 100.0,
            "fanout": {"region_fetch_bytes": 1000, "sims_fetched_bytes": 250, "region_vs_sims_fetch": 4.0}}
    results["storm"].update(load)
    for p in results["convergence_vs_hosts"]:
        p.update(load)
    assert report.ratios(results)["region_fetch_vs_sims_fetch"] == 4.0
    text = report.table(report.summary_rows(results))
    assert "1,000 B / 250 B = 4.0x" in text and "convergence ~ hosts^0.30" in text and "7 / 80 / 90 B" in text
    assert "300 B per resource" in text and "(2 processes)" in text
    report.write(tmp_path, results)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["convergence_growth_exponent"] == pytest.approx(math.log(2) / math.log(10))


def _fault(name: str, wrong: int = 0) -> dict[str, Any]:
    return {"fault": name, "hosts": 2, "acknowledged_pairs": 10, "wrong_success": wrong, "hosts_differing": 0,
            "lost_acknowledged": 0, "converge_s": 1.5, "unanswered_at_fault": 3}


def test_fault_targets_sum_over_the_faults_run_and_name_each() -> None:
    results = _synthetic(100, 2000)
    results["faults"] = [_fault("dpm-kill"), _fault("agents-killed", wrong=2),
                         {"fault": "broker-pause", "skipped": "the broker has no process on this machine"}]
    verdicts = {t["target"]: t for t in report.targets(results)}
    wrong = verdicts["faults: wrong SUCCESS = 0"]
    assert (wrong["met"], wrong["measured"], wrong["by"]) == (False, 2, "missed: 2 (dpm-kill 0, agents-killed 2)")
    assert verdicts["faults: lost acknowledged states = 0"]["met"] is True
    rows = dict(report.summary_rows(results))
    assert rows["fault broker-pause"] == "skipped: the broker has no process on this machine"
    assert "wrong SUCCESS 2" in rows["fault agents-killed (2 hosts, 10 (host, resource) pairs answered SUCCESS)"]
    del results["faults"]
    assert report.targets(results)[-4]["by"] == "not measured in this run"


@pytest.mark.parametrize(("auto_p50", "auto_p99", "beats"), [(10.0, 20.0, True), (30.0, 20.0, False), (10.0, 50.0, False)])
def test_auto_beats_both_at_light_load_only_with_the_lower_p50_and_the_lower_p99(auto_p50: float, auto_p99: float,
                                                                                 beats: bool) -> None:
    light = {"paths": {"grpc": {"all": _lat(p99=60.0, p50=40.0)}, "mq": {"all": _lat(p99=40.0, p50=20.0)},
                       "auto": {"all": _lat(p99=auto_p99, p50=auto_p50)}}}
    m = report.light_ratios(light)
    assert m["auto_beats_both"] is beats
    assert (m["grpc_vs_auto_p50"], m["mq_vs_auto_p50"], m["mq_vs_auto_p99"]) == (40.0 / auto_p50, 20.0 / auto_p50, 40.0 / auto_p99)
    assert report.light_ratios({"paths": {"mq": {"all": _lat()}, "auto": {"all": _lat()}}})["auto_beats_both"] is None


def test_a_baseline_run_several_times_keeps_its_best_run_and_shows_every_run(tmp_path: Path) -> None:
    runs = [{"messages_per_s": rate, "latency_ms": _lat(p99)} for rate, p99 in ((300.0, 9.0), (100.0, 300.0), (200.0, 6.0))]
    ceiling = baselines.best_run(runs, lambda r: -r["messages_per_s"])
    assert ceiling["messages_per_s"] == 300.0 and ceiling["latency_ms"]["p99"] == 9.0 and ceiling["runs"] == [300.0, 100.0, 200.0]
    at_rate = baselines.best_run(runs, lambda r: r["latency_ms"]["p99"])
    assert at_rate["latency_ms"]["p99"] == 6.0 and at_rate["runs"] == [9.0, 300.0, 6.0]
    assert "runs" not in runs[0]  # the runs are left as they were
    results = _synthetic(100, 2000)
    results["raw_at_50"] = {**at_rate, "offered_per_s": 1.0, "cdf_latency_ms": [1.0]}
    report.write(tmp_path, results)
    text = (tmp_path / "report.md").read_text()
    assert "the best of 3 runs: p99 9.0 ms, p99 300.0 ms, p99 6.0 ms" in text
    assert report.ratios(results)["p99_vs_raw_p99"] == results["storm"]["churn"][0]["publish_to_applied_ms"]["p99"] / 6.0


def test_the_channels_section_and_plot_are_written_when_the_scenario_ran(tmp_path: Path) -> None:
    results = _synthetic(100, 2000)

    def point(size: int, path: str, rate: float) -> dict[str, Any]:
        return {"hosts_per_vpc": size, "path": path, "inputs": 10, "convergence_s": 10 / rate, "goal_states_per_s": rate,
                "caller_reply_ms": _lat(), "publish_to_applied_ms": _lat(), "bytes_published": 1, "kafka_bytes": 1, "grpc_bytes": 0,
                "broker_bytes_in": 2, "broker_bytes_out": 3, "path_switches": 0, "vpcs_on_grpc": 0, "vpcs": 1}

    results["channels"] = {"hosts": 20, "ports_per_host": 1, "mixed_shape": {"small_vpcs": 2, "small_hosts": 2, "large_vpcs": 1,
                                                                              "large_hosts": 3, "prefill_ports": 1100, "ports_per_host": 2},
                           "points": [point(s, p, r) for s, p, r in ((2, "grpc", 9.0), (2, "mq", 8.0), (10, "grpc", 5.0), (10, "mq", 7.0))],
                           "mixed": [point(0, p, r) for p, r in (("grpc", 4.0), ("mq", 5.0), ("auto", 6.0))],
                           "light": {"rate": 40.0, "rounds": 3, "paths": {p: {"small": _lat(), "large": _lat(), "all": _lat(p99)}
                                                                           for p, p99 in (("grpc", 30.0), ("mq", 20.0), ("auto", 40.0))}}}
    plots = report.write(tmp_path, results)
    assert "channels_throughput.png" in {p.name for p in plots}
    text = (tmp_path / "report.md").read_text()
    assert "## Channels per VPC size" in text and "| hosts per VPC | path |" in text and "| mixed | auto |" in text
    assert "size where Kafka starts to win (mq goal states/s > grpc's): 10 hosts per VPC" in text
    assert "auto beats both: yes" in text and "ratio channels_auto_vs_mq" in text
    assert "mixed region at light load (40 inputs/s, 3 rounds)" in text and "auto beats both (lower p50 and p99): no" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["ratios"]["channels_auto_vs_grpc"] == 1.5 and saved["ratios"]["channels_light_mq_vs_auto_p99"] == 0.5
