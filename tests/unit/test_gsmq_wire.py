"""The wire conventions (gsmq.wire): the gs-follow codec, numbers, tokens, the failure marker."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st

from alcor.schema import goalstate_pb2 as gs
from gsmq import wire
from gsmq.v1 import channel_pb2
from gsmq.wire import FollowPosition, HeaderError, Token

positions = st.builds(FollowPosition, *(st.integers(0, wire.MAX_NUMBER) for _ in range(3)))


@pytest.mark.parametrize("vpc", ["vpc-1", "a,b", "a=b", "a:b", "x=1:2:3,y", "%41", " spaced ", "ünï", "=,:%"])
def test_gs_follow_round_trips_vpc_ids_with_separators(vpc: str) -> None:
    follow = {vpc: FollowPosition(3, 120, 7), "plain": FollowPosition(0, 0, 0)}
    assert wire.decode_follow(wire.encode_follow(follow)) == follow


@given(st.dictionaries(st.text(min_size=1), positions, max_size=5))
def test_gs_follow_round_trips_any_ids(follow: dict[str, FollowPosition]) -> None:
    assert wire.decode_follow(wire.encode_follow(follow)) == follow


def test_plain_ids_travel_as_they_are() -> None:
    assert wire.encode_follow({"vpc-2": FollowPosition(1, 2, 3), "vpc-1": FollowPosition(4, 5, 6)}) == "vpc-1=4:5:6,vpc-2=1:2:3"
    assert wire.decode_follow("") == {}


@pytest.mark.parametrize("text", ["vpc-1=1:2", "vpc-1=1:2:3:4", "=1:2:3", "vpc-1", "vpc-1=a:2:3", f"vpc-1=1:{2**63}:3",
                                  "vpc-1=1:-2:3", "vpc-1=1:\u00b2:3", "vpc-1=1:2:3,bad"])
def test_a_malformed_gs_follow_is_a_bad_header(text: str) -> None:
    with pytest.raises(HeaderError):
        wire.decode_follow(text)


@pytest.mark.parametrize("text", ["", "abc", "\u00b2", "\u0661\u0662", "-1", "+1", " 1", "1.0", str(2**63), "9" * 40])
def test_numbers_are_ascii_digits_below_2_63(text: str) -> None:
    with pytest.raises(HeaderError):
        wire.number(text)


def test_numbers_in_range_parse() -> None:
    assert wire.number("0") == 0 and wire.number(str(wire.MAX_NUMBER)) == 2**63 - 1
    assert wire.number_header({}, wire.SEQ) is None and wire.number_header({wire.SEQ: "7"}, wire.SEQ) == 7


def test_tokens_name_the_channel() -> None:
    assert wire.unicast_token(4) == Token("", 4) and not wire.unicast_token(4).multicast
    assert Token("vpc-1", 4).multicast


def test_the_failure_marker_round_trips_and_resources_are_not_hosts() -> None:
    assert wire.failed_host(wire.failed_host_id("10.0.0.1")) == "10.0.0.1"
    assert wire.failed_host("port-1") is None


def test_strategies_and_message_types_are_their_wire_names() -> None:
    assert wire.STRATEGIES == ("vpc-multicast", "unicast-only", "topic-per-host")
    assert wire.message_type({}) == wire.MessageType.GOAL_STATE
    assert wire.message_type({}, reply=True) == wire.MessageType.ACK  # an untyped record on the reply topic
    assert wire.message_type({wire.MSG_TYPE: "GoalStateV2"}, reply=True) == wire.MessageType.GOAL_STATE
    assert wire.MessageType.GOAL_STATE.value == "GoalStateV2"
    assert wire.message_type({wire.MSG_TYPE: "Marker"}) == wire.MessageType.MARKER


def test_an_epoch_names_its_incarnation() -> None:
    epoch = wire.make_epoch(7)
    assert wire.epoch_incarnation(epoch) == 7 and epoch != wire.make_epoch(7)
    for bad in ("", "e1", "0.x", "7", "7.", "-1.x", "\u00b2.x", f"{2**63}.x"):
        assert wire.epoch_incarnation(bad) is None, bad
    with pytest.raises(ValueError, match="incarnation"):
        wire.make_epoch(0)


def test_a_channel_message_addressed_to_a_host_is_the_goal_state_with_its_headers_and_the_host() -> None:
    goal = gs.GoalStateV2(format_version=7)
    goal.host_resources["10.0.0.9"].resources.add(id="port-1")
    headers = {wire.VPC_ID: "vpc-1", wire.SEQ: "4"}
    message = wire.addressed(wire.channel_message(goal.SerializeToString(), headers), "10.0.0.2")
    assert dict(channel_pb2.ChannelHeaders.FromString(message).channel_headers) == {**headers, wire.HOST_ID: "10.0.0.2"}
    read = gs.GoalStateV2.FromString(message)
    read.DiscardUnknownFields()
    assert read == goal


def test_a_channel_batch_gives_back_its_messages_whole_and_in_order_with_their_headers() -> None:
    goals = [gs.GoalStateV2(format_version=n) for n in (1, 2, 3)]
    messages = [wire.channel_message(g.SerializeToString(), {wire.HOST_ID: f"10.0.0.{n}", wire.SEQ: str(n)})
                for n, g in enumerate(goals, 1)]
    messages[1] = wire.addressed(wire.channel_message(goals[1].SerializeToString(), {wire.VPC_ID: "vpc-1", wire.SEQ: "9"}), "10.0.0.2")
    read = wire.channel_messages(wire.channel_batch(messages))
    assert [raw for raw, _ in read] == messages
    assert [headers for _, headers in read] == [{wire.HOST_ID: "10.0.0.1", wire.SEQ: "1"},
                                                {wire.VPC_ID: "vpc-1", wire.SEQ: "9", wire.HOST_ID: "10.0.0.2"},
                                                {wire.HOST_ID: "10.0.0.3", wire.SEQ: "3"}]
    assert gs.GoalStateV2.FromString(read[2][0]).format_version == 3


def test_a_single_channel_message_is_its_own_request_and_a_plain_goal_state_carries_none() -> None:
    message = wire.channel_message(gs.GoalStateV2(format_version=5).SerializeToString(), {wire.HOST_ID: "10.0.0.1"})
    assert wire.channel_messages(message) == [(message, {wire.HOST_ID: "10.0.0.1"})]
    goal = gs.GoalStateV2(format_version=5)
    goal.host_resources["10.0.0.1"].resources.add(id="port-1")
    assert wire.channel_messages(goal.SerializeToString()) == []


def test_a_batch_entry_without_headers_or_undecodable_bytes_are_refused() -> None:
    with pytest.raises(DecodeError, match="without ChannelHeaders"):
        wire.channel_messages(wire.channel_batch([gs.GoalStateV2(format_version=1).SerializeToString()]))
    with pytest.raises(DecodeError):
        wire.channel_messages(b"\xff\xff\xff")
