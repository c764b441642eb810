"""`dpm-server`: configuration, wiring and lifecycle of the DPM daemon."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import structlog

from dpm_server import changelog, paths
from dpm_server.acks import decode_acks
from dpm_server.engine import SLICE_HOSTS, Engine
from dpm_server.links import AgentLinks
from dpm_server.metrics import dpm_metrics
from dpm_server.paths import Paths
from dpm_server.publisher import Publisher
from dpm_server.service import BATCHES_IN_FLIGHT, MAX_INPUT_BYTES, SERVICE, Provisioner, Registry, Status, register
from dpm_server.snapshot import Snapshot
from gsmq import lifecycle, native
from gsmq.config import ConfigError, Settings, is_address, port_number, positive_int
from gsmq.errors import BrokerUnavailableError, TransportError
from gsmq.grpc_ops import Gate, Handlers, add_operations
from gsmq.kafka import KafkaSettings
from gsmq.kafka_admin import AdminClient, admin_client, ensure_topics, partition_counts, topic_config
from gsmq.kafka_transport import KafkaSink, KafkaSinks, KafkaSource, KafkaTransactions
from gsmq.lifecycle import Lifecycle, long_lived_heap
from gsmq.retry import Backoff, retry
from gsmq.topics import (
    CHANGELOG_PARTITIONS,
    MULTICAST_PARTITIONS,
    REPLY_PARTITIONS,
    UNICAST_PARTITIONS,
    Topics,
)
from gsmq.v1 import channel_pb2, channel_pb2_grpc, status_pb2, status_pb2_grpc
from gsmq.wire import STRATEGIES, Strategy

log = structlog.get_logger()
DRAIN_SECONDS = 3.0  # on SIGTERM: how long calls in flight may wait for their hosts' replies
LIBRDKAFKA_MESSAGE_MAX = 1_000_000  # librdkafka's default message.max.bytes
# Goal-state producers (--producers): a batch's messages span most partitions, and a
# producer sends one request per partition, five at a time (`gsmq.kafka_transport.KafkaSinks`):
# with the default 16 + 16 partitions, 8 producers never hold a partition's request back.
PRODUCERS = 8

DESCRIPTION = """\
The Data Plane Manager of the goal-state message-queue path.

