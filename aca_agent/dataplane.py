"""Where applied goal states end up: a small data-plane interface and an in-memory one.

A real agent would program OVS flows here; `MemoryDataPlane` keeps per-host tables
(resource id -> state, per resource type) and can simulate a programming cost.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from proto import common_pb2 as common

_EMPTY: Mapping[str, Any] = {}


def flows_needed(rtype: int, state: Any) -> int:
    """How many flows a resource costs: 1 per port, neighbor, DHCP entry, subnet and
    gateway; one per security-group rule and per routing rule; none for a VPC."""
    config = state.configuration
    if rtype == common.SECURITYGROUP:
        return len(config.security_group_rules)
    if rtype == common.ROUTER:
        return sum(len(table.routing_rules) for table in config.subnet_routing_tables)
    if rtype == common.VPC:
        return 0
    return 1


class DataPlane(Protocol):
    """Per-host tables of programmed resources."""

    def program(self, host: str, rtype: int, rid: str, state: Any) -> None:
        """Create or replace resource `rid` of type `rtype` on `host`."""

    def remove(self, host: str, rtype: int, rid: str) -> bool:
        """Remove it; False when it was not there."""

    def table(self, host: str, rtype: int) -> Mapping[str, Any]:
        """The host's resources of one type (id -> state), read-only."""

    def flows(self, host: str | None = None) -> int:
        """Flows the tables need, for one host or for all."""

    def resources(self) -> int:
        """How many resources all tables hold."""


class MemoryDataPlane:
    """In-memory tables; each program/remove call costs `cost_us` microseconds
    (busy-waiting, like CPU spent on flow programming, or sleeping with `sleep=True`)."""

    def __init__(self, cost_us: int = 0, sleep: bool = False) -> None:
        self.cost_us = cost_us
        self.sleep = sleep
        self._tables: dict[str, dict[int, dict[str, Any]]] = {}
        self._flows: dict[str, int] = {}
        self._total_flows = 0

    def _spend(self) -> None:
        if self.cost_us <= 0:
            return
        if self.sleep:
            time.sleep(self.cost_us / 1e6)
            return
        end = time.perf_counter_ns() + self.cost_us * 1000
        while time.perf_counter_ns() < end:
            pass

    def _add_flows(self, host: str, delta: int) -> None:
        if delta:
            self._flows[host] = self._flows.get(host, 0) + delta
            self._total_flows += delta

    def program(self, host: str, rtype: int, rid: str, state: Any) -> None:
        self._spend()
        tables = self._tables.setdefault(host, {})
        table = tables.setdefault(rtype, {})
        old = table.get(rid)
        table[rid] = state
        self._add_flows(host, flows_needed(rtype, state) - (flows_needed(rtype, old) if old is not None else 0))

    def remove(self, host: str, rtype: int, rid: str) -> bool:
        table = self._tables.get(host, {}).get(rtype)
        if table is None or rid not in table:
            return False
        self._spend()
        self._add_flows(host, -flows_needed(rtype, table.pop(rid)))
        return True

    def table(self, host: str, rtype: int) -> Mapping[str, Any]:
        return self._tables.get(host, {}).get(rtype, _EMPTY)

    def flows(self, host: str | None = None) -> int:
        return self._total_flows if host is None else self._flows.get(host, 0)

    def resources(self) -> int:
        """How many resources all tables hold."""
        return sum(len(t) for tables in self._tables.values() for t in tables.values())
