"""Running a scenario: a DPM and simulator processes on a fresh topic prefix, the reply
collector, and the caller that drives the DPM over gRPC.

Processes: the broker (embedded Apache Kafka, or `--bootstrap`), one `dpm-server` and one or more
`aca-agent sim` are separate processes, so the DPM, the simulators and the broker share
the cores instead of one Python interpreter. Readiness is a gRPC status answer; teardown
(SIGTERM, then SIGKILL) runs on any exit, Ctrl-C included, and every daemon is started
with PR_SET_PDEATHSIG so a killed bench leaves none behind."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import grpc
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp
from dpm_server.paths import MQ
from gs_bench.cluster import Daemon, agent_status, dpm_status, sim_ready, spawn_sim, start_dpm, stop_all, wait_for
from gs_bench.measure import Push, ReplyCollector, rss_of
from gsmq.broker import embedded_or_external, free_port
from gsmq.kafka import ENV_BOOTSTRAP, KafkaSettings
from gsmq.lifecycle import run_loop
from gsmq.topics import Topics
from gsmq.v1 import status_pb2

Progress = Callable[[str], None]
METHOD = "/alcor.schema.GoalStateProvisioner/PushGoalStatesStream"
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)]


@dataclass
class Env:
    """Where scenarios run: the broker, a folder for the daemons' logs, a progress printer,
    how many concurrent gRPC streams a caller opens, whether the cluster is someone else's
    (then every topic a scenario made is deleted after it), and how many simulator
    processes share a scenario's hosts."""

    bootstrap: str
    workdir: Path
    say: Progress = print
    streams: int = 4
    dpm_args: tuple[str, ...] = ()
    external: bool = False
    sims: int = 1  # simulator processes a scenario's hosts are split over (contiguous host ranges)
    broker_pids: tuple[int, ...] = ()  # the broker's processes, when it runs on this machine (its CPU is reported)


@contextmanager
def broker(bootstrap: str | None) -> Iterator[tuple[str, bool]]:
    """(bootstrap address, external?): `bootstrap`, else $KAFKA_BOOTSTRAP_SERVERS, else an
    embedded broker started here and stopped on the way out."""
    external = bool(bootstrap or os.environ.get(ENV_BOOTSTRAP))
    with embedded_or_external(bootstrap) as address:
        yield address, external


def delete_topics(bootstrap: str, prefix: str, say: Progress) -> None:
    """Delete every topic named `<prefix>.*` (best effort: a leftover is reported, not fatal)."""
    admin = AdminClient(KafkaSettings.from_env(bootstrap).admin())
    try:
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix + ".") or t == prefix]
        for name, future in admin.delete_topics(names, operation_timeout=30).items() if names else ():
            try:
                future.result()
            except KafkaException as exc:
                say(f"  could not delete topic {name}: {exc}")
    except KafkaException as exc:
        say(f"  could not list or delete the topics of {prefix}: {exc}")


@dataclass
class Cluster:
    """One DPM and its simulators on one topic prefix, with the reply collector. `path` is
    the DPM's `--path`; on grpc or auto every simulator serves a fast path (`--grpc-port`),
    which it registers with the DPM."""

    env: Env
    dpm: Daemon
    topics: Topics
    logs: Path
    path: str = MQ
    sims: list[Daemon] = field(default_factory=list)
    collector: ReplyCollector | None = None
    served: dict[str, tuple[int, int]] = field(default_factory=dict)  # simulator name -> (first host as int, hosts)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.dpm.status_port}"

    def replies(self) -> ReplyCollector:
        assert self.collector is not None
        return self.collector

    def dpm_status(self) -> status_pb2.DpmStatus:
        return dpm_status(self.dpm.status_port)

    def agent_statuses(self) -> list[status_pb2.AgentStatus]:
        """Every running simulator's status (figures are summed over them)."""
        return [agent_status(s.status_port) for s in self.sims]

    def cpu_pids(self) -> dict[str, list[int]]:
        """The processes whose CPU a phase reports, by part (`measure.CPU_PARTS`)."""
        assert self.dpm.process is not None
        dpm = [self.dpm.process.pid]
        sims = [s.process.pid for s in self.sims if s.process is not None and s.process.poll() is None]
        broker = {"broker": list(self.env.broker_pids)} if self.env.broker_pids else {}
        return {"dpm": dpm, "dpm_event_loop": dpm, "dpm_event_loop_waiting": dpm, "simulators": sims, **broker,
                "bench": [os.getpid()]}

    def dpm_rss(self) -> int:
        assert self.dpm.process is not None
        return rss_of(self.dpm.process.pid)

    def sim_for(self, host: str) -> Daemon:
        """The running simulator that serves `host`."""
        n = int(ipaddress.IPv4Address(host))
        for sim in self.sims:
            first, count = self.served[sim.name]
            if first <= n < first + count:
                return sim
        raise KeyError(f"no simulator serves {host}")

    def start_sim(self, hosts: int, first_host: str, name: str, *extra: str) -> Daemon:
        return self.start_sims([(hosts, first_host)], [name], *extra)[0]

    def start_sims(self, ranges: Sequence[tuple[int, str]], names: Sequence[str], *extra: str) -> list[Daemon]:
        """One simulator per (hosts, first host), started side by side; returned once each serves its status."""
        started = []
        for (hosts, first_host), name in zip(ranges, names, strict=True):
            # a stream per simulated host: the DPM pays the gRPC streams of a region of single-host agents
            fast = ("--grpc-port", str(free_port()), "--stream-per-host", "true") if self.path != MQ else ()
            sim = spawn_sim(self.logs, self.env.bootstrap, self.topics.prefix, self.dpm.status_port, hosts, first_host, name, *extra, *fast)
            self.sims.append(sim)  # stopped on the way out, even if another one fails to start
            self.served[sim.name] = (int(ipaddress.IPv4Address(first_host)), hosts)
            started.append(sim)
        return [sim_ready(sim, self.served[sim.name][1]) for sim in started]

    def wait_registered(self) -> None:
        """Until the DPM has the fast path of every running simulator (path grpc or auto):
        before that, their hosts are served through Kafka."""
        if self.path == MQ:
            return
        hosts = sum(count for _, count in self.served.values())
        wait_for(lambda: self.dpm_status().agents_registered == len(self.sims), "every simulator's fast path to be registered",
                 deadline=120 + hosts / 1000, every=0.2)


