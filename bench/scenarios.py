"""The scenarios: each starts its own DPM and simulator processes on a fresh topic
prefix, drives the DPM over gRPC like a real caller, and returns its figures."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import baselines
from bench.cluster import Daemon, agent_status, dpm_status, host_snapshot, host_state, start_dpm, start_sim, wait_for
from bench.collect import Push, ReplyCollector, percentiles, push
from bench.topology import Storm, host_ids, resources_in, tables_of
from gsmq.kafka import KafkaSettings
from gsmq.topics import Topics

Progress = Callable[[str], None]


@dataclass
class Env:
    """Where scenarios run: the broker, a scratch folder for logs, a progress printer."""

    bootstrap: str
    workdir: Path
    say: Progress


@dataclass
class Cluster:
    dpm: Daemon
    sims: list[Daemon]
    topics: Topics
    collector: ReplyCollector

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.dpm.status_port}"


@contextmanager
def cluster(env: Env, strategy: str, sims: list[tuple[int, str]], *dpm_args: str, sim_args: tuple[str, ...] = ()) -> Iterator[Cluster]:
    """A DPM and one simulator per (hosts, first host), on a fresh topic prefix."""
    topics = Topics(f"b{uuid.uuid4().hex[:8]}")
    logs = env.workdir / topics.prefix
    logs.mkdir(parents=True, exist_ok=True)
    dpm = start_dpm(logs, env.bootstrap, topics.prefix, strategy, "--reply-timeout", "60", "--retry-after", "20", *dpm_args)
    running = Cluster(dpm, [], topics, None)  # type: ignore[arg-type]
    try:
        for i, (count, first) in enumerate(sims):
            running.sims.append(start_sim(logs, env.bootstrap, topics.prefix, dpm.status_port, count, first, f"s{i}", *sim_args))
        running.collector = ReplyCollector(KafkaSettings(env.bootstrap), topics.reply)
        yield running
    finally:
        if running.collector is not None:
            running.collector.close()
        for daemon in [*running.sims, dpm]:  # the simulators running now, restarted ones included
            daemon.stop()


def _settle(collector: ReplyCollector, quiet: float = 0.5, deadline: float = 60.0) -> None:
    """Wait until no new reply has arrived for `quiet` seconds."""
    end = time.monotonic() + deadline
    last = -1
    while time.monotonic() < end:
        count = collector.count()
        if count == last:
            return
        last = count
        time.sleep(quiet)


def storm_figures(c: Cluster, storm: Storm, result: Push, resources: int) -> dict[str, Any]:
    """Throughput, latency, convergence and bytes of one storm."""
    _settle(c.collector)
    start, end = result.sent_ns[0], result.reply_ns[-1] + 1
    window = c.collector.window(start, end + 60_000_000_000)
    applied = [a for _, a, _ in window]
    dpm = dpm_status(c.dpm.status_port)
    agents = [agent_status(s.status_port) for s in c.sims]
    convergence = (max(applied) - start) / 1e9 if applied else result.duration_s
    return {
        "hosts": len(storm.hosts), "vpcs": storm.vpcs, "ports": storm.ports,
        "inputs": len(result.sent_ns), "resources": resources, "failures": result.failures,
        "duration_s": result.duration_s, "convergence_s": convergence,
        "goal_states_per_s": len(result.sent_ns) / result.duration_s,
        "resources_per_s": resources / result.duration_s,
        "messages_published": dpm.messages_published, "unicast_messages": dpm.unicast_messages,
        "multicast_messages": dpm.multicast_messages, "bytes_published": dpm.bytes_published,
        "bytes_consumed": sum(a.bytes_consumed for a in agents), "replies": len(window),
        "messages_per_s": dpm.messages_published / convergence if convergence else 0.0,
        "publish_to_applied_ms": percentiles([(a - s) / 1e6 for s, a, _ in window]),
        "caller_reply_ms": percentiles(result.latencies_ms()),
        "avg_message_bytes": dpm.bytes_published / max(dpm.messages_published, 1),
        "sim_rss_bytes": sum(a.rss_bytes for a in agents),
        "sim_rss_per_host_bytes": sum(a.rss_bytes for a in agents) / max(len(storm.hosts), 1),
        "cdf_publish_to_applied_ms": _sample(sorted((a - s) / 1e6 for s, a, _ in window)),
    }


def _sample(ordered: list[float], points: int = 200) -> list[float]:
    """At most `points` values spread evenly over a sorted list (for CDF plots)."""
    if len(ordered) <= points:
        return ordered
    return [ordered[int(i * (len(ordered) - 1) / (points - 1))] for i in range(points)]


def run_storm(env: Env, storm: Storm, strategy: str = "vpc-multicast", churn: tuple[float, ...] = (), churn_seconds: float = 8.0,
              fast_path: bool = False) -> dict[str, Any]:
    """Scenario 1 (and 2, 4): a port storm; then optional churn phases at fractions of its rate."""
    sim_args = ("--channel", "topic-per-host") if strategy == "topic-per-host" else ()
    if fast_path:
        sim_args = (*sim_args, "--grpc-port", str(_free()))
    with cluster(env, strategy, [(len(storm.hosts), storm.hosts[0])], sim_args=sim_args) as c:
        push(c.address, storm.subnets())
        creates = storm.creates()
        env.say(f"storm[{strategy}]: {len(storm.hosts)} hosts, {storm.vpcs} VPCs, {storm.ports} ports ...")
        # The first round gives every host its first port (bring-up); the rest is steady state.
        bring_up = min(len(storm.hosts), len(creates))
        first = push(c.address, creates[:bring_up])
        before = dpm_status(c.dpm.status_port)
        rest = push(c.address, creates[bring_up:]) if len(creates) > bring_up else Push()
        result = Push(first.sent_ns + rest.sent_ns, first.reply_ns + rest.reply_ns, first.failures + rest.failures)
        figures = storm_figures(c, storm, result, sum(resources_in(g) for g in creates))
        figures["strategy"] = strategy
        if rest.sent_ns:
            figures["steady"] = {"inputs": len(rest.sent_ns),
                                 "bytes_published": figures["bytes_published"] - before.bytes_published,
                                 "messages_published": figures["messages_published"] - before.messages_published}
        env.say(f"  converged in {figures['convergence_s']:.2f}s, {figures['goal_states_per_s']:.0f} goal states/s, "
                f"p99 publish->applied {figures['publish_to_applied_ms']['p99']:.1f} ms")
        if churn:
            figures["churn"] = _churn(env, c, storm, figures["goal_states_per_s"], churn, churn_seconds)
        if fast_path:
            figures["grpc_fast_path"] = _fast_path(env, c, storm)
        return figures


def _churn(env: Env, c: Cluster, storm: Storm, max_rate: float, fractions: tuple[float, ...], seconds: float) -> list[dict[str, Any]]:
    """Scenario 2: port updates at fixed offered rates; latency percentiles per rate."""
    phases = []
    updates = storm.updates(revision=2)
    revision = 2
    for fraction in fractions:
        rate = max(1.0, fraction * max_rate)
        count = max(10, int(rate * seconds))
        while len(updates) < count:
            revision += 1
            updates += storm.updates(revision=revision)
        batch, updates = updates[:count], updates[count:]
        env.say(f"churn {fraction:.0%} of max: {rate:.0f} goal states/s for {seconds:.0f}s ...")
        result = push(c.address, batch, rate=rate)
        _settle(c.collector)
        window = c.collector.window(result.sent_ns[0], result.reply_ns[-1] + 1)
        latency = percentiles([(a - s) / 1e6 for s, a, _ in window])
        phases.append({"fraction": fraction, "offered_per_s": rate, "inputs": count, "failures": result.failures,
                       "achieved_per_s": count / result.duration_s, "publish_to_applied_ms": latency,
                       "caller_reply_ms": percentiles(result.latencies_ms()),
                       "cdf_publish_to_applied_ms": _sample(sorted((a - s) / 1e6 for s, a, _ in window))})
        env.say(f"  p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms, max {latency['max']:.1f} ms")
    return phases


def _fast_path(env: Env, c: Cluster, storm: Storm) -> dict[str, Any]:
    """The gRPC fast path: the same port creates pushed straight to the simulator."""
    port = int(_arg(c.sims[0], "--grpc-port"))
    fresh = Storm(storm.hosts, storm.vpcs, storm.ports, first_port=10_000_000)
    creates = fresh.creates()
    env.say("gRPC fast path: the same storm straight to the simulator ...")
    result = push(f"127.0.0.1:{port}", creates)
    lat = result.latencies_ms()
    return {"inputs": len(creates), "duration_s": result.duration_s, "goal_states_per_s": len(creates) / result.duration_s,
            "send_to_reply_ms": percentiles(lat), "failures": result.failures}


def _arg(daemon: Daemon, flag: str) -> str:
    return daemon.args[daemon.args.index(flag) + 1]


def _free() -> int:
    from gsmq.broker import free_port

    return free_port()


def run_raw(env: Env, messages: int, size: int, keys: list[str], rate: float | None = None) -> dict[str, Any]:
    """The raw Kafka ceiling for `messages` of `size` bytes."""
    env.say(f"raw Kafka: {messages} messages of {size} B{f' at {rate:.0f}/s' if rate else ''} ...")
    result = baselines.raw_kafka(env.bootstrap, f"raw{uuid.uuid4().hex[:8]}", keys, messages, size, rate=rate)
    latencies = result.pop("latencies_ms")
    result["cdf_latency_ms"] = _sample(sorted(latencies))
    env.say(f"  {result['messages_per_s']:.0f} msg/s, p99 {result['latency_ms']['p99']:.1f} ms")
    return result


def run_restart(env: Env, storm: Storm, fraction: float = 0.1) -> dict[str, Any]:
    """Scenario 3: kill -9 the simulator of `fraction` of the hosts mid-storm, restart it,
    time its resync and check its hosts against the DPM snapshot."""
    split = len(storm.hosts) - max(1, int(len(storm.hosts) * fraction))
    victims = storm.hosts[split:]
    with cluster(env, "vpc-multicast", [(split, storm.hosts[0]), (len(victims), victims[0])]) as c:
        push(c.address, storm.subnets())
        creates = storm.creates()
        env.say(f"restart: storm of {storm.ports} ports, kill -9 of {len(victims)} hosts halfway ...")
        done: dict[str, Push] = {}
        pusher = threading.Thread(target=lambda: done.setdefault("push", push(c.address, creates)))
        base = dpm_status(c.dpm.status_port).requests_completed
        pusher.start()
        wait_for(lambda: dpm_status(c.dpm.status_port).requests_completed >= base + len(creates) // 2, "half the storm", 300)
        victim = c.sims[1]
        victim.signal(signal.SIGKILL)
        killed = time.monotonic()
        c.sims[1] = start_sim(victim.log.parent, env.bootstrap, c.topics.prefix, c.dpm.status_port, len(victims), victims[0], "s1b")
        restarted = time.monotonic()
        pusher.join()
        storm_done = time.monotonic()
        sample = victims[:: max(1, len(victims) // 20)]

        def converged() -> bool:
            return all(tables_of(host_state(c.sims[1].status_port, h)) == tables_of(host_snapshot(c.dpm.status_port, h)) for h in sample)

        ok = True
        try:
            wait_for(converged, "restarted hosts to converge", deadline=120, every=0.2)
        except AssertionError:
            ok = False
        resynced = time.monotonic()
        result = done["push"]
        env.say(f"  converged {resynced - restarted:.2f}s after restart ({resynced - storm_done:.2f}s after the storm ended); "
                f"snapshot match on {len(sample)} hosts: {ok}")
        return {"hosts": len(storm.hosts), "killed_hosts": len(victims), "ports": storm.ports,
                "restart_s": restarted - killed, "resync_s": resynced - restarted, "after_storm_s": resynced - storm_done,
                "checked_hosts": len(sample),
                "matches_snapshot": ok, "failures": result.failures, "storm_duration_s": result.duration_s,
                "retries": dpm_status(c.dpm.status_port).retries}


def run_memory(env: Env, counts: list[int]) -> list[dict[str, Any]]:
    """Resident memory of an idle simulator per host count (above a 1-host simulator)."""
    out = []
    base = None
    for count in [1, *counts]:
        hosts = host_ids(count)
        with cluster(env, "vpc-multicast", [(count, hosts[0])]) as c:
            wait_for(lambda: agent_status(c.sims[0].status_port).rss_bytes > 0, "rss")
            rss = agent_status(c.sims[0].status_port).rss_bytes
        if base is None:
            base = rss
            continue
        per_host = (rss - base) / count
        out.append({"hosts": count, "rss_bytes": rss, "per_host_bytes": per_host})
        env.say(f"memory: {count} simulated hosts: {rss / 2**20:.0f} MiB, {per_host / 1024:.2f} KiB per host")
    return out
