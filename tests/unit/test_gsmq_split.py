"""`resources.split` and `join`: a message over the limit as ordered parts, and back."""

from __future__ import annotations

from aca_agent.testing import goal_state, port, subnet
from alcor.schema import goalstate_pb2 as gs
from gsmq.resources import iter_states, join, split

H = "10.0.0.1"


def content(goal: gs.GoalStateV2) -> tuple[dict[tuple[int, str], bytes], set[tuple[int, str]] | None]:
    states = {(t, i): s.SerializeToString() for t, i, s in iter_states(goal)}
    listing = {(int(r.type), r.id) for r in goal.host_resources[H].resources} if H in goal.host_resources else None
    return states, listing


def test_parts_stay_under_the_limit_and_join_back_to_the_same_states_and_listing() -> None:
    goal = goal_state(H, subnet(), *(port(rid=f"p{i}") for i in range(40)))
    goal.host_resources[H].resources.add(type=2, id="listed-not-carried")
    parts = split(goal.SerializeToString(), H, 800)
    assert len(parts) >= 3 and all(len(p) <= 800 for p in parts)
    assert content(join(parts, H)) == content(goal)


def test_a_message_without_a_listing_splits_into_parts_without_one() -> None:
    goal = goal_state(None, subnet(), *(port(rid=f"p{i}") for i in range(20)))
    parts = split(goal.SerializeToString(), H, 1000)
    assert len(parts) >= 2 and all(H not in gs.GoalStateV2.FromString(p).host_resources for p in parts)
    assert content(join(parts, H)) == content(goal)


def test_a_resource_alone_over_the_limit_makes_one_part_over_it() -> None:
    big = port(rid="big")
    big[2].configuration.name = "x" * 3000
    parts = split(goal_state(H, subnet(), big).SerializeToString(), H, 1000)
    assert len(parts) == 2 and len(parts[1]) > 1000
