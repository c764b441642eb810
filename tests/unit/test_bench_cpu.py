"""Where a phase's CPU went: the processes the bench reads (the broker found by its port),
their CPU seconds, and cores busy per part as the report states them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from gs_bench import measure
from gs_bench.cluster import broker_pids, listening_pids
from gs_bench.measure import cpu_combined, cpu_seconds, cpu_used
from gs_bench.report import cpu_text


def test_the_process_listening_on_a_port_is_found() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert listening_pids(port) == [os.getpid()]
    assert listening_pids(port) == []


def test_the_broker_is_looked_for_on_loopback_addresses_only() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert broker_pids(f"127.0.0.1:{port}") == (os.getpid(),)
        assert broker_pids(f"PLAINTEXT://localhost:{port},127.0.0.1:{port}") == (os.getpid(),)  # once, scheme or not
        assert broker_pids(f"kafka.example.com:{port}") == ()  # the same port on another machine is not this process


def _burn(seconds: float) -> None:
    """`seconds` of CPU in another thread, while this one waits for it."""

    def spin() -> None:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    thread = threading.Thread(target=spin)
    thread.start()
    thread.join()


def test_cpu_seconds_count_the_process_or_its_main_thread_alone_and_skip_a_gone_process() -> None:
    me = os.getpid()
    parts = {"dpm": [me], "dpm_event_loop": [me], "simulators": [2**22 + 1]}  # past Linux's pid_max: never a process
    before = cpu_seconds(parts)
    _burn(0.3)
    after = cpu_seconds(parts)
    assert after["simulators"] == before["simulators"] == {}
    whole, main_thread = after["dpm"][me] - before["dpm"][me], after["dpm_event_loop"][me] - before["dpm_event_loop"][me]
    assert whole >= 0.25 and main_thread < whole / 2  # (/proc counts in ticks of 10 ms)


SPIN = ("import os, sys, time\nos.sched_setaffinity(0, {int(sys.argv[1])})\nprint(flush=True)\n"
        "end = time.monotonic() + 20\nwhile time.monotonic() < end: pass")


@pytest.mark.skipif(not measure.COUNTS_WAITS, reason="this kernel counts no run-queue waits (/proc/<pid>/task/<tid>/schedstat)")
def test_a_main_thread_sharing_its_core_is_read_waiting_for_it_longer_than_it_ran() -> None:
    """The main thread spins on one core beside two processes spinning there too: the kernel
    shares the core three ways, so it waits about twice as long as it runs."""
    me, cpu = os.getpid(), min(os.sched_getaffinity(0))
    mask = os.sched_getaffinity(0)
    rivals = [subprocess.Popen([sys.executable, "-c", SPIN, str(cpu)], stdout=subprocess.PIPE) for _ in range(2)]
    try:
        os.sched_setaffinity(0, {cpu})  # this thread only
        for rival in rivals:
            assert rival.stdout is not None
            rival.stdout.readline()  # pinned, and spinning from now on
        before, ran = cpu_seconds({"dpm_event_loop_waiting": [me]}), time.thread_time()
        while time.thread_time() - ran < 0.3:
            pass
        ran = time.thread_time() - ran
        after = cpu_seconds({"dpm_event_loop_waiting": [me]})
    finally:
        os.sched_setaffinity(0, mask)
        for rival in rivals:
            rival.kill()
            rival.communicate()  # reaped, its pipe closed
    waited = after["dpm_event_loop_waiting"][me] - before["dpm_event_loop_waiting"][me]
    assert waited > 1.2 * ran  # (read as the time it ran, the two would be equal)


def test_waits_skip_a_gone_process_and_a_part_is_left_out_where_the_kernel_counts_none(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = 2**22 + 1  # past Linux's pid_max: never a process
    assert cpu_seconds({"dpm_event_loop_waiting": [gone]}) == {"dpm_event_loop_waiting": {}}
    monkeypatch.setattr(measure, "COUNTS_WAITS", False)
    assert cpu_seconds({"dpm_event_loop_waiting": [os.getpid()], "dpm": [os.getpid()]}).keys() == {"dpm"}


def test_cores_busy_are_seconds_over_the_wall_of_the_processes_read_twice_and_phases_combine_by_wall() -> None:
    before = {"dpm": {1: 10.0}, "simulators": {2: 5.0, 3: 4.0}, "bench": {4: 1.0}}
    after = {"dpm": {1: 13.0}, "simulators": {2: 7.0, 5: 9.0}, "bench": {4: 1.5}}  # simulator 3 killed, 5 started meanwhile
    used = cpu_used(before, after, 4.0)
    assert used["cores"] == {"dpm": 0.75, "simulators": 0.5, "bench": 0.125} and used["wall_s"] == 4.0
    assert used["cpus"] == len(os.sched_getaffinity(0))
    other = {"wall_s": 1.0, "cpus": used["cpus"], "cores": {"dpm": 2.0, "simulators": 0.0, "bench": 0.0}}
    both = cpu_combined(used, other)
    assert both["wall_s"] == 5.0 and both["cores"] == pytest.approx({"dpm": 1.0, "simulators": 0.4, "bench": 0.1})


def test_the_report_states_cores_per_part_and_the_machine_total() -> None:
    cores = {"dpm": 0.8, "dpm_event_loop": 0.6, "simulators": 0.5, "broker": 0.4, "bench": 0.1}
    cpu: dict[str, Any] = {"wall_s": 2.0, "cpus": 2, "cores": cores}
    assert cpu_text(cpu) == "DPM 0.80 (event loop 0.60), simulators 0.50, broker 0.40, bench 0.10; 1.80 of 2 cores"
    cores["dpm_event_loop_waiting"] = 0.3  # a wait, not CPU: outside the total
    assert cpu_text(cpu) == "DPM 0.80 (event loop 0.60, waiting for a core 0.30), simulators 0.50, broker 0.40, bench 0.10; 1.80 of 2 cores"
    del cores["dpm_event_loop_waiting"]
    del cores["broker"]
    assert cpu_text(cpu) == ("DPM 0.80 (event loop 0.60), simulators 0.50, bench 0.10; 1.40 of 2 cores; "
                             "the broker's are not counted (no process here listens on its loopback ports)")
