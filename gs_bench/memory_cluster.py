"""A DPM engine and real agents over one `MemoryBus`, with no Kafka, gRPC or clocks: the
engine publishes, each agent (`AgentConsumer` + `Applier`) reads its partitions, acks go
back to the ack tracker and resync requests to the engine; `settle()` runs every party
until nothing moves. The in-memory tests and `gs_bench.footprint` drive it."""

from __future__ import annotations

from collections.abc import Iterable

from aca_agent.applier import Applier
from aca_agent.consumer import AgentConsumer
from aca_agent.dataplane import MemoryDataPlane
from dpm_server.acks import decode_acks
from dpm_server.testing import memory_engine
from gsmq.transport import Envelope


class MemoryCluster:
    """An engine and one in-memory agent per host, or one simulator for all (`sim`)."""

    def __init__(self, strategy: str, hosts: Iterable[str], timeout: float = 10.0, retry_after: float | None = None,
                 sim: bool = False, durable: bool = False) -> None:
        """`durable`: the engine writes its changelog to the bus (`memory_engine`)."""
        self.eng, self.bus, self.topics = memory_engine(strategy, timeout=timeout, retry_after=retry_after, durable=durable)
        self.strategy = strategy
        self.hosts = list(hosts)
        # sim: one simulator process (one Applier, one consumer) serves every host, so the
        # followers of a VPC share its tables; else one agent per host (named by its host)
        self.groups = {"sim": self.hosts} if sim else {host: [host] for host in self.hosts}
        self.silent: set[str] = set()  # agents (hosts) that are not running
        self.resync_requests: list[str] = []
        self.refused: list[Envelope] = []  # reply records the DPM refused
        self.appliers: dict[str, Applier] = {}
        self.agents: dict[str, AgentConsumer] = {}
        for name in self.groups:
            self.add_agent(self.groups[name][0])
        self.dpm = self.bus.source("dpm")
        self.dpm.assign([(self.topics.reply, p, 0) for p in range(self.bus.partition_count(self.topics.reply))])
        self.settle()  # start-up resyncs of empty hosts

    def add_agent(self, host: str) -> None:
        """A fresh agent (empty data plane) for `host` (its whole simulator), as after a restart: it asks for a resync."""
        name = next(n for n, members in self.groups.items() if host in members)
        applier = Applier(MemoryDataPlane(), self.groups[name])
        for member in self.groups[name]:
            self.appliers[member] = applier
        self.agents[name] = AgentConsumer(
            source=self.bus.source(f"aca.{name}"), sink=self.bus.sink(), applier=applier, topics=self.topics,
            partition_count=self.bus.partition_count, channel="both" if self.strategy == "topic-per-host" else "unicast",
            resync=self.resync_requests.extend,
        )
        self.agents[name].start()

    def settle(self, rounds: int = 200) -> None:
        """Deliveries, agents, replies and resyncs until nothing moves (RuntimeError after `rounds`)."""
        for _ in range(rounds):
            moved = self.eng.publisher.sink.poll()
            for name, agent in self.agents.items():
                if name not in self.silent:
                    moved += agent.run_once(0)
            acks, refused = decode_acks(self.dpm.poll_batch(10_000, 0))
            self.refused += refused
            self.eng.on_acks(acks)
            moved += len(acks)
            requests = list(self.resync_requests)  # emptied in place: the agents hold its `extend`
            self.resync_requests.clear()
            for host in requests:
                self.eng.resync(host)
                moved += 1
            if not moved:
                return
        raise RuntimeError("the cluster never settled")
