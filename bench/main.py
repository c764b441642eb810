"""`make bench` / `gs-bench`: run a suite of scenarios, print progress and a summary,
write bench/results/<UTC timestamp>/ (results.json, report.md, PNG plots)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.scenarios import Env, run_memory, run_raw, run_restart, run_storm
from bench.topology import Storm, host_ids
from gsmq.broker import embedded_or_external

SCENARIOS = ("storm", "churn", "fast-path", "raw", "restart", "strategies", "hosts", "memory", "vpc-storm")


@dataclass(frozen=True)
class Suite:
    hosts: int
    vpcs: int
    ports: int
    churn: tuple[float, ...]
    churn_seconds: float
    restart: tuple[int, int, int]  # hosts, vpcs, ports
    strategies: tuple[int, int, int]
    convergence_hosts: tuple[int, ...]  # extra storms of 3 ports per host, VPCs of 100 hosts
    memory: tuple[int, ...]
    vpc_storm: tuple[int, int] | None  # hosts, ports of one VPC
    scenarios: tuple[str, ...]


SUITES = {
    "default": Suite(1000, 10, 3000, (0.1, 0.5, 0.9), 8.0, (1000, 10, 2000), (200, 2, 600), (100, 300), (1000, 10000), None,
                     ("storm", "churn", "fast-path", "raw", "restart", "strategies", "hosts", "memory")),
    "tiny": Suite(20, 2, 40, (0.5,), 2.0, (20, 2, 40), (10, 1, 20), (10,), (100,), (10, 20), SCENARIOS),
    "scale": Suite(1000, 10, 3000, (), 0.0, (1000, 10, 1000), (200, 2, 600), (100, 1000, 10000), (100, 1000, 10000, 100000),
                   (1000, 10000), ("hosts", "memory", "vpc-storm")),
}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gs-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=sorted(SUITES), default="default", help="sizes and scenarios (default: ~5 min on 2 cores)")
    p.add_argument("--scenario", action="append", choices=SCENARIOS, help="run only these (repeatable)")
    p.add_argument("--hosts", type=int, help="simulated hosts of the main storm")
    p.add_argument("--vpcs", type=int, help="VPCs of the main storm")
    p.add_argument("--ports", type=int, help="ports of the main storm")
    p.add_argument("--bootstrap", help="an external Kafka cluster (default: the embedded broker, or $KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--out", type=Path, help="output folder (default: bench/results/<UTC timestamp>)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    suite = SUITES[args.suite]
    chosen = set(args.scenario or suite.scenarios)
    started = datetime.now(UTC)
    out = args.out or Path("bench/results") / started.strftime("%Y%m%dT%H%M%SZ")
    storm = Storm(host_ids(args.hosts or suite.hosts), args.vpcs or suite.vpcs, args.ports or suite.ports)
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {text}", flush=True)

    results: dict[str, Any] = {"started": started.isoformat(), "machine": report.machine(),
                               "config": {"suite": args.suite, "scenarios": sorted(chosen), **vars(suite),
                                          "hosts": len(storm.hosts), "vpcs": storm.vpcs, "ports": storm.ports}}
    with embedded_or_external(args.bootstrap) as bootstrap:
        results["config"]["bootstrap"] = "embedded" if not args.bootstrap else bootstrap
        env = Env(bootstrap, out / "logs", say)
        if chosen & {"storm", "churn", "fast-path", "raw"}:
            main = run_storm(env, storm, churn=suite.churn if "churn" in chosen else (), churn_seconds=suite.churn_seconds,
                             fast_path="fast-path" in chosen)
            results["storm"] = main
            if "raw" in chosen:
                size = int(main["avg_message_bytes"])
                results["raw_ceiling"] = run_raw(env, main["messages_published"], size, storm.hosts)
                half = next((p for p in main.get("churn", []) if p["fraction"] == 0.5), None)
                if half:
                    per_input = main["messages_published"] / max(main["inputs"], 1)
                    rate = half["offered_per_s"] * per_input
                    results["raw_at_50"] = run_raw(env, max(100, int(rate * suite.churn_seconds)), size, storm.hosts, rate=rate)
            results["convergence_vs_hosts"] = [{"hosts": main["hosts"], "ports": main["ports"], "convergence_s": main["convergence_s"]}]
        if "restart" in chosen:
            h, v, n = suite.restart
            results["restart"] = run_restart(env, Storm(host_ids(h), v, n))
        if "strategies" in chosen:
            h, v, n = suite.strategies
            results["strategies"] = [run_storm(env, Storm(host_ids(h), v, n), strategy)
                                     for strategy in ("vpc-multicast", "unicast-only", "topic-per-host")]
        if "hosts" in chosen:
            points = results.setdefault("convergence_vs_hosts", [])
            for count in suite.convergence_hosts:
                s = run_storm(env, Storm(host_ids(count), max(1, count // 100), 3 * count))
                points.append({"hosts": count, "ports": s["ports"], "convergence_s": s["convergence_s"]})
        if "memory" in chosen:
            results["memory"] = run_memory(env, list(suite.memory))
        if "vpc-storm" in chosen and suite.vpc_storm:
            h, n = suite.vpc_storm
            results["vpc_storm"] = run_storm(env, Storm(host_ids(h), 1, n))
    results["elapsed_s"] = time.monotonic() - t0
    report.write(out, results)
    return out, results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        out, results = run(args)
    except KeyboardInterrupt:
        print("gs-bench: interrupted", file=sys.stderr)
        return 130
    print("\n" + report.table(report.summary_rows(results)))
    print("\ntargets:")
    for t in results["targets"]:
        print(f"  {t['target']}: {t['by']}")
    print(f"\nwritten: {out}/results.json, report.md and plots ({results['elapsed_s']:.0f}s)")
    return 0