Serves gRPC alcor.schema.GoalStateProvisioner (PushGoalStatesStream, RequestGoalStates)
and gsmq.v1.DpmStatusService; publishes every host's goal states to Kafka (unicast per
host, multicast per VPC), answers each caller once every targeted host has applied.
Settings: flags, then DPM_* environment variables, then a TOML file (--config).
"""


@dataclass(frozen=True)
class DpmConfig:
    bootstrap: str | None
    kafka_properties: dict[str, str]
    topic_prefix: str
    grpc_address: str
    strategy: str
    reply_timeout: float
    retry_after: float
    max_in_flight: int
    max_in_flight_hosts: int
    in_flight_seconds: float
    batches_in_flight: int
    batch_window_ms: float
    batch_size: int
    unicast_partitions: int
    multicast_partitions: int
    reply_partitions: int
    changelog_partitions: int
    producers: int
    max_message_bytes: int
    max_input_bytes: int
    max_hosts_per_input: int
    slice_hosts: int
    path: str
    path_upper_ports: int
    path_lower_ports: int
    path_settle_seconds: float
    link_timeout: float
    metrics_port: int
    log_level: str
    log_json: bool | None


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(f"must be a positive number, got {text}")
    return value


def settings() -> Settings:
    s = Settings("dpm-server", DESCRIPTION, "DPM")
    s.option("--grpc-address", default="127.0.0.1:50051", help="where the gRPC API listens (host:port)")
    s.option("--strategy", default=Strategy.VPC_MULTICAST.value, choices=list(STRATEGIES), help="how goal states travel")
    s.option("--reply-timeout", default=10.0, convert=positive_float, help="seconds a request waits for its hosts before they are FAILURE")
    s.option("--retry-after", default=3.0, convert=positive_float, help="seconds before a silent host gets its copy again")
    s.option("--max-in-flight", default=10000, convert=positive_int, help="requests in flight before callers are held back")
    s.option("--max-in-flight-hosts", default=100000, convert=positive_int,
             help="host deliveries in flight (a request counts once per host it targets) before callers are held back, at"
             " least (see --in-flight-seconds); keep it below what the agents apply in --retry-after seconds")
    s.option("--in-flight-seconds", default=0.25, convert=positive_float,
             help="the host-delivery bound grows to the deliveries the agents answered in this many seconds (measured"
             " every second), when that is more than --max-in-flight-hosts")
    s.option("--batches-in-flight", default=BATCHES_IN_FLIGHT, convert=positive_int,
             help="requests in flight before new inputs wait to be sent together (when one completes, or after --batch-window-ms)")
    s.option("--batch-window-ms", default=50.0, convert=float,
             help="the longest an input waits to be sent with others while --batches-in-flight requests are in flight (0: one by one)")
    s.option("--batch-size", default=1000, convert=positive_int, help="most inputs sent together")
    s.option("--unicast-partitions", default=UNICAST_PARTITIONS, convert=positive_int,
             help="partitions of the unicast topic when it is created")
    s.option("--multicast-partitions", default=MULTICAST_PARTITIONS, convert=positive_int,
             help="partitions of the multicast topic when it is created")
    s.option("--reply-partitions", default=REPLY_PARTITIONS, convert=positive_int,
             help="partitions of the reply topic when it is created")
    s.option("--producers", default=PRODUCERS, convert=positive_int,
             help="Kafka producers of goal states, each writing its share of the partitions: librdkafka keeps at most 5"
             " requests of one partition each in flight on a producer's connection")
    s.option("--max-message-bytes", default=0, convert=int,
             help="a unicast goal state over this size goes in ordered parts, applied once all have arrived"
             " (0: 90 %% of the smaller of the producer's message.max.bytes and the unicast topic's max.message.bytes)")
    s.option("--max-input-bytes", default=MAX_INPUT_BYTES, convert=positive_int,
             help="a caller input over this size is refused whole (INVALID_ARG) and the stream goes on;"
             " gRPC itself ends a stream whose message is over twice this size")
    s.option("--max-hosts-per-input", default=1_000_000, convert=positive_int,
             help="a caller input listing more hosts is refused whole (INVALID_ARG): a safety limit only")
    s.option("--slice-hosts", default=SLICE_HOSTS, convert=positive_int,
             help="an input listing more hosts is stored and published in slices of this many, other callers' inputs"
             " and acks worked between them")
    s.option("--path", default=paths.AUTO, choices=list(paths.PATHS),
             help="the channel of each VPC's goal states: grpc (the agents' registered fast paths), mq (Kafka), or auto:"
             " by the VPC's port count, with hysteresis; gRPC only while every host of the VPC has a fast path up")
    s.option("--path-upper-ports", default=paths.UPPER_PORTS, convert=int,
             help="auto: a VPC with more ports than this goes through Kafka")
    s.option("--path-lower-ports", default=paths.LOWER_PORTS, convert=int,
             help="auto: a VPC on Kafka with fewer ports than this goes back to gRPC")
    s.option("--path-settle-seconds", default=paths.SETTLE_SECONDS, convert=float,
             help="a VPC whose messages still wait for acks switches channel once they are acked, or after this long"
             " (0: at once; a host that then sees a newer message before an older one skips the older and is resynced)")
    s.option("--link-timeout", default=5.0, convert=positive_float,
             help="seconds an agent's fast path may leave a pushed message unanswered before it is dropped (its hosts"
             " then go through Kafka until it registers again)")
    s.option("--metrics-port", default=0, convert=port_number,
             help="serve Prometheus metrics on http://<the --grpc-address host>:PORT/metrics (0: off)")
    s.option("--changelog-partitions", default=CHANGELOG_PARTITIONS, convert=positive_int,
             help="partitions of the changelog topic (the durable desired state, log-compacted) when it is created")
    return s


def parse_config(argv: Sequence[str], environ: dict[str, str] | None = None) -> DpmConfig:
    values: dict[str, Any] = settings().parse(argv, environ)
    if values["retry_after"] >= values["reply_timeout"]:
        raise ConfigError(f"--retry-after ({values['retry_after']}) must be shorter than --reply-timeout ({values['reply_timeout']})")
    if values["batch_window_ms"] < 0:
        raise ConfigError(f"--batch-window-ms must be >= 0, got {values['batch_window_ms']}")
    if not 0 <= values["path_lower_ports"] <= values["path_upper_ports"]:
        raise ConfigError(f"--path-lower-ports ({values['path_lower_ports']}) must be 0 .. --path-upper-ports"
                          f" ({values['path_upper_ports']})")
    if values["path_settle_seconds"] < 0:
        raise ConfigError(f"--path-settle-seconds must be >= 0, got {values['path_settle_seconds']}")
    if not is_address(values["grpc_address"]):
        raise ConfigError(f"--grpc-address must be host:port, got {values['grpc_address']!r}")
    return DpmConfig(**{k: values[k] for k in DpmConfig.__dataclass_fields__})


def _ensure_topics(admin: AdminClient, config: DpmConfig, bootstrap: str, halt: threading.Event) -> dict[str, int] | None:
    """Create the channels, retrying with backoff while the broker is unreachable; their
    partition counts (None once halted)."""
    topics = Topics(config.topic_prefix)
    wanted = {**topics.default_partitions(), topics.unicast: config.unicast_partitions,
              topics.multicast: config.multicast_partitions, topics.reply: config.reply_partitions,
              topics.changelog: config.changelog_partitions}

    def step() -> dict[str, int]:
        ensure_topics(admin, wanted, timeout=5.0, configs={topics.changelog: changelog.TOPIC_CONFIG})
        counts = partition_counts(admin, list(wanted), timeout=5.0)
        if not all(counts.values()):
            raise BrokerUnavailableError(f"created topics not listed yet: {sorted(t for t, n in counts.items() if not n)}")
        return counts

    return retry(step, halt, "broker_unreachable", retry_on=(BrokerUnavailableError,), bootstrap=bootstrap)


def _place_markers(publisher: Publisher, bootstrap: str, halt: threading.Event) -> dict[tuple[str, int], int] | None:
    """Start-up markers, tried again at once (each try waits 5 s) while the broker does not take them; {} or None once halted."""
    return retry(lambda: publisher.place_markers(timeout=5.0, halt=halt.is_set), halt, "broker_unreachable",
                 backoff=Backoff(first=0.0), retry_on=(TimeoutError,), bootstrap=bootstrap, step="start-up markers")


def _message_limit(admin: AdminClient, kafka: KafkaSettings, topics: Topics) -> int:
    """What a unicast message may weigh: 90 % of the smaller of the producer's
    message.max.bytes and the unicast topic's max.message.bytes, less 1 KiB for headers."""
    producer = int(kafka.producer().get("message.max.bytes", LIBRDKAFKA_MESSAGE_MAX))
    try:
        topic = int(topic_config(admin, topics.unicast, "max.message.bytes") or producer)
    except (TransportError, ValueError) as exc:
        log.warning("message_limit_unknown", topic=topics.unicast, error=str(exc), using=producer)
        topic = producer
    return max(512, int(min(producer, topic) * 0.9) - 1024)


