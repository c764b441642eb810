"""`aca-agent`: the ACA daemon for one host, or (`aca-agent sim`) for many simulated hosts.

Both wire the same pieces: Kafka source/sink -> AgentConsumer -> Applier -> data plane,
plus the resync client and the optional gRPC servers; a `gsmq.lifecycle.Lifecycle` starts
and stops them.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import grpc
import structlog

from aca_agent.applier import Applier
from aca_agent.consumer import CHANNELS, AgentConsumer
from aca_agent.dataplane import MemoryDataPlane
from aca_agent.metrics import agent_metrics
from aca_agent.resync import Resyncer
from aca_agent.status import FastPath, start_servers
from gsmq import lifecycle, logs, native
from gsmq.config import ConfigError, Settings, boolean, is_address, port_number, positive_int
from gsmq.errors import BrokerUnavailableError
from gsmq.grpc_ops import Health
from gsmq.host_ranges import ranges_of
from gsmq.kafka import KafkaSettings
from gsmq.kafka_admin import AdminClient, admin_client, ensure_topics, partition_count, topic_names
from gsmq.kafka_transport import KafkaSink, KafkaSource
from gsmq.lifecycle import Lifecycle, long_lived_heap
from gsmq.retry import retry
from gsmq.topics import Topics
from gsmq.v1 import channel_pb2

log = structlog.get_logger()

DESCRIPTION = """\
The Alcor Control Agent (ACA) of the goal-state message-queue path: consumes the goal
states meant for its host(s) from Kafka, applies them to an in-memory data plane and
replies to the DPM.

  aca-agent --host-id 10.0.0.5 [options]          one host
  aca-agent sim --hosts 1000 --first-host 10.1.0.1 --name lab1 [options]
                                                  N simulated hosts (consecutive IPv4 ids)

