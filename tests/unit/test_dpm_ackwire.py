"""dpm_server.ackwire: an ack read from its bytes gives the fields the protobuf parser gives,
or is left to the parser; never a different answer."""

from __future__ import annotations

import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from dpm_server.ackwire import AckFields, fields_of, read
from gsmq.v1 import ack_pb2

U64 = st.integers(0, 2**64 - 1)
U32 = st.integers(0, 2**32 - 1)
SEQ = st.one_of(st.integers(0, 1000), st.integers(0, 2**63 - 1), U64)


def parsed(data: bytes) -> AckFields | None:
    """The parser's answer: None when it refuses the bytes."""
    try:
        return fields_of(ack_pb2.Ack.FromString(data))
    except Exception:  # noqa: BLE001 - DecodeError and friends
        return None


def as_tuple(a: AckFields) -> tuple[object, ...]:
    return a.host_id, a.epoch, a.unicast_seq, a.unicast_seen, a.vpcs, list(a.failures), a.times


@st.composite
def acks(draw: st.DrawFn) -> ack_pb2.Ack:
    ack = ack_pb2.Ack(host_id=draw(st.text(max_size=12)), epoch=draw(st.text(max_size=8)),
                      unicast_seq=draw(SEQ), unicast_seen=draw(SEQ))
    for _ in range(draw(st.integers(0, 3))):
        ack.vpcs.add(vpc_id=draw(st.text(max_size=8)), epoch=draw(st.text(max_size=4)), seq=draw(SEQ), seen=draw(SEQ))
    if draw(st.booleans()):
        ack.failures.add(vpc_id="v", seq=draw(SEQ), resource_id=draw(st.text(max_size=6)), status=draw(st.integers(0, 5)))
    if draw(st.booleans()):
        t = ack.timing
        t.messages, t.resources, t.apply_us, t.last_applied_ns = draw(U64), draw(U64), draw(U64), draw(U64)
        t.max_dataplane_us, t.max_config_us, t.max_elapse_us = draw(U32), draw(U32), draw(U32)
        for b in draw(st.lists(st.integers(0, 300), max_size=3)):
            t.elapse_buckets[b] = draw(U32)
    return ack


@settings(max_examples=400)
@given(acks())
def test_an_ack_is_read_as_the_parser_reads_it_or_left_to_it(ack: ack_pb2.Ack) -> None:
    data = ack.SerializeToString()
    got = read(data)
    want = parsed(data)
    assert want is not None
    if got is None:  # left to the parser: only for a failure, or a number past 2^63-1
        assert len(ack.failures) or max(ack.unicast_seq, ack.unicast_seen, *(n for v in ack.vpcs for n in (v.seq, v.seen)),
                                        ack.timing.apply_us, ack.timing.messages, ack.timing.resources,
                                        ack.timing.last_applied_ns) > 2**63 - 1
    else:
        assert as_tuple(got) == as_tuple(want)


@settings(max_examples=600)
@given(acks(), st.data())
def test_broken_bytes_are_refused_by_both_or_read_alike(ack: ack_pb2.Ack, data: st.DataObject) -> None:
    raw = bytearray(ack.SerializeToString())
    for _ in range(data.draw(st.integers(1, 3))):
        if raw and data.draw(st.booleans()):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        else:
            raw.insert(data.draw(st.integers(0, len(raw))), data.draw(st.integers(0, 255)))
    cut = bytes(raw[: data.draw(st.integers(0, len(raw)))])
    for broken in (bytes(raw), cut):
        got, want = read(broken), parsed(broken)
        if got is not None:
            assert want is not None, broken  # never accepts what the parser refuses
            assert as_tuple(got) == as_tuple(want)


def test_the_acks_of_a_shared_apply_are_read_without_the_parser() -> None:
    """The simulator's acks (its host fields, then a rest serialized once: aca_agent.acks) take the fast way."""
    hosts = ["10.0.0.1", "10.0.0.2"]
    ack = ack_pb2.Ack(host_id=hosts[0], epoch="e", unicast_seq=4, unicast_seen=5)
    ack.vpcs.add(vpc_id="vpc-1", epoch="e", seq=7, seen=9)
    ack.timing.apply_us, ack.timing.max_elapse_us, ack.timing.elapse_buckets[80] = 12, 300, 1
    got = read(ack.SerializeToString())
    assert got is not None and as_tuple(got) == ("10.0.0.1", "e", 4, 5, [("vpc-1", "e", 7, 9)], [], (12, 0, 0, 300))
    rest = ack_pb2.Ack()
    rest.CopyFrom(ack)
    rest.ClearField("host_id")
    joined = ack_pb2.Ack(host_id=hosts[1], epoch="e").SerializeToString() + rest.SerializeToString()
    got = read(joined)
    assert got is not None and got.host_id == hosts[1] and got.vpcs == [("vpc-1", "e", 7, 9)]


