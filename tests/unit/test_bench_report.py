"""Bench arithmetic and report structure, from synthetic figures."""

from __future__ import annotations

from pathlib import Path

from bench import report
from bench.collect import percentiles
from bench.topology import Storm, host_ids, resources_in


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0, "count": 100}
    assert percentiles([])["count"] == 0


def test_storm_gives_every_host_a_port_first_and_neighbors_to_the_rest_of_its_vpc() -> None:
    storm = Storm(host_ids(6), vpcs=2, ports=8)
    ports = storm.port_list()
    layout = storm.vpc_hosts()
    assert layout == {"vpc-0": ["10.1.0.1", "10.1.0.3", "10.1.0.5"], "vpc-1": ["10.1.0.2", "10.1.0.4", "10.1.0.6"]}
    assert {p.host for p in ports[:6]} == set(storm.hosts)  # bring-up round first
    first = storm.creates()[0]
    # port + DHCP for its host, one neighbor for each of the 2 other hosts of the VPC
    assert resources_in(first) == 4
    assert len({p.id for p in ports}) == len({p.ip for p in ports}) == 8


def _synthetic(multicast_bytes: int, unicast_bytes: int) -> dict:
    lat = {"p50": 1.0, "p95": 2.0, "p99": 4.0, "max": 5.0, "count": 3}
    storm = {"hosts": 10, "vpcs": 1, "ports": 3, "inputs": 3, "resources": 9, "convergence_s": 1.0, "goal_states_per_s": 3.0,
             "resources_per_s": 9.0, "messages_per_s": 50.0, "publish_to_applied_ms": lat, "caller_reply_ms": lat,
             "bytes_published": 10, "bytes_consumed": 20, "sim_rss_bytes": 2**20, "sim_rss_per_host_bytes": 1024.0, "cdf_publish_to_applied_ms": [1.0, 2.0, 5.0],
             "churn": [{"fraction": 0.5, "offered_per_s": 2.0, "publish_to_applied_ms": {**lat, "p99": 20.0},
                        "cdf_publish_to_applied_ms": [1.0]}]}
    strategies = [{**storm, "strategy": "vpc-multicast", "bytes_published": multicast_bytes, "messages_published": 1,
                   "steady": {"inputs": 1, "bytes_published": multicast_bytes // 2, "messages_published": 1}},
                  {**storm, "strategy": "unicast-only", "bytes_published": unicast_bytes, "messages_published": 9,
                   "steady": {"inputs": 1, "bytes_published": unicast_bytes // 2, "messages_published": 9}}]
    return {"started": "now", "machine": report.machine(), "config": {"suite": "synthetic"}, "storm": storm,
            "raw_ceiling": {"messages_per_s": 100.0, "latency_ms": lat},
            "raw_at_50": {"latency_ms": {**lat, "p99": 5.0}, "cdf_latency_ms": [1.0]},
            "strategies": strategies, "memory": [{"hosts": 10000, "rss_bytes": 1, "per_host_bytes": 2048.0}],
            "convergence_vs_hosts": [{"hosts": 10, "convergence_s": 1.0}, {"hosts": 100, "convergence_s": 2.0}]}


def test_ratios_and_targets_say_met_or_missed_by_how_much(tmp_path: Path) -> None:
    results = _synthetic(multicast_bytes=100, unicast_bytes=2000)
    r = report.ratios(results)
    assert r == {"throughput_vs_raw": 0.5, "p99_vs_raw_p99": 4.0, "multicast_vs_unicast_bytes": 0.05,
                 "multicast_vs_unicast_bytes_whole_storm": 0.05}
    verdicts = {t["target"]: t for t in report.targets(results)}
    assert verdicts["goal-state throughput >= 0.7x raw ceiling"]["met"] is False
    assert "1.4x off" in verdicts["goal-state throughput >= 0.7x raw ceiling"]["by"]
    assert verdicts["p99 publish->applied <= 10 ms at 50% rate"]["met"] is False
    assert verdicts["multicast >= 10x fewer bytes than unicast-only (VPCs >= 100 hosts)"]["met"] is True
    assert verdicts["<= 100 KiB RSS per simulated host at 10,000 hosts"]["met"] is True
    assert verdicts["10,000-port VPC storm on 1,000 hosts converged < 5 s"]["met"] is None
    report.write(tmp_path, results)
    text = (tmp_path / "report.md").read_text()
    assert "missed" in text and "ratio multicast_vs_unicast_bytes" in text
    assert (tmp_path / "latency_cdf.png").exists() and (tmp_path / "convergence_vs_hosts.png").exists()
