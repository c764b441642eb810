"""Topic names of the four channels (prefix configurable) and their creation."""

from __future__ import annotations

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
    """Create the topics that do not exist yet; an existing topic is left as it is."""
    existing = admin.list_topics(timeout=timeout).topics
    wanted = [NewTopic(name, n, 1) for name, n in partitions.items() if name not in existing]
    if not wanted:
        return
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result()
        except KafkaException as exc:  # a concurrent creator won the race: fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def partition_count(admin: AdminClient, topic: str, timeout: float = 10.0) -> int:
    """How many partitions `topic` has (0 when it does not exist)."""
    meta = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        return 0
    return len(meta.partitions)
