"""Inputs as the DPM reads them (dpm_server.inputs): hosts grouped by listing, read from the
bytes, must say exactly what protobuf's own parse of the GoalStateV2 says, whatever the
bytes (repeated hosts, a key after its value, long or empty host ids, odd listings)."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import given, settings
from hypothesis import strategies as st

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from dpm_server import inputs
from dpm_server.hostsets import Part
from dpm_server.inputs import Input, InputError, base_of, merge, out_of, same, united, within
from dpm_server.testing import goal, neighbor, port, port_goal
from gsmq.pbwire import field, varint
from gsmq.resources import MAP_FIELD, iter_states
from gsmq.v1 import parts_pb2

A, B = "10.0.0.1", "10.0.0.2"


def reference(raw: bytes) -> dict[str, list[tuple[int, str]]]:
    """Each host's listing as protobuf parses it (the last entry of a host wins), deduplicated in order."""
    message = gs.GoalStateV2.FromString(raw)
    return {host: list(dict.fromkeys((int(r.type), r.id) for r in res.resources)) for host, res in message.host_resources.items()}


def assert_reads_like_protobuf(raw: bytes) -> Input:
    inp = Input.parse(raw)
    want = reference(raw)
    assert {host: inp.keys_of(host) for host in want} == want
    assert inp.hosts == set(want)
    assert sum(len(g.hosts) for g in inp.groups) == len(want)  # one group per host
    assert len({g.keys for g in inp.groups}) == len(inp.groups)  # one group per listing
    assert inp.states == {(rtype, rid): state for rtype, rid, state in iter_states(gs.GoalStateV2.FromString(raw))}
    return inp


def entry(host: bytes, value: bytes, key_last: bool = False) -> bytes:
    """A host_resources map entry (GoalStateV2 field 2), written by hand: key then value, or not."""
    key = b"\x0a" + varint(len(host)) + host
    body = (value + key) if key_last else (key + value)
    return b"\x12" + varint(len(body)) + body


def listing(*refs: tuple[int, str]) -> bytes:
    """HostResources (as map value, field 2) listing these refs."""
    resources = b"".join(field(1, b"\x08" + varint(t) + field(2, rid.encode())) for t, rid in refs)
    return field(2, resources)


def test_hosts_listing_the_same_resources_form_one_group() -> None:
    hosts = [f"10.1.{i // 256}.{i % 256}" for i in range(1000)]
    inp = assert_reads_like_protobuf(port_goal("p0", "vpc-1", hosts[0], "10.2.0.1", hosts).SerializeToString())
    assert sorted((len(g.hosts), [rid for _, rid in g.keys]) for g in inp.groups) == [(1, ["p0", "dhcp-p0"]), (999, ["nb-p0"])]


def test_a_host_id_is_read_to_one_str_whatever_input_lists_it(monkeypatch: pytest.MonkeyPatch) -> None:
    hosts = [A, B, "10.0.0.3"]
    one = Input.parse(port_goal("p1", "vpc-1", A, "10.2.0.1", hosts).SerializeToString())
    two = Input.parse(port_goal("p2", "vpc-1", B, "10.2.0.2", hosts).SerializeToString())
    assert {id(h) for h in one.hosts} == {id(h) for h in two.hosts}  # the same objects: sets of them compare by identity
    monkeypatch.setattr(inputs, "NAMES_KEPT", 1)  # emptied at every new host id: still read right
    assert_reads_like_protobuf(port_goal("p3", "vpc-1", A, "10.2.0.3", [*hosts, "10.0.0.4"]).SerializeToString())