Every option also reads the environment variable shown, or a key of the --config TOML file.
"""


@dataclass(frozen=True)
class AgentConfig:
    """Everything the daemon needs, resolved once from flags, environment and file."""

    hosts: tuple[str, ...]
    group: str
    bootstrap: str | None = None
    kafka_properties: dict[str, str] = field(default_factory=dict)
    topic_prefix: str = "gs"
    channel: str = "auto"
    dpm_address: str | None = None
    status_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    listen_host: str = "127.0.0.1"
    advertise_address: str | None = None
    stream_per_host: bool = False
    program_cost_us: int = 0
    program_cost_sleep: bool = False
    max_batch: int = 1000
    log_level: str = "info"
    log_json: bool | None = None


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be >= 0, got {text}")
    return value


def build_settings(sim: bool) -> Settings:
    """The option parser of `aca-agent` (sim=False) or `aca-agent sim`."""
    settings = Settings("aca-agent sim" if sim else "aca-agent", DESCRIPTION, env_prefix="ACA")
    if sim:
        settings.option("--hosts", default=None, convert=positive_int, help="how many hosts to simulate (required)")
        settings.option("--first-host", default="10.1.0.1", help="IPv4 id of the first simulated host; the others follow it")
        settings.option("--name", default="sim", help="simulator name: commits under consumer group aca-sim.<name>")
        settings.option("--stream-per-host", default=False, convert=boolean,
                        help="ask the DPM for one fast-path stream per simulated host, as a region of single-host agents"
                        " has (true), rather than one for all of them")
    else:
        settings.option("--host-id", default=None, help="this host's id (its IP address, the unicast key) (required)")
    settings.option(
        "--channel",
        default="auto",
        choices=list(CHANNELS),
        help="where host messages are read: the unicast topic (the partition of the host key), "
        "<prefix>.host.<id> topics (topic-per-host, created at start), both, or auto: unicast, plus "
        "each host topic once someone created it (looked for every 2 s; pass unicast for large fleets)",
    )
    settings.option("--dpm-address", default=None, help="DPM gRPC host:port, asked for full state at start and on gaps; unset: no resync")
    settings.option("--status-port", default=0, convert=port_number, help="gRPC port of gsmq.v1.AgentStatusService; 0 = off")
    settings.option("--grpc-port", default=0, convert=port_number,
                    help="gRPC port of the fast path GoalStateProvisioner.PushGoalStatesStream; 0 = off")
    settings.option("--metrics-port", default=0, convert=port_number,
                    help="serve Prometheus metrics on http://<--listen-host>:PORT/metrics; 0 = off")
    settings.option("--listen-host", default="127.0.0.1", help="address the gRPC servers listen on (0.0.0.0: every interface)")
    settings.option("--advertise-address", default=None,
                    help="host:port the DPM reaches the fast path at; with --grpc-port and --dpm-address the agent registers it"
                    " (gsmq.v1.AgentRegistry, every 5 s) and the DPM may push goal states there (default: the listen host,"
                    " 127.0.0.1 when that is 0.0.0.0, and --grpc-port)")
    settings.option("--program-cost-us", default=0, convert=_non_negative,
                    help="simulated data-plane cost per programmed resource, microseconds")
    settings.option("--program-cost-mode", default="busy", choices=["busy", "sleep"],
                    help="spend the programming cost busy-waiting (CPU) or sleeping")
    settings.option("--max-batch", default=1000, convert=positive_int, help="messages consumed, applied and replied per batch")
    return settings


def parse_config(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> AgentConfig:
    """AgentConfig from the command line (`sim` first for the simulator); ConfigError when unusable."""
    sim = bool(argv) and argv[0] == "sim"
    values = build_settings(sim).parse(list(argv[1:] if sim else argv), environ)
    for name in ("dpm_address", "advertise_address"):
        given = values[name]
        if given is not None and not is_address(given):
            raise ConfigError(f"--{name.replace('_', '-')} must be host:port, got {given!r}")
    if sim:
        if values["hosts"] is None:
            raise ConfigError("--hosts is required for sim (or ACA_HOSTS)")
        try:
            first = ipaddress.IPv4Address(values["first_host"])
            hosts = tuple(str(first + i) for i in range(values["hosts"]))
        except ValueError as exc:
            raise ConfigError(f"--first-host: {exc}") from exc
        group = f"aca-sim.{values['name']}"
    else:
        if not values["host_id"]:
            raise ConfigError("--host-id is required (or ACA_HOST_ID)")
        try:
            ipaddress.ip_address(values["host_id"])
        except ValueError as exc:
            raise ConfigError(f"--host-id must be the host's IP address (the unicast key), got {values['host_id']!r}") from exc
        hosts = (values["host_id"],)
        group = f"aca.{values['host_id']}"
    return AgentConfig(
        hosts=hosts,
        group=group,
        bootstrap=values["bootstrap"],
        kafka_properties=values["kafka_properties"],
        topic_prefix=values["topic_prefix"],
        channel=values["channel"],
        dpm_address=values["dpm_address"],
        status_port=values["status_port"],
        grpc_port=values["grpc_port"],
        metrics_port=values["metrics_port"],
        listen_host=values["listen_host"],
        advertise_address=values["advertise_address"],
        stream_per_host=values.get("stream_per_host", False),  # a simulator's option only
        program_cost_us=values["program_cost_us"],
        program_cost_sleep=values["program_cost_mode"] == "sleep",
        max_batch=values["max_batch"],
        log_level=values["log_level"],
        log_json=values["log_json"],
    )


def _set_health(healths: list[Health], serving: bool) -> None:
    for checker in healths:
        checker.ready(serving)


def advertised(config: AgentConfig) -> str:
    """Where the DPM reaches this agent's fast path."""
    if config.advertise_address:
        return config.advertise_address
    host = "127.0.0.1" if config.listen_host in ("0.0.0.0", "", "::") else config.listen_host
    return f"{host}:{config.grpc_port}"


def _ensure_topics(admin: AdminClient, config: AgentConfig, bootstrap: str, halt: threading.Event) -> bool:
    """Create the channels' topics (default partition counts, docs/internals.md), retrying with
    backoff while the broker is unreachable; False once halted."""
    topics = Topics(config.topic_prefix)
    wanted = topics.default_partitions()
    if config.channel in ("topic-per-host", "both"):
        wanted.update({topics.host(host): 1 for host in config.hosts})

    def step() -> bool:
        ensure_topics(admin, wanted, timeout=2.0)
        return True

    return retry(step, halt, "broker_unreachable", retry_on=(BrokerUnavailableError,), bootstrap=bootstrap) is not None


