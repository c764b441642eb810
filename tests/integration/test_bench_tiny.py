"""The bench end to end at a tiny size: real broker, real daemons, every output file.
Checks structure and counts, never timings."""

from __future__ import annotations

import json
from pathlib import Path

from bench.main import main


def test_tiny_suite_writes_results_report_and_plots(tmp_path: Path, bootstrap: str) -> None:
    out = tmp_path / "run"
    assert main(["--suite", "tiny", "--bootstrap", bootstrap, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    for key in ("storm", "raw_ceiling", "raw_at_50", "restart", "strategies", "memory", "convergence_vs_hosts", "vpc_storm",
                "ratios", "targets", "machine", "config"):
        assert key in results, key
    storm = results["storm"]
    assert storm["inputs"] == storm["ports"] == 40
    assert storm["failures"] == 0
    assert storm["replies"] > 0 and storm["messages_published"] > 0 and storm["bytes_published"] > 0
    assert storm["bytes_consumed"] >= storm["bytes_published"]  # every message reaches at least one host
    assert storm["publish_to_applied_ms"]["count"] == storm["replies"]
    assert [p["fraction"] for p in storm["churn"]] == [0.5] and storm["churn"][0]["inputs"] > 0
    assert storm["grpc_fast_path"]["inputs"] == 40 and storm["grpc_fast_path"]["failures"] == 0
    assert results["raw_ceiling"]["messages"] == storm["messages_published"]
    assert results["restart"]["matches_snapshot"] is True and results["restart"]["killed_hosts"] == 2
    assert [s["strategy"] for s in results["strategies"]] == ["vpc-multicast", "unicast-only", "topic-per-host"]
    assert results["strategies"][1]["multicast_messages"] == 0
    assert all(s["steady"]["inputs"] > 0 for s in results["strategies"])
    assert results["memory"][0]["hosts"] == 100 and results["memory"][0]["rss_bytes"] > 0
    assert {t["target"] for t in results["targets"]} and all("by" in t for t in results["targets"])
    assert all(isinstance(v, str) for v in results["machine"]["versions"].values())
    report = (out / "report.md").read_text()
    assert "## Targets" in report and "ratio throughput_vs_raw" in report
    for plot in ("latency_cdf.png", "throughput_per_strategy.png", "bytes_per_strategy.png", "convergence_vs_hosts.png"):
        assert (out / plot).stat().st_size > 1000, plot