def test_the_odd_encodings_read_like_protobuf() -> None:
    nb, p = (common.NEIGHBOR, "nb-1"), (common.PORT, "p0")
    states = goal([port("p0", "vpc-1", A, "10.1.0.1"), neighbor("nb-1", "vpc-1", B, "10.1.0.2")], {}).SerializeToString()
    cases = {
        "a host given twice: the last entry wins": entry(A.encode(), listing(nb)) + entry(A.encode(), listing(p, nb)),
        "a host given twice beside a larger group": b"".join(entry(h, listing(nb)) for h in (b"h1", b"h2", b"h3"))
        + entry(A.encode(), listing(p)) + entry(A.encode(), listing((common.NEIGHBOR, "nb-2"))),
        "a key after its value": entry(A.encode(), listing(nb)) + entry(B.encode(), listing(p), key_last=True),
        "a key before and after the value": entry(A.encode(), listing(nb) + b"\x0a\x01x"),
        "a host id of 300 bytes": entry(b"h" * 300, listing(nb)) + entry(A.encode(), listing(nb)),
        "an empty host id and an entry without key": entry(b"", listing(nb)) + b"\x12" + varint(len(listing(p))) + listing(p),
        "an entry without value, the same resource twice": entry(A.encode(), b"") + entry(B.encode(), listing(nb, nb, p)),
        "a value given in two pieces": entry(A.encode(), listing(nb) + listing(p)),
        "unicode host ids": entry("hôte-é".encode(), listing(nb)) + entry("hôte-ü".encode(), listing(nb)),
    }
    for name, raw in cases.items():
        try:
            assert_reads_like_protobuf(states + raw)
        except AssertionError as exc:
            raise AssertionError(name) from exc


@pytest.mark.parametrize("raw", [
    b"\x12\x05\x0a\x09abc",  # a host id longer than its entry
    b"\x12\x04\x0a\x02\xff\xfe",  # a host id that is not UTF-8
    b"\x12\x06\x0a\x01a\x12\x05\x0a",  # a listing cut short
    b"\x2a\x10\x0a\x02p0",  # a port_states entry cut short
])
def test_bytes_protobuf_refuses_are_refused(raw: bytes) -> None:
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever protobuf raises
        gs.GoalStateV2.FromString(raw)
    with pytest.raises(InputError):
        Input.parse(raw)


