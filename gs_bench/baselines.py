"""The raw Kafka baseline, run beside the goal-state path on the same broker and machine: a
plain producer -> a consumer in another process, same message count and sizes, no
protobuf, no apply: the ceiling of the transport. (The gRPC fast path baseline is the same
storm through a DPM with `--path grpc`: `scenarios.run_storm(fast_path=True)`.)"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from gs_bench.measure import cdf_sample, header_bytes, percentiles
from gsmq import logs
from gsmq.kafka import KafkaSettings
from gsmq.kafka_admin import ensure_topics
from gsmq.kafka_transport import consume_batch

STAMP = "gs-sent-ns"
WARM_UP = b"warm-up"  # the key of records the reader does not measure
# Before its measured records the producer sends WARM_S of traffic the reader skips, at the
# measured rate (an unpaced run: at WARM_RATE): the baseline is the transport's steady state,
# as the goal-state path is measured on topics its storm warmed (a new topic's first traffic
# can stall for most of a second).
WARM_S = 1.0
WARM_RATE = 1000.0


def consume(bootstrap: str, topic: str, partitions: int, count: int, timeout: float) -> dict[str, Any]:
    """Read `count` messages from every partition of `topic`; latency from the producer's stamp."""
    consumer = Consumer(KafkaSettings.from_env(bootstrap).consumer("bench-raw", **{"fetch.wait.max.ms": 5}))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    deadline = time.monotonic() + timeout
    warm: set[int] = set()
    while len(warm) < partitions and time.monotonic() < deadline:  # every partition fetched: the producer may start
        warm.update(m.partition() or 0 for m in consumer.consume(100, 0.2) if m.error() is None and m.key() == WARM_UP)
    print("ready", flush=True)
    latencies: list[float] = []
    first = last = 0
    size = 0
    while len(latencies) < count and time.monotonic() < deadline:
        for msg in consume_batch(consumer, 10000, 0.1):
            if msg.error() is not None or msg.key() == WARM_UP:
                continue
            now = time.time_ns()
            sent = int(header_bytes(msg)[STAMP])
            first = first or sent
            last = now
            size += len(msg.value() or b"")
            latencies.append((now - sent) / 1e6)
    consumer.close()
    return {"messages": len(latencies), "bytes": size, "first_sent_ns": first, "last_received_ns": last,
            "latency_ms": percentiles(latencies), "latencies_ms": latencies}


def raw_kafka(
    bootstrap: str, topic: str, keys: list[str], count: int, size: int, partitions: int = 16, rate: float | None = None
) -> dict[str, Any]:
    """Produce `count` messages of `size` bytes keyed round-robin by `keys` (the producer
    settings of the DPM: idempotent, acks=all); a consumer process reads them.
    Throughput = messages / (first produce -> last consumed); latency = consumed - the
    producer's timestamp header, per message."""
    settings = KafkaSettings.from_env(bootstrap)
    ensure_topics(AdminClient(settings.admin()), {topic: partitions})
    reader = subprocess.Popen(
        [sys.executable, "-m", "gs_bench.baselines", "--bootstrap", bootstrap, "--topic", topic,
         "--partitions", str(partitions), "--count", str(count)],
        stdout=subprocess.PIPE, text=True, env={**os.environ},
    )
    assert reader.stdout is not None
    producer = Producer(settings.producer())
    for p in range(partitions):  # one a partition: the consumer is ready once it reads them all
        producer.produce(topic, b"", WARM_UP, partition=p)
    producer.flush(30)
    reader.stdout.readline()  # "ready"
    payload = os.urandom(max(size, 1))
    warm_rate = rate or WARM_RATE
    _paced(producer, int(WARM_S * warm_rate), warm_rate, lambda i: producer.produce(topic, payload, WARM_UP, partition=i % partitions))
    _paced(producer, count, rate, lambda i: producer.produce(
        topic, payload, keys[i % len(keys)].encode(), headers=[(STAMP, str(time.time_ns()).encode())]))
    producer.flush(60)
    out, _ = reader.communicate(timeout=300)
    result: dict[str, Any] = json.loads(out)
    duration = (result["last_received_ns"] - result["first_sent_ns"]) / 1e9 or 1e-9
    latencies = result.pop("latencies_ms")
    result["cdf_latency_ms"] = cdf_sample(latencies)
    result.update(duration_s=duration, messages_per_s=result["messages"] / duration, bytes_per_s=result["bytes"] / duration,
                  message_bytes=size, offered_per_s=rate, partitions=partitions)
    return result


def _paced(producer: Producer, count: int, rate: float | None, produce: Callable[[int], None]) -> None:
    """`produce(i)` for i in 0 .. count-1, `rate` a second (None: as fast as the queue takes them)."""
    start = time.monotonic()
    for i in range(count):
        if rate:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        while True:
            try:
                produce(i)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)


def best_run(runs: Sequence[dict[str, Any]], figure: Callable[[dict[str, Any]], float]) -> dict[str, Any]:
    """The run with the lowest `figure` (negate it where higher is better), with every
    run's figure in `runs`, in the order they ran. The path is measured against the best
    the transport did: on a shared machine background work only makes a run worse."""
    kept = dict(runs[min(range(len(runs)), key=lambda i: figure(runs[i]))])
    kept["runs"] = [abs(figure(r)) for r in runs]
    return kept


def _main() -> None:
    parser = argparse.ArgumentParser(description="raw Kafka baseline: the consumer side (run by the bench)")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=240.0)
    args = parser.parse_args()
    logs.configure("warning")  # stdout carries the result alone; librdkafka's lines go to stderr
    print(json.dumps(consume(args.bootstrap, args.topic, args.partitions, args.count, args.timeout)))


if __name__ == "__main__":
    _main()
