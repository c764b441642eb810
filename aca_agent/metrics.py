"""The agent's Prometheus metrics (`--metrics-port`), read from its counters when scraped."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from aca_agent.acks import bucket_floor_us
from aca_agent.applier import Applier
from gsmq.metrics import Metrics, counter, gauge, log_histogram
from gsmq.transport import Source

PREFIX = "gsmq_aca"


def agent_metrics(applier: Applier, lock: threading.Lock, source: Source) -> Metrics:
    metrics = Metrics()

    def collect() -> Iterable[Metric]:
        c = applier.counters
        with lock:
            followed = sum(len(hs.vpc_ports) for hs in applier.hosts.values())
            pending = applier.pending_count()
            elapse, apply = dict(c.elapse_buckets), dict(c.apply_buckets)
        yield counter(f"{PREFIX}_messages_applied", "(host, goal-state message) pairs applied", c.messages_applied)
        yield counter(f"{PREFIX}_bytes", "goal-state bytes received, by channel", c.bytes_consumed, {"channel": "kafka"})
        yield counter(f"{PREFIX}_bytes", "goal-state bytes received, by channel", c.bytes_pushed, {"channel": "grpc"})
        yield counter(f"{PREFIX}_acks_sent", "acks produced on the reply topic", c.replies_sent)
        yield counter(f"{PREFIX}_dead_letters", "messages refused to the dead-letter topic", c.dead_lettered)
        yield counter(f"{PREFIX}_resyncs_requested", "hosts whose full state was asked for after a gap", c.resyncs)
        yield counter(f"{PREFIX}_duplicates", "resources seen again at the same revision", c.duplicates)
        yield counter(f"{PREFIX}_out_of_order", "resources refused at an older revision (OUT_OF_ORDER)", c.out_of_order)
        yield counter(f"{PREFIX}_stale_messages", "host messages at or below a gs-seq seen: skipped", c.stale_messages)
        yield counter(f"{PREFIX}_bundle_states_known", "join and resync bundles' states their VPC's table knew: not parsed",
                      c.bundle_states_known)
        yield gauge(f"{PREFIX}_hosts", "hosts served by this process", len(applier.hosts))
        yield gauge(f"{PREFIX}_followed_vpcs", "(host, VPC) pairs followed", followed)
        yield gauge(f"{PREFIX}_pending_resources", "states waiting for their parent", pending)
        lag = source.lag()
        if lag:
            family = GaugeMetricFamily(f"{PREFIX}_consumer_lag", "records not read yet, per assigned partition",
                                       labels=["topic", "partition"])
            for (topic, part), records in sorted(lag.items()):
                family.add_metric([topic, str(part)], records)
            yield family
        yield log_histogram(f"{PREFIX}_publish_to_applied_seconds", "gs-sent-ns (DPM) to applied here, per message", elapse,
                            lambda b: bucket_floor_us(b) / 1e6, c.elapse_us_sum / 1e6)
        yield log_histogram(f"{PREFIX}_apply_seconds", "time to apply a message, per message", apply,
                            lambda b: bucket_floor_us(b) / 1e6, c.apply_us_sum / 1e6)

    metrics.collect_with(collect)
    return metrics
