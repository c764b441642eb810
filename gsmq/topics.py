"""Topic names of the four channels, the changelog and the per-host topics, all derived from one prefix."""

from __future__ import annotations

from dataclasses import dataclass

# Partitions of each topic when a daemon creates it (an existing topic keeps its own).
UNICAST_PARTITIONS = 16
MULTICAST_PARTITIONS = 16
REPLY_PARTITIONS = 8
DEAD_LETTER_PARTITIONS = 1
# One: a transaction ends with a commit marker on every partition it wrote, so each partition
# more makes every commit dearer for the broker, and one DPM is the only writer.
CHANGELOG_PARTITIONS = 1


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

    @property
    def changelog(self) -> str:
        """The DPM's desired state, log-compacted (one record per resource)."""
        return f"{self.prefix}.changelog"

    @staticmethod
    def is_reply(topic: str) -> bool:
        """Whether `topic` is named as a reply topic (`<prefix>.reply`, whatever the prefix)."""
        return topic.endswith(".reply")

    def host(self, host_id: str) -> str:
        """The per-host topic of the `topic-per-host` strategy."""
        return f"{self.prefix}.host.{host_id}"

    def default_partitions(self) -> dict[str, int]:
        """The shared channels with their default partition counts (docs/internals.md)."""
        return {self.unicast: UNICAST_PARTITIONS, self.multicast: MULTICAST_PARTITIONS, self.reply: REPLY_PARTITIONS,
                self.dead_letter: DEAD_LETTER_PARTITIONS}

