"""`make bench` / `gs-bench` / `python -m bench`: run a suite of scenarios against the real
daemons, print progress and a summary table, write bench-results/<UTC timestamp>/
(results.json, report.md, PNG plots).

Scenarios: storm (1), churn (2), restart (3), strategies (4), channels (the same storm over
gRPC, Kafka and auto per VPC size, and a mixed region), faults (nothing lost, each fault
against a storm), hosts + vpc-storm + memory (5, the scale path), and the baselines: raw
(Kafka producer -> consumer) and fast-path (the main storm through a DPM with --path grpc,
pushed to the simulators' registered fast paths). Suites: default (~5 min on 2 cores), tiny (~2.5 min),
scale (100 .. 1,000,000 simulated hosts; long). Each scenario's hosts are split over
`--sims` simulator processes (default: half the cores; the DPM and the broker need the rest)."""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import os
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gs_bench import baselines, report
from gs_bench.channels import run_channels
from gs_bench.cluster import broker_pids
from gs_bench.faults import run_faults
from gs_bench.footprint import describe as describe_footprint
from gs_bench.footprint import footprint
from gs_bench.giant import run_giant_input
from gs_bench.runner import Env, broker, delete_topics
from gs_bench.scenarios import (
    FAULTS,
    SCENARIOS,
    SUITES,
    Storm,
    Suite,
    run_memory,
    run_restart,
    run_storm,
    run_strategies,
    run_sweep,
    run_vpc_storm,
    sweep_point,
    warm_up,
)
from gsmq import logs, native
from gsmq.broker import broker_name
from gsmq.version import version_line


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v)


def _triple(text: str) -> tuple[int, int, int]:
    h, v, p = _ints(text)
    return h, v, p


def _quad(text: str) -> tuple[int, int, int, int]:
    a, b, c, d = _ints(text)
    return a, b, c, d


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _pair(text: str) -> tuple[int, int]:
    h, p = (int(v) for v in text.split(":"))
    return h, p


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gs-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=version_line("gs-bench"),
                   help="print the version (and the Kafka client's and embedded broker's) and exit")
    p.add_argument("--suite", choices=sorted(SUITES), default="default", help="sizes and scenarios (default: ~5 min on 2 cores)")
    p.add_argument("--scenario", action="append", choices=SCENARIOS, help="run only these (repeatable)")
    p.add_argument("--bootstrap", help="an external Kafka cluster (default: $KAFKA_BOOTSTRAP_SERVERS, else the embedded broker)")
    p.add_argument("--out", type=Path, help="output folder (default: bench-results/<UTC timestamp>)")
    p.add_argument("--sims", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="simulator processes each scenario's hosts are split over, by contiguous host ranges "
                        "(default: half the machine's cores, %(default)s here, since the DPM and the broker need the "
                        "rest: on 2 cores a second simulator made the default storm 1.6x slower; 1: one process for all hosts)")
    sizes = p.add_argument_group("sizes (override the suite's)")
    sizes.add_argument("--hosts", type=int, help="simulated hosts of the main storm")
    sizes.add_argument("--vpcs", type=int, help="VPCs of the main storm")
    sizes.add_argument("--ports", type=int, help="ports of the main storm")
    sizes.add_argument("--streams", type=int, help="concurrent gRPC streams of the caller")
    sizes.add_argument("--churn", type=_floats, help="churn rates as fractions of the storm's max, e.g. 0.1,0.5,0.9")
    sizes.add_argument("--churn-seconds", type=float, help="seconds of each churn phase")
    sizes.add_argument("--pair-runs", type=_positive, help="times the main storm runs on the Kafka path and the gRPC fast path, in turn")
    sizes.add_argument("--restart", type=_triple, metavar="H,V,P", help="agent restart storm: hosts,VPCs,ports")
    sizes.add_argument("--strategies", type=_triple, metavar="H,V,P", help="strategy comparison storm: hosts,VPCs,ports")
    sizes.add_argument("--faults", type=_triple, metavar="H,V,P", help="the storm each fault hits: hosts,VPCs,ports")
    sizes.add_argument("--faults-vpc-ports", type=int, help="ports of the 2-host VPC of the big-vpc-resync fault")
    sizes.add_argument("--giant-input", type=int, metavar="HOSTS", help="hosts listed by the giant-input scenario's input")
    p.add_argument("--fault", action="append", choices=FAULTS, help="run only these faults of the faults scenario (repeatable)")
    sizes.add_argument("--sweep", type=_ints, metavar="N,N,...", help="host counts of the convergence sweep")
    sizes.add_argument("--sweep-ports-per-host", type=int, help="ports per host in the sweep")
    sizes.add_argument("--sweep-hosts-per-vpc", type=int, help="hosts per VPC in the sweep")
    sizes.add_argument("--vpc-storm", type=_pair, action="append", metavar="HOSTS:PORTS", help="a one-VPC storm (repeatable)")
    sizes.add_argument("--channels", type=_ints, metavar="N,N,...", help="hosts per VPC of the channels scenario's storms")
    sizes.add_argument("--channels-hosts", type=int, help="hosts of each channels storm, split in VPCs of each size")
    sizes.add_argument("--channels-ports-per-host", type=int, help="port creates per host in each channels storm")
    sizes.add_argument("--channels-mixed", type=_quad, metavar="S,H,L,H",
                       help="the channels scenario's mixed region: small VPCs, hosts each, large VPCs, hosts each")
    sizes.add_argument("--memory", type=_ints, metavar="N,N,...", help="host counts of idle simulators measured")
    sizes.add_argument("--footprint", type=_ints, metavar="N,N,...",
                       help="host counts whose DPM and simulator state is measured in one process, without Kafka")
    return p.parse_args(argv)


