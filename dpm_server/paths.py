"""Which channel carries a VPC's messages (docs/internals.md, "Channels per VPC").

`--path grpc` pushes every VPC through the agents' fast paths, `mq` through Kafka, `auto`
chooses by the VPC's port count with hysteresis, as Alcor's PathManagerService does: a
VPC goes to Kafka above `upper` ports and back to gRPC below `lower`. gRPC is used only
while every member host of the VPC has a registered fast path that is up; otherwise the
VPC goes through Kafka at once. On gRPC a VPC's message goes to each member host, on the
link of its agent process (addressed to the host): the fan-out a region of single-host
agents costs, which a simulator standing for many hosts must not hide. A host's own
messages follow its VPCs: gRPC only when all of them are on gRPC and its link is up.

Order across a switch: sequences continue across channels (one gs-seq per host and per
VPC, whichever channel carries a message), and an agent never applies a message at or
below a sequence it has seen, so no host applies an older state after a newer one; a
message overtaken by a newer one on the other channel shows a gap, which its resync
closes. To keep such resyncs rare, a VPC whose messages are still waiting for acks
switches only when they are all acked, or after `settle` seconds of waiting; a switch
forced by a link that went down is made at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol

import structlog

from dpm_server.publisher import Link
from dpm_server.snapshot import Snapshot

log = structlog.get_logger()
GRPC, MQ, AUTO = "grpc", "mq", "auto"
PATHS = (GRPC, MQ, AUTO)
UPPER_PORTS, LOWER_PORTS = 1000, 100  # Alcor's UPPER_VPC_SIZE and LOWER_VPC_SIZE
SETTLE_SECONDS = 2.0


class Links(Protocol):
    """The registered fast paths (`dpm_server.links.AgentLinks`)."""

    dropped: int

    @property
    def streams(self) -> int: ...

    def of(self, host: str) -> Link | None: ...

    def __len__(self) -> int: ...


class Paths:
    """The channel of each VPC; `vpc_links` and `host_link` answer for the next message."""

    def __init__(self, mode: str, snapshot: Snapshot, links: Links, busy: Callable[[str], bool],
                 upper: int = UPPER_PORTS, lower: int = LOWER_PORTS, settle: float = SETTLE_SECONDS) -> None:
        if mode not in PATHS:
            raise ValueError(f"unknown path {mode!r} (choose from {', '.join(PATHS)})")
        if not 0 <= lower <= upper:
            raise ValueError(f"the lower bound ({lower}) must be at most the upper one ({upper})")
        self.mode = mode
        self.snapshot = snapshot
        self.links = links
        self.busy = busy  # whether a VPC's messages still wait for acks
        self.upper, self.lower, self.settle = upper, lower, settle
        self.clock: Callable[[], float] = time.monotonic
        self.sized: dict[str, str] = {}  # vpc -> the channel its port count asks for (auto's hysteresis)
        self.current: dict[str, str] = {}  # vpc -> the channel of its last message
        self._held: dict[str, float] = {}  # vpc -> since when a switch waits for its acks
        self.switches = 0

    def wanted(self, vpc: str) -> str:
        """The channel the mode and the VPC's port count ask for."""
        if self.mode != AUTO:
            return self.mode
        ports = self.snapshot.vpc_ports.get(vpc, 0)
        was = self.sized.get(vpc)
        if was is None:
            now = GRPC if ports <= self.upper else MQ
        elif was == GRPC:
            now = MQ if ports > self.upper else GRPC
        else:
            now = GRPC if ports < self.lower else MQ
        self.sized[vpc] = now
        return now

    def vpc_links(self, vpc: str) -> list[tuple[Link, str]] | None:
        """Where to push the VPC's next message: (link, host) for each member host, or None: Kafka."""
        want = self.wanted(vpc)
        was = self.current.get(vpc, want)
        links = self._links(self.snapshot.members.get(vpc, ())) if GRPC in (want, was) and len(self.links) else None
        target = GRPC if want == GRPC and links is not None else MQ
        if target != was:
            forced = was == GRPC and links is None
            if not forced and self.busy(vpc) and self.clock() - self._held.setdefault(vpc, self.clock()) < self.settle:
                target = was  # its messages in flight are acked first
            else:
                self._held.pop(vpc, None)
                self.switches += 1
                log.info("vpc_path_switched", vpc=vpc, to=target, ports=self.snapshot.vpc_ports.get(vpc, 0),
                         why="a member's fast path is down" if forced else "port count" if want != was else "fast paths registered")
        else:
            self._held.pop(vpc, None)
        self.current[vpc] = target
        return links if target == GRPC else None

    def lane(self, vpcs: Iterable[str | None]) -> str:
        """The channel an input's messages take now, as far as its VPCs tell (no choice is
        made here): the DPM batches each channel's inputs apart."""
        named = [vpc for vpc in vpcs if vpc]
        if self.mode == MQ or not named:
            return MQ
        return GRPC if all(self.current.get(vpc) == GRPC for vpc in named) else MQ

    def counts(self) -> dict[str, int]:
        return {"agents_registered": len(self.links), "agents_dropped": self.links.dropped, "grpc_streams": self.links.streams,
                "path_switches": self.switches,
                "vpcs_on_grpc": sum(1 for channel in self.current.values() if channel == GRPC)}

    def host_link(self, host: str) -> Link | None:
        """The link of the host's next own message, or None: Kafka."""
        if self.mode == MQ:
            return None
        link = self.links.of(host)
        if link is None:
            return None
        for vpc in self.snapshot.host_vpcs(host):
            if self.current.get(vpc, "") != GRPC and self.vpc_links(vpc) is None:
                return None
        return link

    def _links(self, hosts: Iterable[str]) -> list[tuple[Link, str]] | None:
        """(link, host) for each of `hosts`, or None when one of them has no link up."""
        found = []
        for host in hosts:
            link = self.links.of(host)
            if link is None:
                return None
            found.append((link, host))
        return found