def _replay(kafka: KafkaSettings, config: DpmConfig, topics: Topics, partitions: int, store: KafkaTransactions,
            halt: threading.Event) -> tuple[Snapshot, changelog.Replayed] | None:
    """The snapshot rebuilt from the changelog and what replay found, with this run's
    incarnation (committed there) in place of the last one (None once halted); before
    anything is served."""
    started = time.monotonic()
    snapshot = Snapshot(config.strategy)
    source = KafkaSource(kafka, group_id=f"dpm.{config.topic_prefix}.changelog")
    try:
        replayed = retry(lambda: changelog.replay(source, topics.changelog, partitions, snapshot, halt.is_set), halt,
                         "broker_unreachable", retry_on=(BrokerUnavailableError,), step="changelog replay")
    finally:
        source.close()
    if replayed is None:
        return None
    incarnation = replayed.incarnation + 1

    def commit() -> bool:
        store.commit([changelog.incarnation_record(topics.changelog, incarnation)])
        return True

    if retry(commit, halt, "changelog_commit_failed", retry_on=(TransportError,), step="incarnation") is None:
        return None
    log.info("changelog_replayed", records=replayed.records, resources=len(snapshot.resources), hosts=len(snapshot.listed),
             incarnation=incarnation, seconds=round(time.monotonic() - started, 3))
    return snapshot, dataclasses.replace(replayed, incarnation=incarnation)


def _read_replies(source: KafkaSource, dead_letter_topic: str, engine: Engine, loop: asyncio.AbstractEventLoop,
                  halt: threading.Event, serving: Callable[[bool], None] = lambda ok: None) -> None:
    """Consume the reply topic in batches and hand decoded replies (and refused ones, for the
    dead-letter topic) to the event loop until `halt`; a consume error never ends the reader
    (every request would time out), it is retried. `serving` hears whether the broker is
    reachable (the DPM's health)."""
    backoff = Backoff(first=0.1)
    while not halt.is_set():
        messages = retry(lambda: source.poll_records(2000, 0.1), halt, "reply_consume_failed", backoff=backoff)
        serving(source.reachable())
        if not messages:
            continue
        batch, refused = decode_acks(messages, dead_letter_topic)
        if batch or refused:
            loop.call_soon_threadsafe(engine.on_acks, batch, refused)


