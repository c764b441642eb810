"""`dpm-server`: configuration, wiring and lifecycle of the DPM daemon."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from dpm_server.acks import Reply, decode_replies
from dpm_server.engine import Engine
from dpm_server.planner import STRATEGIES
from dpm_server.publisher import Publisher
from dpm_server.service import Provisioner, Status
from gsmq import lifecycle
from gsmq.config import ConfigError, Settings, positive_int
from gsmq.kafka import KafkaSettings
from gsmq.kafka_transport import KafkaSink, KafkaSource
from gsmq.topics import Topics, ensure_topics
from alcor.schema import goalstateprovisioner_pb2_grpc as gsp_grpc
from gsmq.v1 import status_pb2_grpc

log = structlog.get_logger()
DRAIN_SECONDS = 3.0  # on SIGTERM: how long calls in flight may wait for their hosts' replies

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
    batch_window_ms: float
    batch_size: int
    unicast_partitions: int
    multicast_partitions: int
    reply_partitions: int
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
    s.option("--strategy", default="vpc-multicast", choices=list(STRATEGIES), help="how goal states travel")
    s.option("--reply-timeout", default=10.0, convert=positive_float, help="seconds a request waits for its hosts before they are FAILURE")
    s.option("--retry-after", default=3.0, convert=positive_float, help="seconds before a silent host gets its copy again")
    s.option("--max-in-flight", default=10000, convert=positive_int, help="requests in flight before callers are held back")
    s.option("--max-in-flight-hosts", default=100000, convert=positive_int,
             help="host deliveries in flight (a request counts once per host it targets) before callers are held back;"
             " keep it below what the agents apply in --retry-after seconds")
    s.option("--batch-window-ms", default=10.0, convert=float,
             help="while requests are in flight, inputs arriving within this window are sent together (0: one by one)")
    s.option("--batch-size", default=1000, convert=positive_int, help="most inputs sent together")
    s.option("--unicast-partitions", default=16, convert=positive_int, help="partitions of the unicast topic when it is created")
    s.option("--multicast-partitions", default=16, convert=positive_int, help="partitions of the multicast topic when it is created")
    s.option("--reply-partitions", default=8, convert=positive_int, help="partitions of the reply topic when it is created")
    return s


def parse_config(argv: Sequence[str], environ: dict[str, str] | None = None) -> DpmConfig:
    values: dict[str, Any] = settings().parse(argv, environ)
    if values["retry_after"] >= values["reply_timeout"]:
        raise ConfigError(f"--retry-after ({values['retry_after']}) must be shorter than --reply-timeout ({values['reply_timeout']})")
    if values["batch_window_ms"] < 0:
        raise ConfigError(f"--batch-window-ms must be >= 0, got {values['batch_window_ms']}")
    host, sep, port = values["grpc_address"].rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--grpc-address must be host:port, got {values['grpc_address']!r}")
    return DpmConfig(**{k: values[k] for k in DpmConfig.__dataclass_fields__})


def _ensure_topics(kafka: KafkaSettings, config: DpmConfig, halt: threading.Event) -> dict[str, int]:
    """Create the channels, retrying with backoff while the broker is unreachable; their partition counts."""
    topics = Topics(config.topic_prefix)
    wanted = {topics.unicast: config.unicast_partitions, topics.multicast: config.multicast_partitions,
              topics.reply: config.reply_partitions, topics.dead_letter: 1}
    admin = AdminClient(kafka.admin())
    backoff = 0.2
    while not halt.is_set():
        try:
            ensure_topics(admin, wanted, timeout=5.0)
            meta = admin.list_topics(timeout=5.0).topics
            return {name: len(meta[name].partitions) for name in wanted}
        except KafkaException as exc:
            log.warning("broker_unreachable", bootstrap=kafka.bootstrap, error=str(exc), retry_in_s=backoff)
            halt.wait(backoff)
            backoff = min(backoff * 2, 5.0)
    return {}


def _read_replies(source: KafkaSource, engine: Engine, loop: asyncio.AbstractEventLoop, halt: threading.Event) -> None:
    """Consume the reply topic in batches and hand decoded replies to the event loop."""
    backoff = 0.1
    while not halt.is_set():
        try:
            messages = source.poll_batch(2000, 0.1)
            backoff = 0.1
        except Exception as exc:  # noqa: BLE001 - a consume error must not end the reader (every request would time out)
            log.warning("reply_consume_failed", error=str(exc), retry_in_s=backoff)
            halt.wait(backoff)
            backoff = min(backoff * 2, 5.0)
            continue
        batch = decode_replies(messages)
        if batch:
            loop.call_soon_threadsafe(_deliver, engine, batch)


def _deliver(engine: Engine, batch: list[Reply]) -> None:
    for host, headers, reply in batch:
        engine.tracker.on_reply(host, headers, reply)


async def serve(config: DpmConfig, bootstrap: str, stop: asyncio.Event) -> int:
    """Run until `stop`: topics, markers, reply reader, gRPC; then drain and flush."""
    try:
        return await _serve(config, bootstrap, stop)
    finally:
        # Kafka clients caught in reference cycles would keep their broker connections (and an
        # embedded broker's graceful stop waiting on them) until some later collection.
        gc.collect()


async def _serve(config: DpmConfig, bootstrap: str, stop: asyncio.Event) -> int:
    kafka = KafkaSettings(bootstrap, config.kafka_properties)
    topics = Topics(config.topic_prefix)
    halt = threading.Event()  # start-up steps (topics, markers) give up as soon as `stop` is set
    stopper = asyncio.create_task(lifecycle.relay(stop, halt))
    try:
        counts = await asyncio.to_thread(_ensure_topics, kafka, config, halt)
        if not counts:
            return 0
        sink = KafkaSink(kafka)
        publisher = Publisher(sink, topics, config.strategy == "topic-per-host", counts[topics.multicast], counts[topics.reply])
        admin = AdminClient(kafka.admin())
        publisher.create_topic = lambda name: ensure_topics(admin, {name: 1})
        markers = await asyncio.to_thread(_place_markers, publisher, bootstrap, halt)
        if not markers:
            return 0
        engine = Engine(config.strategy, publisher, config.retry_after, config.reply_timeout)
        source = KafkaSource(kafka, group_id=f"dpm.{config.topic_prefix}")
        source.assign([(topics.reply, p, markers[(topics.reply, p)]) for p in range(counts[topics.reply])])
        await _run(config, bootstrap, stop, engine, sink, source)
        return 0
    finally:
        stopper.cancel()


async def _run(config: DpmConfig, bootstrap: str, stop: asyncio.Event, engine: Engine, sink: KafkaSink, source: KafkaSource) -> None:
    """Serve gRPC until `stop`; then refuse new calls, let calls in flight finish (their hosts'
    replies are still read) for up to DRAIN_SECONDS, and flush what was produced."""
    loop = asyncio.get_running_loop()
    workers = threading.Event()  # the reply reader and the producer poller run until the drain is over
    threads = [
        threading.Thread(target=_poll, args=(sink, workers), name="dpm-producer-poll", daemon=True),
        threading.Thread(target=_read_replies, args=(source, engine, loop, workers), name="dpm-replies", daemon=True),
    ]
    for thread in threads:
        thread.start()
    ticker = asyncio.create_task(_tick(engine))
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)])
    provisioner = Provisioner(engine, config.max_in_flight, config.batch_window_ms / 1000, config.batch_size,
                              config.max_in_flight_hosts)
    gsp_grpc.add_GoalStateProvisionerServicer_to_server(provisioner, server)
    status_pb2_grpc.add_DpmStatusServiceServicer_to_server(Status(engine), server)
    try:
        try:
            port = server.add_insecure_port(config.grpc_address)
        except RuntimeError as exc:
            raise ConfigError(f"cannot listen on {config.grpc_address}: {exc}") from exc
        await server.start()
        log.info("dpm_ready", grpc_address=config.grpc_address, port=port, bootstrap=bootstrap, strategy=config.strategy,
                 epoch=engine.publisher.epoch)
        await stop.wait()
        log.info("dpm_draining", requests_pending=len(engine.tracker.pending), grace_s=DRAIN_SECONDS)
        await server.stop(grace=DRAIN_SECONDS)  # returns once calls in flight are answered (or cancelled at the end)
    finally:
        ticker.cancel()
        workers.set()
        remaining = await asyncio.to_thread(sink.flush, 5.0)
        for thread in threads:
            thread.join(timeout=2.0)
        source.close()
        log.info("dpm_stopped", unflushed=remaining, batches=provisioner.batcher.batches, inputs=provisioner.batcher.inputs, **engine.counts())


def _place_markers(publisher: Publisher, bootstrap: str, halt: threading.Event) -> dict[tuple[str, int], int]:
    """Start-up markers, waiting (and logging) while the broker does not take them; {} once halted."""
    while not halt.is_set():
        try:
            return publisher.place_markers(timeout=5.0, halt=halt.is_set)
        except TimeoutError:
            log.warning("broker_unreachable", bootstrap=bootstrap, step="start-up markers", retry_in_s=0)
    return {}


def _poll(sink: KafkaSink, halt: threading.Event) -> None:
    while not halt.is_set():
        sink.poll(0.05)


async def _tick(engine: Engine) -> None:
    """Retry and time out requests every 100 ms until cancelled; an error is logged, never ends it."""
    while True:
        try:
            engine.tracker.tick()
        except Exception:  # noqa: BLE001
            log.exception("ack_tick_failed")
        await asyncio.sleep(0.1)


def main(argv: Sequence[str] | None = None) -> int:
    """Console script entry point; returns the exit code (2 for unusable configuration)."""
    return lifecycle.daemon_main("dpm-server", argv, parse_config, serve, (ConfigError, OSError, RuntimeError, TimeoutError))


if __name__ == "__main__":
    sys.exit(main())
