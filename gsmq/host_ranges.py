"""Host ids as runs of consecutive IPv4 addresses (`gsmq.v1.HostRange`): how an agent
names its hosts when it registers, whatever their number."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from gsmq.v1 import channel_pb2

MAX_HOSTS = 1 << 24  # the most hosts one registration may name


def ranges_of(hosts: Sequence[str]) -> list[channel_pb2.HostRange]:
    """`hosts` as ranges, in their order; an id that is not an IPv4 address is a range of one."""
    out: list[channel_pb2.HostRange] = []
    last: ipaddress.IPv4Address | None = None
    for host in hosts:
        try:
            address: ipaddress.IPv4Address | None = ipaddress.IPv4Address(host)
        except ValueError:
            address = None
        if address is not None and last is not None and out and int(address) == int(last) + 1:
            out[-1].count += 1
        else:
            out.append(channel_pb2.HostRange(first_host=host, count=1))
        last = address
    return out


def hosts_of(ranges: Iterable[channel_pb2.HostRange]) -> list[str]:
    """The host ids the ranges name; ValueError for a range that names none, or more than
    one from a first host that is not an IPv4 address, or more than MAX_HOSTS in all."""
    out: list[str] = []
    for r in ranges:
        if r.count < 1 or not r.first_host:
            raise ValueError(f"an empty host range: {r.first_host!r} x {r.count}")
        if len(out) + r.count > MAX_HOSTS:
            raise ValueError(f"more than {MAX_HOSTS} hosts")
        if r.count == 1:
            out.append(r.first_host)
            continue
        try:
            first = int(ipaddress.IPv4Address(r.first_host))
        except ValueError as exc:
            raise ValueError(f"a range of {r.count} hosts must start at an IPv4 address: {exc}") from exc
        if first + r.count - 1 > 0xFFFFFFFF:
            raise ValueError(f"the range from {r.first_host} runs past 255.255.255.255")
        out.extend(str(ipaddress.IPv4Address(first + i)) for i in range(r.count))
    return out
