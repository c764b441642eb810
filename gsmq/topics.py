"""Topic names of the four channels, the changelog and the per-host topics, all derived from one prefix."""

from __future__ import annotations

from dataclasses import dataclass


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

    def host(self, host_id: str) -> str:
        """The per-host topic of the `topic-per-host` strategy."""
        return f"{self.prefix}.host.{host_id}"

    def default_partitions(self) -> dict[str, int]:
        """The shared channels with their default partition counts (docs/internals.md)."""
        return {self.unicast: 16, self.multicast: 16, self.reply: 8, self.dead_letter: 1}