def suite_of(args: argparse.Namespace) -> Suite:
    suite = SUITES[args.suite]
    overrides: dict[str, Any] = {}
    for name in ("hosts", "vpcs", "ports", "streams", "churn", "churn_seconds", "pair_runs", "restart", "strategies", "faults",
                 "faults_vpc_ports", "giant_input", "sweep", "sweep_ports_per_host", "sweep_hosts_per_vpc", "memory", "footprint",
                 "channels", "channels_hosts", "channels_ports_per_host", "channels_mixed"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.vpc_storm:
        overrides["vpc_storms"] = tuple(args.vpc_storm)
    if args.fault:
        overrides["fault_kinds"] = tuple(f for f in FAULTS if f in args.fault)
    if args.scenario:
        overrides["scenarios"] = tuple(s for s in SCENARIOS if s in args.scenario)
    return dataclasses.replace(suite, **overrides)


def run_suite(env: Env, suite: Suite, results: dict[str, Any]) -> None:
    """Every chosen scenario in turn; each adds its figures to `results` as soon as it ends."""
    chosen = set(suite.scenarios)
    storm = Storm(suite.hosts, suite.vpcs, suite.ports)
    if suite.warm_up_rounds and chosen - {"memory", "footprint"}:
        results["warm_up"] = warm_up(env, storm, suite.warm_up_rounds)
    if chosen & {"storm", "churn", "fast-path", "raw"}:
        main = run_storm(env, storm, churn=suite.churn if "churn" in chosen else (), churn_seconds=suite.churn_seconds,
                         fast_path="fast-path" in chosen)
        results["storm"] = main
        if "fast-path" in chosen:
            main["pairs"] = [report.pair_of(main)]
            for i in range(2, suite.pair_runs + 1):
                env.say(f"pair {i} of {suite.pair_runs}: the main storm on the Kafka path, then on the gRPC fast path ...")
                main["pairs"].append(report.pair_of(run_storm(env, storm, fast_path=True)))
        if "raw" in chosen:
            size = round(main["avg_message_bytes"])
            runs = suite.raw_runs
            env.say(f"raw Kafka ceiling: {main['messages_published']:,} messages of {size} B, {runs} run(s) ...")
            raw_topic = f"braw{int(time.time())}"
            raw = results["raw_ceiling"] = baselines.best_run(
                [baselines.raw_kafka(env.bootstrap, f"{raw_topic}.max{i}", storm.host_list, main["messages_published"], size)
                 for i in range(runs)], lambda r: -r["messages_per_s"])
            env.say(f"  {raw['messages_per_s']:,.0f} msg/s (best run), p99 {raw['latency_ms']['p99']:.1f} ms")
            half = next((p for p in main.get("churn", []) if abs(p["fraction"] - 0.5) < 1e-9), None)
            if half:  # the same message rate and size as the 50 % churn phase produced
                rate = half["messages_published"] / max(half["duration_s"], 1e-9)
                size = round(half["avg_message_bytes"])
                count = max(100, int(rate * suite.churn_seconds))
                env.say(f"raw Kafka at the 50 % churn's rate: {count:,} messages of {size} B at {rate:,.0f}/s, {runs} run(s) ...")
                raw50 = results["raw_at_50"] = baselines.best_run(
                    [baselines.raw_kafka(env.bootstrap, f"{raw_topic}.half{i}", storm.host_list, count, size, rate=rate)
                     for i in range(runs)], lambda r: r["latency_ms"]["p99"])
                env.say(f"  p50 {raw50['latency_ms']['p50']:.1f} ms, p99 {raw50['latency_ms']['p99']:.1f} ms (best run)")
            if env.external:
                delete_topics(env.bootstrap, raw_topic, env.say)
    if "restart" in chosen:
        h, v, p = suite.restart
        results["restart"] = run_restart(env, Storm(h, v, p), suite.restart_fraction)
    if "strategies" in chosen:
        h, v, p = suite.strategies
        results["strategies"] = run_strategies(env, Storm(h, v, p))
    if "channels" in chosen:
        run_channels(env, suite.channels, suite.channels_hosts, suite.channels_ports_per_host, suite.channels_mixed,
                     results.setdefault("channels", {}))
    if "giant-input" in chosen:
        results["giant_input"] = run_giant_input(env, suite.giant_input, suite.giant_window_s)
    if "faults" in chosen:
        h, v, p = suite.faults
        rows: list[dict[str, Any]] = results.setdefault("faults", [])
        for row in run_faults(env, Storm(h, v, p), suite.faults_vpc_ports, suite.fault_kinds, suite.faults_pause_s):
            rows.append(row)  # noqa: PERF402 - one at a time, as each is measured
    # Multi-point scenarios keep each point in `results` as it comes: an interrupted run reports them.
    if "hosts" in chosen:
        points: list[dict[str, Any]] = results.setdefault("convergence_vs_hosts", [])
        ran: dict[str, Any] | None = results.get("storm")
        if ran and ran["hosts"] not in suite.sweep and ran["hosts_per_vpc"] == suite.sweep_hosts_per_vpc \
                and ran["ports"] == suite.sweep_ports_per_host * ran["hosts"]:
            points.append(sweep_point(ran))  # the main storm is the sweep's shape: one more point
        for point in run_sweep(env, suite.sweep, suite.sweep_ports_per_host, suite.sweep_hosts_per_vpc):
            bisect.insort(points, point, key=lambda p: p["hosts"])
    if "vpc-storm" in chosen:
        storms: list[dict[str, Any]] = results.setdefault("vpc_storms", [])
        for h, p in suite.vpc_storms:
            storms.append(run_vpc_storm(env, h, p))
    if "memory" in chosen:
        memory: list[dict[str, Any]] = results.setdefault("memory", [])
        for point in run_memory(env, suite.memory):
            memory.append(point)  # noqa: PERF402 - one at a time, as each is measured
    if "footprint" in chosen:
        kept: list[dict[str, Any]] = results.setdefault("footprint", [])
        for hosts in suite.footprint:
            env.say(f"footprint: the DPM's and the simulator's state after a storm of {hosts:,} hosts, in memory ...")
            kept.append(footprint(hosts, suite.sweep_hosts_per_vpc, suite.sweep_ports_per_host))
            env.say("  " + describe_footprint(kept[-1]))


def run(args: argparse.Namespace) -> tuple[Path, dict[str, Any], int]:
    suite = suite_of(args)
    started = datetime.now(UTC)
    out: Path = args.out or Path("bench-results") / started.strftime("%Y%m%dT%H%M%SZ")
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {text}", flush=True)

    results: dict[str, Any] = {"started": started.isoformat(), "machine": report.machine(),
                               "config": {"suite": args.suite, **dataclasses.asdict(suite), "sims": args.sims, "argv": sys.argv[1:]}}
    code = 0
    say(f"gs-bench: suite {args.suite}: {', '.join(suite.scenarios)}; writing {out}")
    try:
        with broker(args.bootstrap) as (bootstrap, external):
            results["config"]["broker"] = broker_name(bootstrap)
            results["config"]["bootstrap"] = bootstrap if external else f"embedded {broker_name(bootstrap)} ({bootstrap})"
            env = Env(bootstrap, out / "logs", say, suite.streams, external=external, sims=max(1, args.sims),
                      broker_pids=broker_pids(bootstrap))
            run_suite(env, suite, results)
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C, or SIGTERM (the broker's handler exits)
        say("interrupted: daemons stopped; writing what was measured")
        results["error"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"terminated ({exc.code})"
        code = 130 if isinstance(exc, KeyboardInterrupt) else 143
    except Exception as exc:  # noqa: BLE001 - reported, partial results kept
        traceback.print_exc()
        results["error"] = f"{type(exc).__name__}: {exc}"
        code = 1
    results["elapsed_s"] = time.monotonic() - t0
    report.write(out, results)
    return out, results, code


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    refused = native.refusal()
    if refused:  # the daemons would run code built from other sources
        print(f"gs-bench: {refused}", file=sys.stderr)
        return 2
    logs.configure(level="warning")  # the bench speaks through `say`; in-process daemons (footprint) only warn
    out, results, code = run(args)
    print("\n" + report.table(report.summary_rows(results)))
    if results.get("channels", {}).get("points") or results.get("channels", {}).get("mixed"):
        print("\n" + "\n".join(report.channels_text(results["channels"])))
    print("\ntargets (measured, never asserted):")
    for t in results["targets"]:
        print(f"  {t['target']}: {t['by']}")
    print(f"\nwritten: {out}/results.json, report.md, {len(results.get('plots', []))} plots ({results['elapsed_s']:.0f} s)")
    if "error" in results:
        print(f"gs-bench: stopped early: {results['error']}", file=sys.stderr)
    return code