def _poll(sink: KafkaSink, halt: threading.Event) -> None:
    """Serve one producer's delivery reports until halted. A thread each: a call returns when
    its producer has reports (or after 50 ms), and each return takes the GIL from the event
    loop, so producers polled in turn with short waits took it far more often."""
    while not halt.is_set():
        sink.poll(0.05)


async def _tick(engine: Engine, links: AgentLinks) -> None:
    """Retry and time out requests, drop fast paths that stopped answering, every 100 ms
    until cancelled; an error is logged, never ends it."""
    while True:
        try:
            links.check()
            engine.tracker.tick()
        except Exception:
            log.exception("ack_tick_failed")
        await asyncio.sleep(0.1)


async def serve(config: DpmConfig, bootstrap: str, stop: asyncio.Event) -> int:
    """Run until `stop`: topics, markers, reply reader, gRPC; then drain and flush."""
    with long_lived_heap():
        return await _serve(config, bootstrap, stop)


async def _serve(config: DpmConfig, bootstrap: str, stop: asyncio.Event) -> int:
    """Build, start in order, wait for the stop; the Lifecycle stops in reverse: gRPC (calls in
    flight get DRAIN_SECONDS for their hosts' replies, which are still read), ticker, reply
    reader, producer poller, changelog writer, consumer, producer flush.

    Before anything is written: the gRPC port is bound (exclusively: a second DPM on the
    same address fails here, before it fences the first), the changelog's transactional id
    is taken over (fencing any earlier DPM of these topics), and the snapshot is rebuilt
    from the changelog. Agents' resyncs get UNAVAILABLE until the server starts."""
    kafka = KafkaSettings(bootstrap, config.kafka_properties)
    topics = Topics(config.topic_prefix)
    async with Lifecycle(stop) as life:
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", min(2 * config.max_input_bytes, 2**31 - 1)),
                                          ("grpc.max_send_message_length", 64 << 20),
                                          ("grpc.so_reuseport", 0)])
        try:
            port = server.add_insecure_port(config.grpc_address)
        except RuntimeError as exc:
            raise ConfigError(f"cannot listen on {config.grpc_address}: {exc}") from exc
        # Served from now on: health (NOT_SERVING until the state is loaded) and reflection;
        # the API answers UNAVAILABLE until then (agents' resyncs retry).
        api = [SERVICE, status_pb2.DESCRIPTOR.services_by_name["DpmStatusService"].full_name,
               channel_pb2.DESCRIPTOR.services_by_name["AgentRegistry"].full_name]
        gate = Gate(api)
        server.add_generic_rpc_handlers((gate,))
        checker = add_operations(server, api)
        await checker.start()
        await server.start()
        life.on_stop("dpm-grpc-start-up", functools.partial(server.stop, 0), stop_timeout=1.0)
        admin = admin_client(kafka)
        counts = await asyncio.to_thread(_ensure_topics, admin, config, bootstrap, life.halt)
        if counts is None:
            return 0
        store = KafkaTransactions(kafka, f"dpm.{config.topic_prefix}")
        life.close("dpm-changelog-close", store.close, stop_timeout=5.0)
        def take_over() -> bool:
            store.start()
            return True

        if await asyncio.to_thread(retry, take_over, life.halt, "broker_unreachable", retry_on=(BrokerUnavailableError,),
                                   bootstrap=bootstrap, step="changelog take-over") is None:
            return 0
        rebuilt = await asyncio.to_thread(_replay, kafka, config, topics, counts[topics.changelog], store, life.halt)
        if rebuilt is None:
            return 0
        snapshot, replayed = rebuilt
        incarnation = replayed.incarnation
        sink = KafkaSinks(kafka, config.producers, counts)
        life.close("dpm-producer-flush", lambda: sink.flush(5.0), stop_timeout=6.0)
        publisher = Publisher(sink, topics, config.strategy == "topic-per-host", counts[topics.multicast], counts[topics.reply],
                              incarnation)
        publisher.create_topics = lambda names: ensure_topics(admin, dict.fromkeys(names, 1))
        publisher.max_message_bytes = config.max_message_bytes or await asyncio.to_thread(_message_limit, admin, kafka, topics)
        markers = await asyncio.to_thread(_place_markers, publisher, bootstrap, life.halt)
        if not markers:
            return 0
        loop = asyncio.get_running_loop()
        writer = changelog.Changelog(snapshot, topics.changelog, store, loop.call_soon_threadsafe, chunks=replayed.chunks)
        engine = Engine(config.strategy, publisher, config.retry_after, config.reply_timeout, writer, config.slice_hosts)
        engine.defer = loop.call_soon
        links = AgentLinks(engine.on_acks, config.link_timeout)
        life.close("dpm-agent-links", links.close, stop_timeout=1.0)
        publisher.paths = channels = Paths(config.path, snapshot, links, engine.tracker.waiting_on,
                                           config.path_upper_ports, config.path_lower_ports, config.path_settle_seconds)
        source = KafkaSource(kafka, group_id=f"dpm.{config.topic_prefix}")
        life.close("dpm-consumer-close", source.close, stop_timeout=5.0)
        source.assign([(topics.reply, p, markers[(topics.reply, p)]) for p in range(counts[topics.reply])])
        life.thread("dpm-changelog", writer.run, stop_timeout=5.0)
        for i, producer in enumerate(sink.sinks):
            life.thread(f"dpm-producer-poll-{i}", functools.partial(_poll, producer), stop_timeout=2.0)
        life.thread("dpm-replies", lambda halt: _read_replies(source, topics.dead_letter, engine, loop, halt,
                                                                 lambda ok: checker.ready(ok and gate.is_open)),
                    stop_timeout=2.0)
        life.task("dpm-ack-ticker", _tick(engine, links), stop_timeout=1.0)
        provisioner = Provisioner(engine, config.max_in_flight, config.batch_window_ms / 1000, config.batch_size,
                                  config.max_in_flight_hosts, config.batches_in_flight, config.max_input_bytes,
                                  config.max_hosts_per_input, lambda data: channels.lane(data.vpcs.values()),
                                  in_flight_seconds=config.in_flight_seconds)
        handlers = Handlers()
        register(provisioner, handlers)
        if config.metrics_port:
            metrics, answered = dpm_metrics(engine, provisioner, channels)
            provisioner.answered = answered.observe
            try:
                exporter = metrics.serve(config.metrics_port, config.grpc_address.rpartition(":")[0])
            except OSError as exc:
                raise ConfigError(f"--metrics-port {config.metrics_port}: {exc.strerror}") from exc
            life.close("dpm-metrics", exporter.shutdown, stop_timeout=2.0)
        status_pb2_grpc.add_DpmStatusServiceServicer_to_server(Status(engine, provisioner.batcher, channels), handlers)
        channel_pb2_grpc.add_AgentRegistryServicer_to_server(Registry(links, config.path), handlers)

        async def drain() -> None:  # refuse new calls; calls in flight are answered or cancelled at the end
            log.info("dpm_draining", requests_pending=len(engine.tracker.pending), grace_s=DRAIN_SECONDS)
            await checker.stopping()
            await server.stop(grace=DRAIN_SECONDS)

        life.on_stop("dpm-grpc", drain, stop_timeout=DRAIN_SECONDS + 2.0)
        gate.open(handlers.handlers)
        checker.ready(True)  # the broker answered and the snapshot is replayed
        gc.freeze()  # the replayed snapshot is never garbage: no collection scans it again
        log.info("dpm_ready", grpc_address=config.grpc_address, port=port, bootstrap=bootstrap, strategy=config.strategy,
                 epoch=engine.publisher.epoch, resources=len(snapshot.resources), **native.status())
        code = await life.wait()
    unflushed, unwritten = sink.queued(), writer.pending()
    if unflushed or unwritten:
        log.warning("messages_dropped_at_stop", unflushed=unflushed, changelog_writes_unwritten=unwritten,
                    why="the broker did not take them before the stop's flush timeout")
    log.info("dpm_stopped", unflushed=unflushed, batches=provisioner.batcher.batches, inputs=provisioner.batcher.inputs,
             **engine.counts())
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Console script entry point; returns the exit code (2: unusable configuration, 1: a runtime failure)."""
    return lifecycle.daemon_main("dpm-server", argv, parse_config, serve)


if __name__ == "__main__":
    sys.exit(main())
