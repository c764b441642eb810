"""gsmq.resources.read_bundle: a GoalStateV2's listing for one host and its VPC-wide pieces,
read from its bytes, are what the protobuf parser reads there, or the bytes are left to it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from gsmq import pbwire
from gsmq.resources import MAP_FIELD, VPC_WIDE, ResourceKey, host_listing, piece_id, piece_of, read_bundle, ref_piece, state_map

HOSTS = ["10.0.0.1", "10.0.0.2", "hôte"]
IDS = st.sampled_from(["a", "b", "nb-1", "", "é" * 3])
TYPES = st.sampled_from(sorted(MAP_FIELD))


def parsed(raw: bytes, host: str) -> tuple[list[ResourceKey], dict[ResourceKey, gs.GoalStateV2]]:
    """The parser's answer: the host's listing, and each VPC-wide state as a message of its own."""
    goal = gs.GoalStateV2.FromString(raw)
    listed = [(int(r.type), r.id) for r in goal.host_resources[host].resources] if host in goal.host_resources else []
    states = {}
    for rtype in VPC_WIDE:
        for rid, state in state_map(goal, rtype).items():
            alone = gs.GoalStateV2()
            state_map(alone, rtype)[rid].CopyFrom(state)
            states[(rtype, rid)] = alone
    return listed, states


@st.composite
def bundles(draw: st.DrawFn) -> bytes:
    """A GoalStateV2 as protobuf writes it, or as the DPM joins it from pieces, with a second
    copy of some map entries (another host's listing, a state at another revision) after it:
    the parser keeps the last."""
    goal = gs.GoalStateV2(format_version=draw(st.integers(0, 3)))
    for host in draw(st.lists(st.sampled_from(HOSTS), max_size=2, unique=True)):
        goal.host_resources[host].resources.extend(
            gs.ResourceIdType(type=t, id=i) for t, i in draw(st.lists(st.tuples(TYPES, IDS), max_size=4)))  # type: ignore[arg-type]
    for rtype, rid, rev in draw(st.lists(st.tuples(TYPES, IDS, st.integers(0, 3)), max_size=6)):
        state = state_map(goal, rtype)[rid]
        state.operation_type = common.CREATE
        state.configuration.id, state.configuration.revision_number = rid, rev
    raw = goal.SerializeToString()
    if draw(st.booleans()):  # the DPM's form: head, listing, pieces
        head = gs.GoalStateV2(format_version=goal.format_version).SerializeToString()
        raw = head + b"".join(host_listing(h, [ref_piece(int(r.type), r.id) for r in listed.resources])
                              for h, listed in goal.host_resources.items())
        raw += b"".join(piece_of(rtype, rid, state) for rtype in MAP_FIELD for rid, state in state_map(goal, rtype).items())
    for rtype, rid, rev in draw(st.lists(st.tuples(st.sampled_from(sorted(VPC_WIDE)), IDS, st.integers(0, 3)), max_size=2)):
        later = gs.GoalStateV2()
        state_map(later, rtype)[rid].configuration.revision_number = rev
        raw += later.SerializeToString()
    if draw(st.booleans()):
        raw += host_listing(draw(st.sampled_from(HOSTS)), [ref_piece(common.PORT, "late")])
    return raw


@settings(max_examples=300)
@given(bundles(), st.sampled_from(HOSTS))
def test_a_bundle_is_read_as_the_parser_reads_it(raw: bytes, host: str) -> None:
    got = read_bundle(raw, host)
    assert got is not None
    listed, pieces = got
    want_listed, want_states = parsed(raw, host)
    assert listed == want_listed
    last: dict[ResourceKey, bytes] = {}
    for rtype, piece in pieces:  # in wire order: the last piece of a key is the state the parser keeps
        rid = piece_id(piece)
        assert rid is not None
        last[(rtype, rid)] = piece
    assert {key: gs.GoalStateV2.FromString(piece) for key, piece in last.items()} == want_states


def test_the_dpms_pieces_are_read_back_byte_for_byte() -> None:
    goal = gs.GoalStateV2()
    nb = goal.neighbor_states["nb-1"]
    nb.configuration.id, nb.configuration.vpc_id, nb.configuration.host_ip_address = "nb-1", "vpc-1", "10.0.0.9"
    sn = goal.subnet_states["sn-1"]
    sn.configuration.id, sn.configuration.vpc_id = "sn-1", "vpc-1"
    pieces = [piece_of(common.SUBNET, "sn-1", sn), piece_of(common.NEIGHBOR, "nb-1", nb)]
    port = piece_of(common.PORT, "p-1", gs.GoalStateV2().port_states["p-1"])
    refs = [ref_piece(common.SUBNET, "sn-1"), ref_piece(common.NEIGHBOR, "nb-1"), ref_piece(common.PORT, "p-1")]
    raw = gs.GoalStateV2(format_version=1).SerializeToString() + host_listing("h", refs) + pieces[0] + port + pieces[1]
    assert read_bundle(raw, "h") == ([(common.SUBNET, "sn-1"), (common.NEIGHBOR, "nb-1"), (common.PORT, "p-1")],
                                     [(common.SUBNET, pieces[0]), (common.NEIGHBOR, pieces[1])])
    assert read_bundle(raw, "other") == ([], [(common.SUBNET, pieces[0]), (common.NEIGHBOR, pieces[1])])
    assert [piece_id(p) for p in pieces] == ["sn-1", "nb-1"]


LISTED = host_listing("h", [ref_piece(common.PORT, "p")])
NEIGHBOR = piece_of(common.NEIGHBOR, "nb", gs.GoalStateV2().neighbor_states["nb"])


@pytest.mark.parametrize(("raw", "why"), [
    (LISTED[:-1], "cut short"),
    (NEIGHBOR + pbwire.varint(9 << 3 | 5) + b"\x00\x00\x00\x00", "a fixed32 field"),
    (pbwire.field(2, pbwire.field(1, b"h") + pbwire.number_field(3, 1)), "a number in a listing's map entry"),
    (pbwire.field(2, pbwire.field(1, b"h") + pbwire.field(2, pbwire.number_field(1, 5))), "a listing entry not a message"),
    (pbwire.field(2, pbwire.field(1, b"h") + pbwire.field(2, pbwire.field(1, pbwire.number_field(3, 1)))), "an unknown field in a ref"),
    (host_listing("h", [pbwire.field(1, pbwire.number_field(1, 2**31))]), "a type past int32"),
    (host_listing("h", [pbwire.field(1, pbwire.field(2, b"\xff"))]), "an id not UTF-8"),
    (pbwire.field(2, pbwire.field(1, b"\xff")), "a host not UTF-8"),
])
def test_bytes_not_read_here_are_left_to_the_parser(raw: bytes, why: str) -> None:
    assert read_bundle(raw, "h") is None, why


@pytest.mark.parametrize("piece", [b"", NEIGHBOR[:-1], pbwire.field(7, pbwire.field(1, b"\xff")),
                                   pbwire.field(7, pbwire.number_field(1, 1))])
def test_a_piece_id_not_read_here_is_none(piece: bytes) -> None:
    assert piece_id(piece) is None