@contextmanager
def cluster(env: Env, strategy: str, sims: Sequence[tuple[int, str]], *dpm_args: str, sim_args: Sequence[str] = (),
            path: str = MQ) -> Iterator[Cluster]:
    """A DPM (`strategy`, `--path path`) and one simulator process per (hosts, first host) on
    a fresh topic prefix; everything started is stopped on the way out, whatever happened.
    `path` defaults to mq, the Kafka path every scenario but `channels` and the gRPC
    baseline measures (the DPM's own default, auto, would push small VPCs over gRPC). On
    grpc or auto each simulator gets a fast-path `--grpc-port`, and the cluster is handed
    over once the DPM has registered every one."""
    topics = Topics(f"b{uuid.uuid4().hex[:8]}")
    logs = env.workdir / topics.prefix
    logs.mkdir(parents=True, exist_ok=True)
    dpm = start_dpm(logs, env.bootstrap, topics.prefix, strategy, "--reply-timeout", "120", "--retry-after", "30", "--path", path,
                    *env.dpm_args, *dpm_args)
    running = Cluster(env, dpm, topics, logs, path)
    try:
        running.start_sims(sims, [f"s{i}" for i in range(len(sims))], *sim_args)
        running.collector = ReplyCollector(KafkaSettings.from_env(env.bootstrap), topics.reply)
        running.wait_registered()
        yield running
    finally:
        if running.collector is not None:
            running.collector.close()
        stop_all(running.sims)  # restarted ones included, side by side
        running.dpm.stop()
        if env.external:
            delete_topics(env.bootstrap, topics.prefix, env.say)


@overload
def push_stream(channel: grpc.Channel) -> grpc.StreamStreamMultiCallable[bytes, gsp.GoalStateOperationReply]: ...


@overload
def push_stream(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamMultiCallable[bytes, gsp.GoalStateOperationReply]: ...


def push_stream(channel: grpc.Channel | grpc.aio.Channel) -> Any:
    """PushGoalStatesStream on `channel` (threaded or asyncio), inputs sent as the bytes given
    (serialized before the clock starts)."""
    return channel.stream_stream(METHOD, request_serializer=None, response_deserializer=gsp.GoalStateOperationReply.FromString)


def push(address: str, payloads: Sequence[bytes | gs.GoalStateV2], streams: int = 1, rate: float | None = None,
         lanes: Sequence[int] | None = None, timeout: float | None = None) -> Push:
    """Drive a GoalStateProvisioner like callers do: `streams` concurrent PushGoalStatesStream
    calls, each on its own channel, sending its share of the messages without waiting (the
    server pipelines them) and reading one reply per input. Message i goes on stream
    `lanes[i] % streams` (default i % streams): give two revisions of one port the same lane
    so they never race. `rate` paces the sends over all streams (messages/s). Payloads are
    serialized before the clock starts: the bench measures the server, not its own encoding.
    The calls run on asyncio (gRPC's aio client costs about half the CPU per message of its
    threaded one, and the bench shares the machine with what it measures). `timeout` (the
    calls' deadline, so that a wedged DPM cannot hang the bench) defaults to 10 minutes plus
    50 ms per message: long enough for the 100,000-port storms of `bench-scale`."""
    data = [p if isinstance(p, bytes) else p.SerializeToString() for p in payloads]
    deadline = 600.0 + 0.05 * len(data) if timeout is None else timeout
    streams = max(1, min(streams, len(data)))
    plan: list[list[int]] = [[] for _ in range(streams)]
    for i in range(len(data)):
        plan[(lanes[i] if lanes is not None else i) % streams].append(i)
    sent = [0] * len(data)
    replied = [0] * len(data)
    failures = [0] * streams
    start = time.monotonic() + 0.05

    async def run(lane: int) -> None:
        indices = plan[lane]

        async def requests() -> AsyncIterator[bytes]:
            for i in indices:
                if rate:
                    delay = start + i / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                sent[i] = time.time_ns()
                yield data[i]

        async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            n = 0
            async for reply in push_stream(channel)(requests(), timeout=deadline):
                replied[indices[n]] = time.time_ns()
                n += 1
                failures[lane] += sum(1 for s in reply.operation_statuses if s.operation_status != common.SUCCESS)

    async def run_all() -> None:
        await asyncio.gather(*(run(lane) for lane in range(streams)))

    run_loop(run_all())  # Ctrl-C cancels the calls
    return Push(sent, replied, sum(failures), streams)
