"""The bench end to end at the tiny size: the real embedded broker, the real daemons as
processes, every output file. Checks structure, counts and types, never timings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from gs_bench import measure
from gs_bench.channels import LIGHT_EVERY
from gs_bench.cluster import broker_pids
from gs_bench.main import main
from gs_bench.report import PLOTS
from gs_bench.scenarios import FAULTS, STRATEGIES, SUITES, WARM_JIT_CORES

LATENCY = {"p50", "p95", "p99", "max", "count"}


def _latency(figures: dict[str, Any], key: str) -> None:
    assert set(figures[key]) == LATENCY, key
    assert figures[key]["count"] > 0 and all(isinstance(v, (int, float)) for v in figures[key].values())


def test_tiny_suite_writes_results_report_and_plots(tmp_path: Path, bootstrap: str) -> None:
    out = tmp_path / "run"
    assert main(["--suite", "tiny", "--bootstrap", bootstrap, "--out", str(out), "--sims", "2"]) == 0
    results = json.loads((out / "results.json").read_text())
    tiny = SUITES["tiny"]
    for key in ("storm", "raw_ceiling", "raw_at_50", "restart", "strategies", "channels", "faults", "giant_input", "memory",
                "convergence_vs_hosts", "vpc_storms", "ratios", "targets", "machine", "config", "plots", "elapsed_s", "started"):
        assert key in results, key
    assert "error" not in results
    assert results["config"]["suite"] == "tiny" and results["config"]["hosts"] == tiny.hosts and results["config"]["sims"] == 2

    # the warm-up: rounds of the main storm and a short churn while the broker's JIT compilers were busy
    rounds = results["warm_up"]["rounds"]
    assert 1 <= len(rounds) <= tiny.warm_up_rounds and all(r["jit_cores"] >= 0 and r["convergence_s"] > 0 for r in rounds)
    assert all(r["jit_cores"] >= WARM_JIT_CORES for r in rounds[:-1])  # a round below the bar was the last

    storm = results["storm"]
    assert storm["inputs"] == storm["ports"] == tiny.ports and storm["failures"] == 0
    assert storm["hosts_replied"] == tiny.hosts  # every host applied something
    assert storm["replies"] > 0 and storm["messages_published"] > 0 and storm["bytes_published"] > 0
    assert storm["multicast_messages"] > 0 and storm["unicast_messages"] > 0
    assert storm["bytes_consumed"] >= storm["bytes_published"]  # every message reaches at least one host
    assert storm["resources"] > storm["inputs"] and storm["goal_states_per_s"] > 0 and storm["convergence_s"] > 0
    _latency(storm, "publish_to_applied_ms")
    _latency(storm, "caller_reply_ms")
    assert storm["publish_to_applied_ms"]["count"] == storm["replies"]
    # two simulator processes; every host acks on its own; bytes through the broker; memory; the region fan-out
    assert storm["simulators"] == 2 and 0 < storm["acks_received"] <= storm["replies"] and storm["ack_bytes"] > 0
    assert storm["broker_bytes_in"] == storm["bytes_published"] + storm["ack_bytes"]
    assert storm["broker_bytes_out"] == storm["bytes_consumed"] + storm["ack_bytes"]
    assert storm["dpm_rss_bytes"] > 0 and storm["dpm_resources"] > 0 and storm["sim_resources"] > 0
    fan = storm["fanout"]
    assert fan["topic_bytes"] >= storm["bytes_published"] and fan["sims_fetched_bytes"] >= storm["bytes_consumed"]
    assert fan["region_fetch_bytes"] >= fan["sims_fetched_bytes"]  # one process per many hosts fetches less than they would
    assert results["ratios"]["region_fetch_vs_sims_fetch"] == fan["region_vs_sims_fetch"] >= 1.0
    # where the CPU went while pushing: every part's processes read, the broker's when it runs on this machine
    cores, here = storm["cpu"]["cores"], bool(broker_pids(bootstrap))
    waits = {"dpm_event_loop_waiting"} if measure.COUNTS_WAITS else set()  # run-queue waits, where the kernel counts them
    assert set(cores) == {"dpm", "dpm_event_loop", "simulators", "bench"} | ({"broker"} if here else set()) | waits
    assert all(cores[w] >= 0 for w in waits)
    wall = storm["cpu"]["wall_s"]
    assert wall > 0 and cores["dpm"] + cores["simulators"] + cores.get("broker", 0) > 0
    # the event loop is one of the DPM's threads; the two are read a moment apart, each in clock ticks of 10 ms
    assert 0 <= cores["dpm_event_loop"] <= cores["dpm"] + 2 * 0.01 / wall
    assert [p["fraction"] for p in storm["churn"]] == list(tiny.churn)
    for phase in storm["churn"]:
        assert phase["inputs"] > 0 and phase["failures"] == 0 and phase["offered_per_s"] > 0
        _latency(phase, "publish_to_applied_ms")
        assert set(phase["cpu"]["cores"]) == set(cores)
    assert storm["path"] == "mq" and storm["grpc_messages"] == 0 and storm["kafka_bytes"] == storm["bytes_published"]
    # the gRPC fast path: the same storm through a DPM with --path grpc, to the simulators' registered fast paths
    fast = storm["grpc_fast_path"]
    assert fast["inputs"] == tiny.ports and fast["failures"] == 0 and fast["goal_states_per_s"] > 0 and fast["simulators"] == 2
    assert fast["path"] == "grpc" and fast["grpc_messages"] > 0 and fast["grpc_bytes"] > 0 and fast["bytes_pushed"] > 0
    _latency(fast, "caller_reply_ms")
    assert storm["pairs"] == [{"kafka_goal_states_per_s": storm["goal_states_per_s"], "grpc_goal_states_per_s": fast["goal_states_per_s"]}]

    raw = results["raw_ceiling"]
    assert raw["messages"] == storm["messages_published"] and raw["messages_per_s"] > 0 and raw["bytes"] > 0
    _latency(raw, "latency_ms")
    assert results["raw_at_50"]["messages"] > 0 and results["raw_at_50"]["offered_per_s"] > 0

    restart = results["restart"]
    assert restart["matches_snapshot"] is True and restart["survivors_match_snapshot"] is True
    assert restart["killed_hosts"] == max(1, int(tiny.restart[0] * tiny.restart_fraction)) and restart["failures"] == 0
    assert restart["resyncs_served"] >= restart["killed_hosts"] and restart["hosts_resynced"] == restart["killed_hosts"]
    assert isinstance(restart["resync_s"], float)
    assert results["config"]["sims"] == 2  # the survivors in one process (sims - 1), the victims in their own

    strategies = results["strategies"]
    assert [s["strategy"] for s in strategies] == list(STRATEGIES)
    assert all(s["failures"] == 0 and s["steady"]["inputs"] > 0 and s["bytes_published"] > 0 for s in strategies)
    assert strategies[1]["multicast_messages"] == 0 and strategies[0]["multicast_messages"] > 0
    assert strategies[0]["steady"]["bytes_published"] < strategies[1]["steady"]["bytes_published"]

    # channels: every size on every path, then the mixed region on every path; values sane, never timed
    ch = results["channels"]
    assert ch["sizes"] == list(tiny.channels) and ch["paths"] == ["grpc", "mq", "auto"]
    points = {(p["hosts_per_vpc"], p["path"]): p for p in ch["points"]}
    assert set(points) == {(s, path) for s in tiny.channels for path in ("grpc", "mq", "auto")}
    for (size, path), p in points.items():
        assert p["inputs"] == p["ports"] == max(tiny.channels_hosts, size) * tiny.channels_ports_per_host and p["failures"] == 0
        assert p["goal_states_per_s"] > 0 and p["convergence_s"] > 0 and p["bytes_published"] > 0
        assert (p["agents_registered"] == 0) == (path == "mq") and p["out_of_order"] == 0
        _latency(p, "caller_reply_ms")
        if path == "mq":
            assert p["grpc_messages"] == p["grpc_bytes"] == 0 and p["kafka_bytes"] == p["bytes_published"] and p["vpcs_on_grpc"] == 0
            _latency(p, "publish_to_applied_ms")
            assert p["broker_bytes_in"] == p["kafka_bytes"] + p["ack_bytes"]
        else:  # small VPCs, far below auto's bounds: all on gRPC while the fast paths are up
            assert p["grpc_messages"] > 0 and p["grpc_bytes"] > 0 and p["vpcs_on_grpc"] <= p["vpcs"]
    runs = {r["path"]: r for r in ch["mixed"]}
    assert list(runs) == ["grpc", "mq", "auto"] and all(r["failures"] == 0 and r["goal_states_per_s"] > 0 for r in runs.values())
    auto = runs["auto"]  # the large VPC, set up past the upper bound, went to Kafka; the small ones stayed on gRPC
    assert auto["path_switches"] >= 1 and auto["kafka_bytes"] > 0 and auto["grpc_bytes"] > 0
    assert runs["mq"]["grpc_bytes"] == 0 and runs["grpc"]["path_switches"] == 0
    assert {"channels_auto_vs_grpc", "channels_auto_vs_mq"} <= set(results["ratios"])
    light = ch["light"]  # every path, every class, every measured round's inputs
    small_vpcs, small_hosts, large_vpcs, large_hosts = tiny.channels_mixed
    # a round: every LIGHT_EVERY-th of one port create per host, small and large VPCs apart
    region = len(range(small_vpcs * small_hosts)[::LIGHT_EVERY]) + len(range(large_vpcs * large_hosts)[::LIGHT_EVERY])
    assert set(light["paths"]) == {"grpc", "mq", "auto"} and light["rounds"] >= 1
    assert all(f["all"]["count"] == region * light["rounds"] and f["small"]["p50"] > 0 and f["large"]["p50"] > 0
               and f["failures"] == 0 for f in light["paths"].values())
    assert results["ratios"]["channels_light_mq_vs_auto_p99"] == light["paths"]["mq"]["all"]["p99"] / light["paths"]["auto"]["all"]["p99"]
    assert results["ratios"]["channels_auto_vs_mq"] == auto["goal_states_per_s"] / runs["mq"]["goal_states_per_s"]

    giant = results["giant_input"]
    assert giant["hosts"] == tiny.giant_input and giant["sliced"]["slice_hosts"] < giant["hosts"] == giant["whole"]["slice_hosts"]
    for mode in ("sliced", "whole"):
        assert giant[mode]["before_ms"]["count"] > 0 and giant[mode]["during_ms"]["count"] == giant[mode]["answered_during"]

    # every fault: nothing a caller was told SUCCESS is missing, every host back to its desired state, nothing forgotten
    faults = {f["fault"]: f for f in results["faults"]}
    assert list(faults) == list(FAULTS)
    for name, f in faults.items():
        assert (f["wrong_success"], f["hosts_differing"], f["lost_acknowledged"]) == (0, 0, 0), (name, f)
        assert f["acknowledged_pairs"] > 0 and isinstance(f["converge_s"], float), (name, f)
        assert name == "big-vpc-resync" or f["unanswered_at_fault"] > 0, (name, f)  # the fault hit the storm, not its end
    assert faults["dpm-kill"]["inputs_resent"] > 0  # the killed DPM left inputs unanswered, and callers sent them again
    assert faults["agents-killed"]["killed_hosts"] == tiny.faults[0] // 10
    assert faults["big-vpc-resync"]["ports"] == tiny.faults_vpc_ports
    assert {t["target"]: t["met"] for t in results["targets"] if t["target"].startswith("faults:")} == {
        "faults: wrong SUCCESS = 0": True, "faults: hosts differing from the desired state = 0": True,
        "faults: lost acknowledged states = 0": True}

    assert set(tiny.sweep) <= {p["hosts"] for p in results["convergence_vs_hosts"]}
    assert all(p["convergence_s"] > 0 and p["sim_rss_per_host_bytes"] > 0 and p["dpm_rss_per_host_bytes"] > 0
               and p["fanout"]["region_fetch_bytes"] > 0 and set(p["cpu"]["cores"]) == set(cores) for p in results["convergence_vs_hosts"])
    assert "convergence_growth_exponent" in results
    assert [(s["hosts"], s["ports"]) for s in results["vpc_storms"]] == list(tiny.vpc_storms)
    assert all(s["vpcs"] == 1 and s["failures"] == 0 for s in results["vpc_storms"])
    assert [m["hosts"] for m in results["memory"]] == list(tiny.memory) and results["memory"][0]["rss_bytes"] > 0
    assert all(m["simulators"] == 2 for m in results["memory"])

    assert set(results["ratios"]) >= {"throughput_vs_raw", "p99_vs_raw_p99", "unicast_vs_multicast_bytes"}
    assert all(isinstance(v, float) for v in results["ratios"].values() if v is not None)
    assert len(results["targets"]) == 11 and all({"target", "measured", "met", "by"} <= set(t) for t in results["targets"])
    machine = results["machine"]
    assert machine["cpus"] >= 1 and machine["memory_bytes"] > 0
    assert all(isinstance(v, str) for v in machine["versions"].values())

    # --bootstrap names a cluster the bench does not own: every topic it made is deleted again
    prefixes = tuple(f"{d.name}." for d in (out / "logs").iterdir())
    assert len(prefixes) >= 8
    left = [t for t in AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
            if t.startswith(prefixes) or t.startswith("braw")]
    assert left == []

    report = (out / "report.md").read_text()
    assert "## Summary" in report and "## Targets" in report and "ratio throughput_vs_raw" in report
    assert "| CPU while pushing: cores busy | DPM " in report
    assert "## Channels per VPC size" in report and "size where Kafka starts to win" in report
    assert (out / "channels_throughput.png").stat().st_size > 1000
    for plot in PLOTS:
        assert (out / plot).stat().st_size > 1000, plot
        assert plot in results["plots"] and plot in report
