"""The DPM's and the simulator's memory after a storm, in one process and without Kafka.

The engine and one simulator serving every host (`gs_bench.memory_cluster`, as `aca-agent
sim` runs it) share a `MemoryBus`; the storm's inputs go to the engine in batches, as the
DPM's batcher hands them over, and every party runs until nothing moves. Each side's bytes are the resident memory freed when
it is dropped (the simulator first, then the DPM): what its state costs, without the
broker client, gRPC or the interpreter that the bench's per-process RSS includes.

Run alone: `python -m gs_bench.footprint 10000 100000` (1 port per host, VPCs of 100 hosts).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys
import time
from typing import Any

import psutil

from alcor.schema import goalstateprovisioner_pb2 as gsp
from dpm_server.inputs import Input
from gs_bench.memory_cluster import MemoryCluster
from gs_bench.scenarios import Storm
from gsmq import logs
from gsmq.transport import Envelope, MemoryBus
from gsmq.wire import Strategy

_READ = Envelope("", "", b"")  # stands for a record every reader is past


def _rss() -> int:
    """Resident bytes once garbage is collected and freed heap returned to the system."""
    gc.collect()
    with contextlib.suppress(OSError):  # not glibc: RSS keeps what the allocator holds
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return int(psutil.Process().memory_info().rss)


def _drop_read(bus: MemoryBus) -> None:
    """Once every reader is past every record (the bus has settled), drop them, as retention
    would: offsets stay; a later follow offset or rewind names only later records."""
    for log in bus.logs.values():
        log[:] = [_READ] * len(log)


def _settle(run: MemoryCluster) -> None:
    """Every party until nothing moves; then the read records go."""
    run.settle(rounds=10**9)
    _drop_read(run.bus)


def footprint(hosts: int, hosts_per_vpc: int = 100, ports_per_host: int = 1, batch: int = 1000) -> dict[str, Any]:
    """Bytes per host and per resource of the DPM's and the simulator's state after a storm
    of `hosts` hosts under vpc-multicast."""
    storm = Storm(hosts, max(1, hosts // hosts_per_vpc), ports_per_host * hosts)
    payloads, subnets = storm.creates(), storm.subnets()
    t0 = time.monotonic()
    base = _rss()
    run = MemoryCluster(Strategy.VPC_MULTICAST, storm.host_list, timeout=1e9, retry_after=1e9, sim=True)
    _drop_read(run.bus)
    answered: list[gsp.GoalStateOperationReply] = []
    for goal in subnets:
        run.eng.submit(goal, answered.append)
    _settle(run)
    for i in range(0, len(payloads), batch):
        run.eng.submit_many([(Input.parse(p), answered.append) for p in payloads[i : i + batch]])
        _settle(run)
    failures = sum(1 for r in answered for s in r.operation_statuses if s.operation_status != 0)
    applier = run.appliers[storm.host_list[0]]
    inputs, held, stored = len(answered), applier.dataplane.resources(), len(run.eng.snapshot.resources)
    seconds = time.monotonic() - t0
    del payloads, subnets, answered
    run.bus.logs.clear()
    full = _rss()
    del applier
    run.agents.clear()
    run.appliers.clear()
    without_sim = _rss()
    del run
    without_dpm = _rss()
    views = storm.view_resources()
    sim_bytes, dpm_bytes = full - without_sim, without_sim - without_dpm
    return {
        **storm.describe(), "inputs": inputs, "failures": failures, "seconds": seconds, "view_resources": views,
        "sim_bytes": sim_bytes, "sim_per_host_bytes": sim_bytes / hosts, "sim_resources": held,
        "sim_per_resource_bytes": sim_bytes / max(held, 1), "sim_per_view_resource_bytes": sim_bytes / max(views, 1),
        "dpm_bytes": dpm_bytes, "dpm_per_host_bytes": dpm_bytes / hosts, "dpm_resources": stored,
        "dpm_per_resource_bytes": dpm_bytes / max(stored, 1), "dpm_per_view_resource_bytes": dpm_bytes / max(views, 1),
        "left_per_host_bytes": (without_dpm - base) / hosts,
    }


def describe(f: dict[str, Any]) -> str:
    """One point as a line of text."""
    return (f"{f['hosts']:,} hosts ({f['vpcs']:,} VPCs, {f['ports']:,} ports): "
            f"DPM {f['dpm_per_host_bytes']:,.0f} B per host, {f['dpm_per_resource_bytes']:,.0f} B per resource stored "
            f"({f['dpm_resources']:,}); simulator {f['sim_per_host_bytes']:,.0f} B per host, "
            f"{f['sim_per_resource_bytes']:,.0f} B per resource held ({f['sim_resources']:,}, shared tables once), "
            f"{f['sim_per_view_resource_bytes']:,.0f} B per resource in a host's view ({f['view_resources']:,})")


def main(argv: list[str]) -> int:
    logs.configure(level="warning")
    for hosts in [int(a) for a in argv] or [10000]:
        print(describe(footprint(hosts)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
