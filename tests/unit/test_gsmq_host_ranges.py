"""Host ids as IPv4 runs (gsmq.host_ranges), as an agent registers them."""

from __future__ import annotations

import pytest

from gsmq.host_ranges import hosts_of, ranges_of
from gsmq.v1 import channel_pb2


def test_consecutive_addresses_make_one_range_and_others_stand_alone() -> None:
    hosts = ["10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.2", "host-a", "10.0.1.3"]
    ranges = ranges_of(hosts)
    assert [(r.first_host, r.count) for r in ranges] == [("10.0.0.254", 3), ("10.0.1.2", 1), ("host-a", 1), ("10.0.1.3", 1)]
    assert hosts_of(ranges) == hosts


def test_a_simulator_of_100000_hosts_is_one_range() -> None:
    hosts = hosts_of([channel_pb2.HostRange(first_host="10.1.0.1", count=100_000)])
    assert len(hosts) == 100_000 and hosts[-1] == "10.2.134.160" and len(ranges_of(hosts)) == 1


@pytest.mark.parametrize(("first", "count", "why"), [
    ("10.0.0.1", 0, "empty"), ("", 1, "empty"), ("host-a", 2, "IPv4"), ("255.255.255.255", 2, "past"), ("10.0.0.1", 1 << 25, "more than"),
])
def test_bad_ranges_are_refused(first: str, count: int, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        hosts_of([channel_pb2.HostRange(first_host=first, count=count)])
