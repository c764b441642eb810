"""The AdminClient side of Kafka: create topics, count partitions, list names; errors as `gsmq.errors`."""

from __future__ import annotations

import time
from collections.abc import Mapping

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient as AdminClient  # re-exported: the type callers hold
from confluent_kafka.admin import ConfigResource
from confluent_kafka.cimpl import NewTopic

from gsmq.errors import BrokerUnavailableError
from gsmq.kafka import KafkaSettings
from gsmq.kafka_transport import as_failure, build_client, kafka_errors


def admin_client(settings: KafkaSettings) -> AdminClient:
    """An AdminClient for `settings`; a property librdkafka refuses is a `ConfigError`."""
    return build_client(lambda: AdminClient(settings.admin()))


def ensure_topics(admin: AdminClient, partitions: Mapping[str, int], timeout: float = 10.0,
                  configs: Mapping[str, Mapping[str, str]] | None = None) -> None:
    """Create the topics that do not exist yet (the broker's default replication factor;
    `configs`: topic properties by name, e.g. cleanup.policy); an existing topic is left as
    it is, unchecked. Returns at once when every topic exists, else once the broker's
    metadata shows every topic it created with a leader for each partition (Kafka's
    CreateTopics answers before that); `BrokerUnavailableError` when that has not happened
    within `timeout`."""
    existing = topic_names(admin, timeout)
    names = [name for name in partitions if name not in existing]
    if not names:
        return
    with kafka_errors("creating topics"):
        new = [NewTopic(name, partitions[name], config=dict((configs or {}).get(name, {}))) for name in names]
        futures = admin.create_topics(new, operation_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            failed = as_failure(exc, f"creating topic {name}")
            if failed.code != "TOPIC_ALREADY_EXISTS":  # else a concurrent creator won the race: fine
                raise failed from exc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with kafka_errors("listing topics"):
            meta = admin.list_topics(timeout=timeout).topics
        if all(n in meta and meta[n].error is None and meta[n].partitions and all(p.leader >= 0 for p in meta[n].partitions.values())
               for n in names):
            return
        time.sleep(0.05)
    raise BrokerUnavailableError(f"created topics without a leader for every partition after {timeout:g} s: {sorted(names)}")


def partition_counts(admin: AdminClient, topics: list[str], timeout: float = 10.0) -> dict[str, int]:
    """How many partitions each of `topics` has (0 when it does not exist)."""
    with kafka_errors("listing topics"):
        meta = admin.list_topics(timeout=timeout).topics
    return {name: (len(meta[name].partitions) if name in meta and meta[name].error is None else 0) for name in topics}


def partition_count(admin: AdminClient, topic: str, timeout: float = 10.0) -> int:
    """How many partitions `topic` has (0 when it does not exist)."""
    with kafka_errors(f"describing topic {topic}"):
        meta = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        return 0
    return len(meta.partitions)


def topic_names(admin: AdminClient, timeout: float = 10.0) -> set[str]:
    """The names of every topic of the cluster."""
    with kafka_errors("listing topics"):
        return set(admin.list_topics(timeout=timeout).topics)



def topic_config(admin: AdminClient, topic: str, name: str, timeout: float = 10.0) -> str | None:
    """The value of topic property `name` (such as max.message.bytes) as the broker has it."""
    with kafka_errors(f"describing the configuration of {topic}"):
        (future,) = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)], request_timeout=timeout).values()
        entry = future.result().get(name)
    return None if entry is None else str(entry.value)
