"""Input checks: a message with any invalid resource is refused whole (INVALID_ARG)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alcor.schema import goalstate_pb2 as gs
from gsmq.resources import MAP_FIELD, Order, ResourceKey, iter_states, order, state_map


def invalid_resources(goal: gs.GoalStateV2) -> dict[ResourceKey, str]:
    """{(type, id): reason} for every resource that cannot be published; empty when valid."""
    bad: dict[ResourceKey, str] = {}
    for rtype, rid, state in iter_states(goal):
        if not rid:
            bad[(rtype, rid)] = "empty resource id"
        elif not state.HasField("configuration"):
            bad[(rtype, rid)] = "resource without configuration"
        elif not state.configuration.id:  # an ACA refuses it (INVALID_ARG): never publish or store it
            bad[(rtype, rid)] = "configuration without id"
    for host, listed in goal.host_resources.items():
        for ref in listed.resources:
            key = (int(ref.type), ref.id)
            if not host:
                bad[key] = "empty host id"
            elif not ref.id:
                bad[key] = f"host {host} lists an empty resource id"
            elif ref.type not in MAP_FIELD or ref.id not in state_map(goal, ref.type):
                bad[key] = f"host {host} lists {ref.id!r}, which the message does not carry"
    return bad


def conflicts(goal: gs.GoalStateV2, held: Callable[[ResourceKey], Any | None]) -> dict[ResourceKey, str]:
    """{(type, id): reason} for every state at the revision `held(key)` holds, with other content
    (`resources.order`: CONFLICT); an ACA refuses such a state too."""
    return {
        (rtype, rid): f"revision {state.configuration.revision_number} of {rid} is held with other content"
        for rtype, rid, state in iter_states(goal)
        if order(state, held((rtype, rid))) is Order.CONFLICT
    }
