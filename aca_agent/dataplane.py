"""Where applied goal states end up: a small data-plane interface and an in-memory one.

A real agent would program OVS flows here; `MemoryDataPlane` keeps per-host tables
(resource id -> state, per resource type) and can simulate a programming cost.

Besides hosts, the applier programs one scope per followed VPC, the pseudo host
`vpc/<vpc id>` (`applier.table_scope`): the VPC-wide states its followers in this process
share. So `flows(host)` and `resources()` count a shared state once per process (under its
VPC scope), not once per follower; a real single-host agent programs it once anyway.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from alcor.schema import common_pb2 as common

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


def _copy(state: Any) -> Any:
    """A standalone copy of a parsed state (it keeps no message alive but its own)."""
    own = type(state)()
    own.CopyFrom(state)
    return own


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


Shared = tuple[int, str, int]  # (type, id, revision) of a state held by several hosts


class MemoryDataPlane:
    """In-memory tables; each program/remove call costs `cost_us` microseconds
    (busy-waiting, like CPU spent on flow programming, or sleeping with `sleep=True`).

    Hosts that program an equal state (same type, id, revision and content) share one
    object: a simulator of N hosts in a VPC of P ports holds its P neighbors once, not N
    times. The tables hold copies of the states programmed: a parsed state keeps the whole
    message it came from alive (a join bundle of 100 neighbors for the host's one port).
    States are never modified in place."""

    def __init__(self, cost_us: int = 0, sleep: bool = False) -> None:
        self.cost_us = cost_us
        self.sleep = sleep
        self._tables: dict[str, dict[int, dict[str, Any]]] = {}
        self._flows: dict[str, int] = {}
        self._total_flows = 0
        self._shared: dict[Shared, list[Any]] = {}  # -> [state, how many tables hold it]

    def _share(self, rtype: int, rid: str, state: Any) -> Any:
        """The shared object equal to `state` (registering a copy of `state` as it when there is none)."""
        key = (rtype, rid, int(state.configuration.revision_number))
        entry = self._shared.get(key)
        if entry is None:
            own = _copy(state)
            self._shared[key] = [own, 1]
            return own
        if entry[0] is not state and entry[0] != state:
            return _copy(state)  # same revision, other content: kept apart
        entry[1] += 1
        return entry[0]

    def _release(self, rtype: int, rid: str, state: Any) -> None:
        key = (rtype, rid, int(state.configuration.revision_number))
        entry = self._shared.get(key)
        if entry is not None and entry[0] is state:
            entry[1] -= 1
            if entry[1] <= 0:
                del self._shared[key]

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
        state = table[rid] = self._share(rtype, rid, state)
        if old is not None:
            self._release(rtype, rid, old)
        self._add_flows(host, flows_needed(rtype, state) - (flows_needed(rtype, old) if old is not None else 0))

    def remove(self, host: str, rtype: int, rid: str) -> bool:
        table = self._tables.get(host, {}).get(rtype)
        if table is None or rid not in table:
            return False
        self._spend()
        old = table.pop(rid)
        self._release(rtype, rid, old)
        self._add_flows(host, -flows_needed(rtype, old))
        return True

    def table(self, host: str, rtype: int) -> Mapping[str, Any]:
        return self._tables.get(host, {}).get(rtype, _EMPTY)

    def flows(self, host: str | None = None) -> int:
        return self._total_flows if host is None else self._flows.get(host, 0)

    def resources(self) -> int:
        """How many resources all tables hold."""
        return sum(len(t) for tables in self._tables.values() for t in tables.values())
