"""The DPM's Prometheus metrics (`--metrics-port`), read from its counters when scraped,
and the histogram of callers' send -> reply it observes."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Histogram
from prometheus_client.core import Metric

from dpm_server.engine import Engine
from dpm_server.paths import Paths
from dpm_server.service import Provisioner
from gsmq.metrics import Metrics, counter, gauge, labelled_counter

PREFIX = "gsmq_dpm"


def dpm_metrics(engine: Engine, provisioner: Provisioner, paths: Paths | None) -> tuple[Metrics, Histogram]:
    """The registry, and the histogram the service observes each caller's input on."""
    metrics = Metrics()
    answered = metrics.histogram(f"{PREFIX}_request_seconds", "a caller's input: received -> answered (every targeted host applied)")

    batcher, deliveries = provisioner.batcher, provisioner.in_flight_hosts

    def collect() -> Iterable[Metric]:
        n = engine.counts()
        c = engine.publisher.counters
        yield counter(f"{PREFIX}_goal_states_received", "callers' inputs received", batcher.inputs)
        yield counter(f"{PREFIX}_goal_states_answered", "callers' inputs answered", n["requests_completed"])
        yield counter(f"{PREFIX}_requests_failed", "inputs answered with a host silent past --reply-timeout", n["requests_failed"])
        yield counter(f"{PREFIX}_invalid_requests", "inputs refused (INVALID_ARG)", n["invalid_requests"])
        kafka_unicast, kafka_multicast = c.unicast_messages, c.multicast_messages
        yield labelled_counter(f"{PREFIX}_messages", "goal-state messages sent, by channel (grpc: a VPC's once per member host)",
                               "channel", {"unicast": kafka_unicast, "multicast": kafka_multicast, "grpc": c.grpc_messages})
        yield labelled_counter(f"{PREFIX}_bytes", "goal-state bytes sent, by channel", "channel",
                               {"unicast": c.unicast_bytes, "multicast": c.multicast_bytes, "grpc": c.grpc_bytes})
        yield counter(f"{PREFIX}_acks", "agent acks received (reply topic and gRPC channel)", n["replies_received"])
        yield counter(f"{PREFIX}_retries", "straggler resyncs", n["retries"])
        yield counter(f"{PREFIX}_resyncs", "full states published (restarted agents and stragglers)", n["resyncs_served"])
        yield counter(f"{PREFIX}_resync_failures", "resyncs that could not be published", n["resync_failures"])
        yield counter(f"{PREFIX}_dead_letters", "records refused to the dead-letter topic", n["dead_letters"])
        yield counter(f"{PREFIX}_delivery_errors", "messages the broker never took", n["delivery_errors"])
        yield gauge(f"{PREFIX}_requests_in_flight", "inputs waiting for their hosts", n["requests_pending"])
        yield gauge(f"{PREFIX}_inputs_waiting", "inputs waiting to be sent with others", len(batcher.queue))
        yield gauge(f"{PREFIX}_host_deliveries_in_flight", "host deliveries of the inputs let in and not answered", deliveries.used)
        yield gauge(f"{PREFIX}_host_deliveries_bound", "host deliveries in flight before callers are held back (--in-flight-seconds)",
                    deliveries.limit)
        yield gauge(f"{PREFIX}_hosts", "hosts in the desired state", n["hosts"])
        yield gauge(f"{PREFIX}_vpcs", "VPCs with a port", n["vpcs"])
        yield gauge(f"{PREFIX}_resources", "resources in the desired state", n["resources"])
        if paths is not None:
            p = paths.counts()
            yield gauge(f"{PREFIX}_agents_registered", "agent processes whose fast path is up", p["agents_registered"])
            yield gauge(f"{PREFIX}_grpc_streams", "fast-path streams open", p["grpc_streams"])
            yield gauge(f"{PREFIX}_vpcs_on_grpc", "VPCs whose last message went over gRPC", p["vpcs_on_grpc"])
            yield counter(f"{PREFIX}_path_switches", "VPCs moved from one channel to the other", p["path_switches"])
            yield counter(f"{PREFIX}_agents_dropped", "fast paths dropped (their hosts then went through Kafka)", p["agents_dropped"])

    metrics.collect_with(collect)
    return metrics, answered
