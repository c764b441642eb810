"""The channel of each VPC (dpm_server.paths): auto's hysteresis on the port count, gRPC only
while every member has a fast path up, and switches held until the VPC's messages are acked."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from dpm_server import paths
from dpm_server.paths import GRPC, MQ, Paths
from dpm_server.snapshot import Snapshot


@dataclass
class FakeLink:
    address: str
    sent: list[bytes] = field(default_factory=list)

    def send(self, message: bytes, host: str) -> None:
        self.sent.append(message)


class FakeLinks:
    def __init__(self) -> None:
        self.by_host: dict[str, FakeLink] = {}
        self.dropped = 0
        self.streams = 0

    def of(self, host: str) -> FakeLink | None:
        return self.by_host.get(host)

    def __len__(self) -> int:
        return len({link.address for link in self.by_host.values()})


def region(ports: dict[str, int], hosts: list[str]) -> Snapshot:
    """A snapshot whose VPCs hold `ports[vpc]` ports spread over `hosts`."""
    snapshot = Snapshot("vpc-multicast")
    for vpc, count in ports.items():
        for i in range(count):
            host = hosts[i % len(hosts)]
            snapshot._set_port(host, f"{vpc}-p{i}", vpc)
            snapshot.members[vpc].add(host)
    return snapshot


def set_ports(snapshot: Snapshot, vpc: str, count: int, host: str) -> None:
    for port in list(snapshot.host_ports.get(host, {}).get(vpc, set())):
        snapshot._drop_port(host, port)
    for i in range(count):
        snapshot._set_port(host, f"{vpc}-q{i}", vpc)


HOSTS = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


@pytest.fixture
def links() -> FakeLinks:
    fake = FakeLinks()
    a, b = FakeLink("a:1"), FakeLink("b:1")
    fake.by_host = {HOSTS[0]: a, HOSTS[1]: a, HOSTS[2]: b}
    return fake


def test_auto_moves_a_vpc_to_kafka_above_the_upper_bound_and_back_below_the_lower(links: FakeLinks) -> None:
    snapshot = region({"v": 3}, [HOSTS[0]])
    chooser = Paths(paths.AUTO, snapshot, links, busy=lambda vpc: False, upper=5, lower=2)
    assert [(link.address, host) for link, host in chooser.vpc_links("v") or []] == [("a:1", HOSTS[0])]
    seen = []
    for count in (5, 6, 4, 2, 1, 5):  # 6 > 5: Kafka; stays there at 4 and 2; 1 < 2: gRPC; 5 is not above 5
        set_ports(snapshot, "v", count, HOSTS[0])
        seen.append(GRPC if chooser.vpc_links("v") is not None else MQ)
    assert seen == [GRPC, MQ, MQ, MQ, GRPC, GRPC] and chooser.switches == 2


def test_a_vpc_first_seen_large_starts_on_kafka_and_fixed_modes_ignore_the_size(links: FakeLinks) -> None:
    snapshot = region({"big": 9, "small": 1}, HOSTS)
    assert Paths(paths.AUTO, snapshot, links, lambda vpc: False, upper=5, lower=2).vpc_links("big") is None
    assert Paths(paths.GRPC, snapshot, links, lambda vpc: False, upper=5, lower=2).vpc_links("big") is not None
    assert Paths(paths.MQ, snapshot, links, lambda vpc: False).vpc_links("small") is None


def test_grpc_needs_every_member_reachable_and_sends_each_member_its_copy_on_its_agents_link(links: FakeLinks) -> None:
    snapshot = region({"v": 3}, HOSTS)
    chooser = Paths(paths.GRPC, snapshot, links, lambda vpc: False)
    targets = chooser.vpc_links("v") or []
    assert sorted((link.address, host) for link, host in targets) == [("a:1", HOSTS[0]), ("a:1", HOSTS[1]), ("b:1", HOSTS[2])]
    assert chooser.host_link(HOSTS[2]) is links.by_host[HOSTS[2]]
    del links.by_host[HOSTS[2]]  # its fast path went down: the VPC goes through Kafka at once
    assert chooser.vpc_links("v") is None and chooser.current["v"] == MQ
    assert chooser.host_link(HOSTS[0]) is None  # its VPC is on Kafka: so are its own messages
    assert chooser.host_link(HOSTS[2]) is None


def test_a_host_without_a_vpc_goes_by_its_link_unless_the_mode_is_mq(links: FakeLinks) -> None:
    snapshot = Snapshot("vpc-multicast")
    assert Paths(paths.AUTO, snapshot, links, lambda vpc: False).host_link(HOSTS[0]) is links.by_host[HOSTS[0]]
    assert Paths(paths.MQ, snapshot, links, lambda vpc: False).host_link(HOSTS[0]) is None
    assert Paths(paths.AUTO, snapshot, links, lambda vpc: False).host_link("10.9.9.9") is None  # not registered


def test_a_switch_waits_for_the_vpcs_acks_or_the_settle_time_but_a_lost_link_does_not(links: FakeLinks) -> None:
    snapshot = region({"v": 1}, [HOSTS[0]])
    busy = {"v"}
    chooser = Paths(paths.AUTO, snapshot, links, lambda vpc: vpc in busy, upper=5, lower=2, settle=2.0)
    now = [100.0]
    chooser.clock = lambda: now[0]
    assert chooser.vpc_links("v") is not None
    set_ports(snapshot, "v", 8, HOSTS[0])
    assert chooser.vpc_links("v") is not None  # wants Kafka, but its messages are in flight
    now[0] += 1.0
    assert chooser.vpc_links("v") is not None and chooser.switches == 0
    now[0] += 1.5  # waited longer than settle: switches anyway
    assert chooser.vpc_links("v") is None and chooser.switches == 1
    set_ports(snapshot, "v", 1, HOSTS[0])
    assert chooser.vpc_links("v") is None  # back to gRPC waits again ...
    busy.clear()
    assert chooser.vpc_links("v") is not None and chooser.switches == 2  # ... until acked
    busy.add("v")
    del links.by_host[HOSTS[0]]
    assert chooser.vpc_links("v") is None and chooser.switches == 3  # forced: no waiting


def test_an_inputs_lane_is_grpc_only_while_all_its_vpcs_are(links: FakeLinks) -> None:
    snapshot = region({"small": 1, "big": 9}, HOSTS)
    chooser = Paths(paths.AUTO, snapshot, links, lambda vpc: False, upper=5, lower=2)
    assert chooser.lane(["small"]) == MQ  # no message chosen yet
    chooser.vpc_links("small"), chooser.vpc_links("big")
    assert (chooser.lane(["small", None]), chooser.lane(["small", "big"]), chooser.lane([None])) == (GRPC, MQ, MQ)
    assert Paths(paths.MQ, snapshot, links, lambda vpc: False).lane(["small"]) == MQ


@pytest.mark.parametrize(("mode", "upper", "lower", "says"),
                         [("udp", 10, 1, "unknown path"), (paths.AUTO, 10, 11, "lower bound"), (paths.AUTO, 10, -1, "lower bound")])
def test_bad_settings_are_refused(links: FakeLinks, mode: str, upper: int, lower: int, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Paths(mode, Snapshot("vpc-multicast"), links, lambda vpc: False, upper=upper, lower=lower)