async def serve(config: AgentConfig, bootstrap: str, stop: asyncio.Event) -> int:
    """Run the agent until `stop` (`_serve`), its heap collected as a daemon's (`long_lived_heap`)."""
    with long_lived_heap():
        return await _serve(config, bootstrap, stop)


async def _serve(config: AgentConfig, bootstrap: str, stop: asyncio.Event) -> int:
    """Build, start in order, wait; the Lifecycle stops in reverse:
    the consumer (drains the batch in hand, delivers its replies, commits), the gRPC servers,
    the resync client, the Kafka consumer, the producer's flush."""
    if len(config.hosts) == 1:
        logs.add_fields(host_id=config.hosts[0])
    else:
        logs.add_fields(hosts=f"{config.hosts[0]}..{config.hosts[-1]}")
    kafka = KafkaSettings(bootstrap=bootstrap, properties=config.kafka_properties)
    topics = Topics(config.topic_prefix)
    lock = threading.Lock()
    applier = Applier(MemoryDataPlane(config.program_cost_us, config.program_cost_sleep), config.hosts)
    code = 0
    async with Lifecycle(stop) as life:
        admin = admin_client(kafka)
        # Acks go out with Sink.send_all, which needs to hear of failures only: a report per
        # delivered ack would cost the simulator a Python call per host and batch.
        sink = KafkaSink(kafka, **{"delivery.report.only.error": True})
        life.close("aca-producer-flush", lambda: sink.flush(2.0), stop_timeout=3.0)
        source = KafkaSource(kafka, config.group)
        life.close("aca-consumer-close", source.close, stop_timeout=5.0)
        if config.metrics_port:
            try:
                exporter = agent_metrics(applier, lock, source).serve(config.metrics_port, config.listen_host)
            except OSError as exc:
                raise ConfigError(f"--metrics-port {config.metrics_port}: {exc.strerror}") from exc
            life.close("aca-metrics", exporter.shutdown, stop_timeout=2.0)
        resyncer = Resyncer(config.dpm_address).start() if config.dpm_address else None
        fast_path = FastPath(applier, lock)
        if resyncer is not None:
            life.close("aca-resync", resyncer.stop, stop_timeout=6.0)
        try:
            servers, healths = await start_servers(applier, lock, config.status_port, config.grpc_port, config.listen_host,
                                                   fast_path)
        except (OSError, RuntimeError) as exc:
            raise ConfigError(f"cannot listen: {exc}") from exc
        for server, checker in zip(servers, healths, strict=True):
            async def stop_server(server: grpc.aio.Server = server, checker: Health = checker) -> None:
                await checker.stopping()
                await server.stop(grace=0.5)

            life.on_stop("aca-grpc", stop_server, stop_timeout=1.5)
        log.info("aca_starting", hosts=len(config.hosts), group=config.group, bootstrap=bootstrap, channel=config.channel,
                 status_port=config.status_port, grpc_port=config.grpc_port, dpm=config.dpm_address, **native.status())
        if await asyncio.to_thread(_ensure_topics, admin, config, bootstrap, life.halt):
            consumer = AgentConsumer(
                source=source,
                sink=sink,
                applier=applier,
                topics=topics,
                partition_count=lambda topic: partition_count(admin, topic),
                channel=config.channel,
                existing_topics=lambda: topic_names(admin, timeout=5.0),
                max_batch=config.max_batch,
                resync=resyncer.request if resyncer else None,
                lock=lock,
            )
            fast_path.pushed = consumer.apply_pushed
            consumer.health = functools.partial(_set_health, healths)
            if resyncer is not None and config.grpc_port:
                registration = channel_pb2.Registration(address=advertised(config), hosts=ranges_of(config.hosts),
                                                        agent=config.group, takes_batches=True,
                                                        stream_per_host=config.stream_per_host)
                consumer.ready = functools.partial(resyncer.register, registration)
            life.thread("aca-consumer", consumer.run, stop_timeout=25.0)  # start-up reads may wait 10 s each
            code = await life.wait()
    log.info("aca_stopped", applied=applier.counters.messages_applied, replies=applier.counters.replies_sent)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Console script entry point; returns the exit code (2: unusable configuration, 1: a runtime failure)."""
    return lifecycle.daemon_main("aca-agent", argv, parse_config, serve)


if __name__ == "__main__":
    sys.exit(main())