def test_a_vpc_id_is_read_as_the_interned_string() -> None:
    """The tracker keys its VPCs by interned ids: an ack's VPC id is that very object, so
    its lookups match by identity instead of comparing the characters of two copies."""
    vpc = b"vpc-interned".decode()  # made at run time, not a constant of this module
    ack = ack_pb2.Ack(host_id="h", epoch="e", unicast_seq=1)
    ack.vpcs.add(vpc_id=vpc, epoch="e", seq=3, seen=3)
    got = read(ack.SerializeToString())
    assert got is not None and got.vpcs[0][0] is sys.intern(vpc)


def test_an_ack_with_a_failure_is_left_to_the_parser() -> None:
    ack = ack_pb2.Ack(host_id="h")
    ack.failures.add(resource_id="port-1", status=3)
    assert read(ack.SerializeToString()) is None
    want = parsed(ack.SerializeToString())
    assert want is not None and [f.resource_id for f in want.failures] == ["port-1"]


def test_a_timing_given_twice_is_merged_as_the_parser_merges_it() -> None:
    first, second = ack_pb2.Ack(host_id="h"), ack_pb2.Ack()
    first.timing.apply_us, first.timing.max_config_us = 5, 7
    second.timing.max_config_us = 9
    data = first.SerializeToString() + second.SerializeToString()
    got, want = read(data), parsed(data)
    assert got is not None and want is not None and got.times == want.times == (5, 0, 9, 0)


def test_a_time_past_32_bits_is_cut_as_the_parser_cuts_it() -> None:
    # field 6 (timing) holding field 4 (max_dataplane_us, uint32) = 2^32 + 3
    timing = bytes([4 << 3]) + bytes([0x83, 0x80, 0x80, 0x80, 0x10])
    data = bytes([1 << 3 | 2, 1]) + b"h" + bytes([6 << 3 | 2, len(timing)]) + timing
    got, want = read(data), parsed(data)
    assert got is not None and want is not None and got.times == want.times == (0, 3, 0, 0)



def _host_part(host: str, unicast_seq: int) -> bytes:
    return ack_pb2.Ack(host_id=host, epoch="e", unicast_seq=unicast_seq, unicast_seen=unicast_seq).SerializeToString()


def _rest(ack: ack_pb2.Ack) -> bytes:
    rest = ack_pb2.Ack()
    rest.CopyFrom(ack)
    for name in ("host_id", "epoch", "unicast_seq", "unicast_seen"):
        rest.ClearField(name)
    return rest.SerializeToString()


@settings(max_examples=300)
@given(st.lists(acks(), min_size=1, max_size=3), st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3), st.booleans()), max_size=12))
def test_acks_sharing_a_rest_one_after_another_are_read_as_the_parser_reads_them(
        kinds: list[ack_pb2.Ack], picks: list[tuple[int, int, bool]]) -> None:
    """The followers of a shared apply send their host fields and then the same rest; the
    rest read last is taken again only when it is the same bytes. A host field after the
    rest (a whole ack serialized in field order) never lets a later ack skip it."""
    for kind, host, whole in picks:
        ack = kinds[kind % len(kinds)]
        if whole:
            one = ack_pb2.Ack()
            one.CopyFrom(ack)
            one.host_id, one.unicast_seen = f"10.0.0.{host}", host
            data = one.SerializeToString()
        else:
            data = _host_part(f"10.0.0.{host}", host) + _rest(ack)
        got, want = read(data), parsed(data)
        assert want is not None
        if got is not None:
            assert as_tuple(got) == as_tuple(want)


def test_a_rest_followed_by_a_host_field_is_read_whole_every_time() -> None:
    """unicast_seen (field 7) after the VPCs and times: the next ack with those bytes reads it too."""
    ack = ack_pb2.Ack(host_id="h", unicast_seq=3, unicast_seen=8)
    ack.vpcs.add(vpc_id="vpc-1", epoch="e", seq=7, seen=7)
    data = ack.SerializeToString()
    first, again = read(data), read(data)
    assert first is not None and again is not None
    assert as_tuple(first) == as_tuple(again) == ("h", "", 3, 8, [("vpc-1", "e", 7, 7)], [], (0, 0, 0, 0))
    other = ack_pb2.Ack(host_id="g", unicast_seq=3)
    other.vpcs.add(vpc_id="vpc-1", epoch="e", seq=7, seen=7)
    shared = read(_host_part("g", 3) + _rest(other))
    after = read(_host_part("k", 4) + _rest(other))
    assert shared is not None and after is not None
    assert (after.host_id, after.unicast_seq, after.vpcs) == ("k", 4, [("vpc-1", "e", 7, 7)])
