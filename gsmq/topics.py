"""Topic names of the four channels (prefix configurable) and their creation."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic


@dataclass(frozen=True)
class Topics:
    """The channels of one deployment; every name derives from `prefix`."""

    prefix: str = "gs"

    @property
    def unicast(self) -> str:
        return f"{self.prefix}.unicast"

    @property
    def multicast(self) -> str:
        return f"{self.prefix}.multicast"

    @property
    def reply(self) -> str:
        return f"{self.prefix}.reply"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.deadletter"

    def host(self, host_id: str) -> str:
        """The per-host topic of the `topic-per-host` strategy."""
        return f"{self.prefix}.host.{host_id}"

    def default_partitions(self) -> dict[str, int]:
        """The shared channels with their default partition counts (docs/internals.md)."""
        return {self.unicast: 16, self.multicast: 16, self.reply: 8, self.dead_letter: 1}


def ensure_topics(admin: AdminClient, partitions: dict[str, int], timeout: float = 10.0) -> None:
    """Create the topics that do not exist yet (the broker's default replication factor); an
    existing topic is left as it is. Returns once the broker's metadata shows every topic
    with a leader for each partition: Kafka's CreateTopics answers before that."""
    existing = admin.list_topics(timeout=timeout).topics
    names = [name for name in partitions if name not in existing]
    wanted = [NewTopic(name, partitions[name]) for name in names]
    if not wanted:
        return
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result()
        except KafkaException as exc:  # a concurrent creator won the race: fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(timeout=timeout).topics
        ready = [n for n in names if n in meta and meta[n].error is None and meta[n].partitions
                 and all(p.leader >= 0 for p in meta[n].partitions.values())]
        if len(ready) == len(names) or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def partition_count(admin: AdminClient, topic: str, timeout: float = 10.0) -> int:
    """How many partitions `topic` has (0 when it does not exist)."""
    meta = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        return 0
    return len(meta.partitions)
