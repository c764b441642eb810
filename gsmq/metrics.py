"""Prometheus metrics of a daemon (`--metrics-port`): read from the daemon's own counters
when scraped, so the hot paths pay nothing for them; histograms the daemon observes.

`serve(port, host, collect)` exposes `collect()`'s families on http://host:port/metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

Families = Callable[[], Iterable[Metric]]
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _Collector(Collector):
    def __init__(self, collect: Families) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()


def counter(name: str, documentation: str, value: float, labels: Mapping[str, str] | None = None) -> CounterMetricFamily:
    """A counter family `<name>_total` with one sample (labelled when `labels`)."""
    if labels:
        family = CounterMetricFamily(name, documentation, labels=list(labels))
        family.add_metric(list(labels.values()), value)
        return family
    return CounterMetricFamily(name, documentation, value=value)


def labelled_counter(name: str, documentation: str, label: str, values: Mapping[str, float]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def log_histogram(name: str, documentation: str, buckets: Mapping[int, int], floor: Callable[[int], float],
                  total: float) -> HistogramMetricFamily:
    """A histogram from counts per log bucket (bucket b counts values in [floor(b), floor(b + 1)))
    as Prometheus' cumulative buckets, each bound the next bucket's floor (seconds)."""
    cumulative, out = 0, []
    for b in sorted(buckets):
        cumulative += buckets[b]
        out.append((repr(floor(b + 1)), cumulative))
    out.append(("+Inf", cumulative))
    return HistogramMetricFamily(name, documentation, buckets=out, sum_value=total)


class Metrics:
    """A daemon's registry: its collected families, and the histograms it observes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)

    def collect_with(self, collect: Families) -> None:
        self.registry.register(_Collector(collect))

    def histogram(self, name: str, documentation: str, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> Histogram:
        return Histogram(name, documentation, buckets=buckets, registry=self.registry)

    def serve(self, port: int, host: str) -> Any:
        """Expose /metrics on host:port (a daemon thread); returns the server (`shutdown()` stops it)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
