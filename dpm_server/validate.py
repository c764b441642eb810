"""Input checks: a message with any invalid resource is refused whole (INVALID_ARG).

An empty input is refused, and so is a host-specific state listed for no host (no host
would get it, yet it would be stored and answered SUCCESS). A VPC-wide state (subnet,
neighbor, security group) listed for no host is accepted: the first port of a VPC brings
a neighbor no other host needs yet, and the VPC's members, now and later, get it through
the VPC."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dpm_server.inputs import Input
from gsmq.resources import MAP_FIELD, VPC_WIDE, Order, ResourceKey, order


def invalid_resources(inp: Input) -> dict[ResourceKey, str]:
    """{(type, id): reason} for every resource that cannot be published; empty when valid."""
    bad: dict[ResourceKey, str] = {}
    if not inp.states and not inp.groups:
        return {(0, ""): "an empty input: no resource and no host"}
    listed = {key for group in inp.groups for key in group.keys}
    for (rtype, rid), state in inp.states.items():
        if not rid:
            bad[(rtype, rid)] = "empty resource id"
        elif not state.HasField("configuration"):
            bad[(rtype, rid)] = "resource without configuration"
        elif not state.configuration.id:  # an ACA refuses it (INVALID_ARG): never publish or store it
            bad[(rtype, rid)] = "configuration without id"
        elif (rtype, rid) not in listed and rtype not in VPC_WIDE:  # no host would get it, yet it would be SUCCESS
            bad[(rtype, rid)] = f"{rid!r} is listed for no host"
    for group in inp.groups:
        empty_host = "" in group.hosts
        host: str | None = None  # the one named in a reason, looked for once one needs it: a group can list 100,000 hosts
        for key in group.keys:
            if empty_host:
                bad[key] = "empty host id"
            elif not key[1] or key[0] not in MAP_FIELD or key not in inp.states:
                host = min(group.hosts) if host is None else host
                bad[key] = (f"host {host} lists an empty resource id" if not key[1]
                            else f"host {host} lists {key[1]!r}, which the message does not carry")
    return bad


def conflicts(inp: Input, held: Callable[[ResourceKey], Any | None]) -> dict[ResourceKey, str]:
    """{(type, id): reason} for every state at the revision `held(key)` holds, with other content
    (`resources.order`: CONFLICT); an ACA refuses such a state too."""
    return {
        key: f"revision {state.configuration.revision_number} of {key[1]} is held with other content"
        for key, state in inp.states.items()
        if order(state, held(key)) is Order.CONFLICT
    }
