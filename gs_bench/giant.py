"""The giant-input scenario: one caller's small inputs, one at a time, while another
caller's input lists a very large number of hosts (200,000 is legitimate in a region),
with the DPM working it in slices (`--slice-hosts`: its default, or a tenth of a smaller
input) and whole (a slice as
big as the input), side by side in one run.

The giant input is a port whose neighbor is listed for every host; nobody serves those
hosts, so it is never answered within the window. The small inputs go to hosts of a
simulator. Figures per mode: the small inputs answered within `window` seconds after
the giant was sent, and their send -> reply percentiles; before the giant, for reference."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from dpm_server.engine import SLICE_HOSTS
from gs_bench.cluster import dpm_status
from gs_bench.measure import percentiles
from gs_bench.runner import CHANNEL_OPTIONS, Cluster, Env, cluster, push_stream
from gs_bench.scenarios import host_ids
from gs_bench.topology import Port, port_message
from gsmq.wire import Strategy

BEFORE_S = 2.0  # ... and before it
SMALL_HOSTS = 10


def _call(c: Cluster, payload: bytes, timeout: float) -> None:
    with grpc.insecure_channel(c.address, options=CHANNEL_OPTIONS) as channel:
        for _ in push_stream(channel)(iter([payload]), timeout=timeout):
            pass


def _mode(env: Env, hosts: int, slice_hosts: int, window: float) -> dict[str, Any]:
    small_hosts = host_ids(SMALL_HOSTS)
    giant_hosts = host_ids(hosts, "11.0.0.1")
    giant = port_message(Port("giant-0", "vpc-giant", giant_hosts[0], "10.200.0.1", "fa:16:3e:00:00:01"), giant_hosts)
    with cluster(env, Strategy.VPC_MULTICAST, [(SMALL_HOSTS, small_hosts[0])], "--slice-hosts", str(slice_hosts)) as c:
        sent: list[tuple[float, float]] = []  # (sent at, seconds to its reply)
        stop = threading.Event()

        def caller() -> None:
            i = 0
            while not stop.is_set():
                host = small_hosts[i % SMALL_HOSTS]
                n = i + 2
                payload = port_message(Port(f"small-{i}", "vpc-small", host, f"10.9.{n >> 8 & 255}.{n & 255}",
                                            "fa:16:3e:00:01:01"), [host]).SerializeToString()
                started = time.monotonic()
                if _ignore_errors(functools.partial(_call, c, payload, window + BEFORE_S)):
                    sent.append((started, time.monotonic() - started))
                i += 1

        def prober() -> None:  # the DPM's own responsiveness: its status service on the same event loop
            while not stop.is_set():
                started = time.monotonic()
                if _ignore_errors(lambda: dpm_status(c.dpm.status_port)):
                    probed.append((started, time.monotonic() - started))
                time.sleep(0.1)

        probed: list[tuple[float, float]] = []
        threads = [threading.Thread(target=work, name=f"bench-{work.__name__}", daemon=True) for work in (caller, prober)]
        for thread in threads:
            thread.start()
        time.sleep(BEFORE_S)
        at = time.monotonic()
        with grpc.insecure_channel(c.address, options=CHANNEL_OPTIONS) as giant_channel:
            def send_giant() -> None:
                for _ in push_stream(giant_channel)(iter([giant.SerializeToString()]), timeout=window + 30):
                    pass

            threading.Thread(target=lambda: _ignore_errors(send_giant), name="bench-giant-caller", daemon=True).start()
            time.sleep(window)
            stop.set()
            for thread in threads:
                thread.join(window + 30)  # their last calls end before the cluster does
        # The channel's close cancelled the giant's call (never answered: nobody serves its hosts), so the
        # DPM's stop has no call in flight to wait for.
        during = [s * 1000 for t, s in sent if at <= t < at + window]
        before = [s * 1000 for t, s in sent if t < at]
        return {"slice_hosts": slice_hosts, "answered_during": len(during), "during_ms": percentiles(during),
                "before_ms": percentiles(before), "dpm_status_ms": percentiles([s * 1000 for t, s in probed if at <= t < at + window])}


def _ignore_errors(work: Callable[[], object]) -> bool:
    """Whether `work()` ended without a gRPC error (one not answered in time, or cut at the cluster's stop)."""
    try:
        work()
    except grpc.RpcError:
        return False
    return True


def run_giant_input(env: Env, hosts: int, window: float) -> dict[str, Any]:
    """The small caller beside a `hosts`-host input, worked in slices (the DPM's default) and whole."""
    env.say(f"giant input: a port listed for {hosts:,} hosts, small inputs beside it for {window:.0f} s; in slices, then whole ...")
    sliced = _mode(env, hosts, min(SLICE_HOSTS, max(1, hosts // 10)), window)
    whole = _mode(env, hosts, hosts, window)
    for m in (sliced, whole):
        d = m["during_ms"]
        p = m["dpm_status_ms"]
        env.say(f"  slices of {m['slice_hosts']:,}: {m['answered_during']:,} small inputs answered, send->reply p50 / p99 / max "
                f"{d['p50']:.1f} / {d['p99']:.1f} / {d['max']:.1f} ms (before: p50 {m['before_ms']['p50']:.1f} ms); "
                f"the DPM's GetStatus p50 / max {p['p50']:.1f} / {p['max']:.1f} ms")
    ratio = sliced["answered_during"] / whole["answered_during"] if whole["answered_during"] else None
    return {"hosts": hosts, "window_s": window, "sliced": sliced, "whole": whole, "answered_sliced_vs_whole": ratio}