HOSTS = st.one_of(st.sampled_from([A, B, "", "h" * 200]), st.text(max_size=6))
REFS = st.tuples(st.sampled_from([*MAP_FIELD, 0, 99]), st.sampled_from(["p0", "nb-1", "", "é"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(HOSTS, st.lists(REFS, max_size=3), st.booleans()), max_size=8))
def test_any_host_listing_reads_like_protobuf(entries: list[tuple[str, list[tuple[int, str]], bool]]) -> None:
    raw = b"".join(entry(host.encode(), listing(*refs) if refs else b"", key_last) for host, refs, key_last in entries)
    assert_reads_like_protobuf(raw)


def test_merge_joins_groups_of_the_same_listing_and_keeps_a_host_in_each_of_its_groups() -> None:
    first = Input.of(port_goal("p0", "vpc-1", A, "10.1.0.1", [A, B]))
    second = Input.of(port_goal("p1", "vpc-1", B, "10.1.0.2", [A, B]))
    merged = merge([first, second])
    assert set(merged.keys_of(A)) == {(common.PORT, "p0"), (common.DHCP, "dhcp-p0"), (common.NEIGHBOR, "nb-p1")}
    assert set(merged.keys_of(B)) == {(common.NEIGHBOR, "nb-p0"), (common.PORT, "p1"), (common.DHCP, "dhcp-p1")}
    again = merge([first, first])
    assert len(again.groups) == len(first.groups) and again.hosts == {A, B}
    c = "10.0.0.3"
    wider = merge([first, Input.of(port_goal("p0", "vpc-1", A, "10.1.0.1", [A, c]))])  # nb-p0 for B, then for c
    assert {g.keys: g.hosts for g in wider.groups}[((common.NEIGHBOR, "nb-p0"),)] == {B, c}


def test_the_parts_view_has_every_field_of_goalstatev2_with_the_same_number_and_type() -> None:
    def kind(f: Any) -> str:  # a map by its key and value types, a message by its name
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            return "map " + "/".join(kind(f.message_type.fields_by_name[n]) for n in ("key", "value"))
        return f.message_type.full_name if f.message_type is not None else str(f.type)

    def fields(descriptor: Any) -> dict[str, tuple[int, str]]:
        return {f.name: (f.number, kind(f)) for f in descriptor.fields}

    mine, alcor = fields(parts_pb2.GoalStateV2Parts.DESCRIPTOR), fields(gs.GoalStateV2.DESCRIPTOR)
    assert mine.keys() == alcor.keys()
    assert {k: v for k, v in mine.items() if k != "host_resources"} == {k: v for k, v in alcor.items() if k != "host_resources"}
    assert mine["host_resources"] == (2, str(FieldDescriptor.TYPE_BYTES))
    assert alcor["host_resources"] == (2, f"map {FieldDescriptor.TYPE_STRING}/alcor.schema.HostResources")
    entry = {f.name: (f.number, f.type) for f in parts_pb2.HostResourcesEntry.DESCRIPTOR.fields}
    assert entry == {"host": (1, FieldDescriptor.TYPE_STRING), "resources": (2, FieldDescriptor.TYPE_MESSAGE)}


def test_slices_list_each_host_once_with_the_states_listed_for_it() -> None:
    hosts = [f"10.0.1.{i}" for i in range(7)]
    data = Input.of(port_goal("p0", "vpc-1", hosts[0], "10.1.0.1", hosts))  # port + DHCP for one, the neighbor for six
    slices = data.slices(3)
    assert sorted(len(s.hosts) for s in slices) == [1, 3, 3] and frozenset().union(*(s.hosts for s in slices)) == data.hosts
    for s in slices:
        assert set(s.states) == {k for g in s.groups for k in g.keys}  # no state its hosts are not listed for
        assert all(s.keys_of(h) == data.keys_of(h) for h in s.hosts)
    assert [len(s.hosts) for s in data.slices(100)] == [7]


def test_a_vpc_wide_state_listed_for_no_host_goes_with_the_first_slice() -> None:
    item = neighbor("nb-9", "vpc-1", A, "10.1.0.9")
    data = Input.of(goal([port("p1", "vpc-1", A, "10.1.0.1"), port("p2", "vpc-1", B, "10.1.0.2"), item], {A: ["p1"], B: ["p2"]}))
    first, second = data.slices(1)
    assert (common.NEIGHBOR, "nb-9") in first.states and (common.NEIGHBOR, "nb-9") not in second.states


def test_within_is_the_intersection_and_the_hosts_themselves_when_they_lie_within() -> None:
    hosts, members, c = {A, B}, {A, B, "10.0.0.3"}, "10.0.0.3"
    assert within(hosts, members, members) is hosts
    assert within(hosts, hosts) is hosts
    assert within(hosts, members, {A, c}) == {A} and within(hosts, {B, c}, members) == {B}
    assert within(hosts, set()) == set() and within(set(), members) == set()


def test_a_listing_in_the_order_of_the_one_before_reads_like_protobuf_whatever_changed() -> None:
    hosts = [f"10.1.0.{i}" for i in range(1, 21)]
    nb = listing((common.NEIGHBOR, "nb-1"))
    orders = [hosts, hosts, [*hosts[:5], "10.1.0.99", *hosts[6:]], hosts[::-1], [h + "0" for h in hosts], hosts[1:], hosts]
    for order in orders:  # each position's key is the one before's, or differs by a byte, or is longer
        inp = assert_reads_like_protobuf(b"".join(entry(h.encode(), nb) for h in order))
        assert inp.hosts == set(order)


def storm_listing(own: str, hosts: list[str]) -> bytes:
    """A port's listing as the storm writes it: its own host first (the port), then every
    other host of the VPC in the VPC's order (the port's neighbor)."""
    nb = listing((common.NEIGHBOR, f"nb-{own}"))
    return entry(own.encode(), listing((common.PORT, f"p-{own}"))) + b"".join(entry(h.encode(), nb) for h in hosts if h != own)


def test_listings_of_the_same_hosts_moved_about_share_one_set_and_take_the_neighbors_as_a_part_of_it() -> None:
    hosts = [f"10.2.0.{i}" for i in range(1, 21)]
    # The first listing's hosts are new to the positions (the listings before named others),
    # the second is read whole, the third is the second moved about: its set is made then.
    _, second, third, fourth = (assert_reads_like_protobuf(storm_listing(own, hosts)) for own in hosts[:4])
    assert fourth.hosts is third.hosts and third.hosts == set(hosts) and second.hosts is not third.hosts
    [neighbors] = [g.hosts for g in fourth.groups if len(g.hosts) > 1]
    assert type(neighbors) is Part and base_of(neighbors) is fourth.hosts and out_of(neighbors) == {hosts[3]}
    other = [*hosts[:5], "10.2.0.99", *hosts[6:]]  # one host replaced: not the same hosts
    assert assert_reads_like_protobuf(storm_listing(other[3], other)).hosts is not fourth.hosts


MOVES = st.lists(st.tuples(st.sampled_from(["swap", "new", "twice", "drop", "add", "odd", "cut"]), st.integers(0, 7), st.integers(0, 7)),
                 max_size=10)


@settings(max_examples=300, deadline=None)
@given(MOVES)
def test_listings_each_moved_from_the_one_before_read_like_protobuf(moves: list[tuple[str, int, int]]) -> None:
    """Each listing is the one before with hosts swapped, replaced, given twice, dropped or
    added, or an odd one (a key after its value, bytes protobuf refuses) in between."""
    hosts = [f"10.3.0.{i}" for i in range(8)]
    fresh = (f"10.4.0.{i}" for i in range(100))
    nb = listing((common.NEIGHBOR, "nb-1"))
    for op, i, j in [("none", 0, 0), ("none", 0, 0), *moves]:
        if op == "swap" and max(i, j) < len(hosts):
            hosts[i], hosts[j] = hosts[j], hosts[i]
        elif op == "new" and i < len(hosts):
            hosts[i] = next(fresh)
        elif op == "twice" and max(i, j) < len(hosts):
            hosts[j] = hosts[i]
        elif op == "drop" and hosts:
            hosts.pop(i % len(hosts))
        elif op == "add":
            hosts.insert(min(i, len(hosts)), next(fresh))
        raw = b"".join(entry(h.encode(), listing((common.PORT, "p0")) if k == j else nb) for k, h in enumerate(hosts))
        if op == "cut":  # protobuf refuses it; read half way
            with pytest.raises(InputError):
                Input.parse(raw + b"\x12\x05\x0a\x09abc")
            continue
        if op == "odd":
            raw += entry(b"10.5.0.1", nb, key_last=True)
        inp = assert_reads_like_protobuf(raw)
        for g in inp.groups:
            assert base_of(g.hosts) - out_of(g.hosts) == g.hosts and out_of(g.hosts) <= base_of(g.hosts)


def test_parts_of_one_base_unite_compare_and_lie_within_by_their_few_out() -> None:
    base = {f"10.6.0.{i}" for i in range(10)}
    a, b, c = sorted(base)[:3]
    pa, pb, pab, pa2 = Part(base, {a}), Part(base, {b}), Part(base, {a, b}), Part(base, {a})
    assert united([pa, pb]) is base and united([pa, base]) is base and united([pab]) is pab
    both = united([pab, pa])
    assert type(both) is Part and both == base - {a} and base_of(both) is base
    assert united([pa, {c}]) == base - {a} | {c}
    assert same(pa, pa2) and not same(pa, pb) and same(pa, set(pa)) and not same(pa, base)
    assert within(pab, pa) is pab and within(pab, base) is pab
    assert within(pa, pab) == pab and within(base, pa) == pa and within(pa, {a, b}) == {b}
    assert within(set(pa), pa) == pa and within(pa, set(pa)) is pa
