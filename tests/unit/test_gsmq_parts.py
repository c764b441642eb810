"""Shared pieces: Java-compatible murmur2, the in-memory bus, topic names, headers, the
resource table and librdkafka settings. (Configuration: test_gsmq_config.py.)"""

from __future__ import annotations

import pytest

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from gsmq import resources, wire
from gsmq.kafka import KafkaSettings
from gsmq.partition import murmur2, partition_for
from gsmq.resources import MAP_FIELD, VPC_WIDE, head, host_listing, iter_states, piece_of, ref_piece, state_map, vpc_of
from gsmq.topics import Topics
from gsmq.transport import Envelope, MemoryBus, Sending

# Kafka's own test vectors (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java), signed Java ints.
JAVA_MURMUR2 = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "java"), JAVA_MURMUR2, ids=[k.decode()[:12] for k, _ in JAVA_MURMUR2])
def test_murmur2_matches_kafkas_java_test_vectors(key: bytes, java: int) -> None:
    got = murmur2(key)
    assert 0 <= got <= 0xFFFFFFFF
    assert got - (1 << 32 if got >= 1 << 31 else 0) == java  # the same 32 bits, read as Java's signed int


def test_murmur2_covers_every_tail_length() -> None:
    """Keys of 0..7 bytes walk each branch of the tail; lengths are mixed into the seed."""
    hashes = [murmur2(b"abcdefg"[:n]) for n in range(8)]
    assert len(set(hashes)) == 8
    assert murmur2(b"abc") == 479470107  # 3-byte tail, the one Java vector of that length


def test_partition_for_is_javas_to_positive_modulo() -> None:
    for key, java in JAVA_MURMUR2:
        for n in (1, 7, 16, 1000):
            assert partition_for(key, n) == (java & 0x7FFFFFFF) % n
    assert partition_for("foobar", 16) == partition_for(b"foobar", 16)
    assert all(0 <= partition_for(f"host-{i}", 7) < 7 for i in range(200))
    assert len({partition_for(f"10.0.{i // 256}.{i % 256}", 16) for i in range(500)}) == 16
    with pytest.raises(ValueError, match="partition"):
        partition_for("x", 0)


def test_memory_bus_places_by_key_and_remembers_commits() -> None:
    bus = MemoryBus({"t": 4})
    sink, source = bus.sink(), bus.source("g")
    placed: list[Envelope] = []
    for i in range(6):
        sink.send(Envelope("t", "host-a", f"m{i}".encode(), {"n": str(i)}), lambda m, e: placed.append(m))
    assert placed == []  # callbacks run from poll/flush, like librdkafka's
    assert sink.flush() == 0
    part = partition_for("host-a", 4)
    assert [(m.partition, m.offset, m.headers["n"]) for m in placed] == [(part, i, str(i)) for i in range(6)]
    source.assign([("t", part, 2)])
    assert [m.value for m in source.poll_batch(10, 0)] == [b"m2", b"m3", b"m4", b"m5"]
    assert source.poll_batch(10, 0) == []
    source.commit([("t", part, 6)])
    other = (part + 1) % 4
    assert bus.source("g").committed([("t", part), ("t", other)]) == {("t", part): 6, ("t", other): -1}
    assert bus.source("another-group").committed([("t", part)]) == {("t", part): -1}


def test_memory_bus_sends_many_at_once() -> None:
    bus = MemoryBus({"t": 4})
    sink = bus.sink()
    sending = sink.send_all([Envelope("t", f"h{i}", f"m{i}".encode(), {"n": str(i)}) for i in range(5)])
    assert sink.flush() == 0 and sending.failed == []
    assert sorted(m.value for log in bus.logs.values() for m in log) == [f"m{i}".encode() for i in range(5)]


def test_a_sending_keeps_the_messages_that_failed() -> None:
    sending, ok, bad = Sending(), Envelope("t", "a", b"1"), Envelope("t", "b", b"2")
    sending.on_delivered(ok, None)
    sending.on_delivered(bad, "broker down")
    assert sending.failed == [bad]


def test_memory_bus_spreads_keys_like_kafka_and_honours_explicit_partitions() -> None:
    bus = MemoryBus({"t": 8}, default_partitions=3)
    sink = bus.sink()
    for i in range(40):
        sink.send(Envelope("t", f"h{i}", b"x"))
    sink.send(Envelope("t", "h0", b"pinned", partition=5))
    sink.send(Envelope("u", "h0", b"y"))
    sink.flush()
    for (_, part), log in bus.logs.items():
        assert [m.offset for m in log] == list(range(len(log)))
        for m in log:
            if m.value == b"x":
                assert part == partition_for(m.key, 8)
    assert bus.logs[("t", 5)][-1].value == b"pinned"
    assert bus.partition_count("u") == 3 and [m.partition for m in bus.logs[("u", partition_for("h0", 3))]] == [partition_for("h0", 3)]


def test_memory_source_batches_across_partitions_and_unassigns() -> None:
    bus = MemoryBus({"t": 2})
    for part in (0, 1):
        for i in range(3):
            bus.append(Envelope("t", "k", f"{part}-{i}".encode(), partition=part))
    source = bus.source()
    source.assign([("t", 0, 0), ("t", 1, 1)])
    first = source.poll_batch(4, 0)
    assert len(first) == 4
    rest = source.poll_batch(10, 0)
    assert sorted(m.value for m in first + rest) == [b"0-0", b"0-1", b"0-2", b"1-1", b"1-2"]
    bus.append(Envelope("t", "k", b"late", partition=1))
    source.unassign([("t", 1)])
    assert source.poll_batch(10, 0) == []


def test_topic_names_derive_from_the_prefix() -> None:
    t = Topics("lab")
    assert (t.unicast, t.multicast, t.reply, t.dead_letter, t.host("10.0.0.1")) == (
        "lab.unicast", "lab.multicast", "lab.reply", "lab.deadletter", "lab.host.10.0.0.1")
    assert Topics().default_partitions() == {"gs.unicast": 16, "gs.multicast": 16, "gs.reply": 8, "gs.deadletter": 1}


def test_headers_as_text_and_from_pairs() -> None:
    assert wire.decode_headers(None) == {} and wire.decode_headers([]) == {}
    assert wire.decode_headers([(wire.SEQ, b"1"), (wire.HOST_ID, None), (wire.SEQ, b"2"), ("bad", b"\xff")]) == {
        wire.SEQ: "2", wire.HOST_ID: "", "bad": "\ufffd"}
    names = [v for k, v in vars(wire).items() if k.isupper() and not k.startswith("_") and isinstance(v, str)]
    assert len(names) == len(set(names)) and all(n.startswith("gs-") for n in names)


def test_resource_table_covers_every_type_and_map() -> None:
    assert set(MAP_FIELD) == set(common.ResourceType.values())
    maps = {f.name for f in gs.GoalStateV2.DESCRIPTOR.fields if f.message_type and f.message_type.GetOptions().map_entry}
    assert set(MAP_FIELD.values()) == maps - {"host_resources"}
    assert {common.SUBNET, common.NEIGHBOR, common.SECURITYGROUP} == VPC_WIDE


def test_iter_states_and_vpc_of() -> None:
    goal = gs.GoalStateV2()
    goal.vpc_states["v1"].configuration.id = "v1"
    goal.port_states["p1"].configuration.vpc_id = "v1"
    goal.gateway_states["g1"].configuration.arion_info.vpc_id = "v2"
    goal.gateway_states["g2"].configuration.zeta_info.port_inband_operation = 1
    goal.dhcp_states["d1"].configuration.subnet_id = "s1"
    got = {(rtype, rid): vpc_of(rtype, state) for rtype, rid, state in iter_states(goal)}
    assert got == {(common.VPC, "v1"): "v1", (common.PORT, "p1"): "v1", (common.GATEWAY, "g1"): "v2",
                   (common.GATEWAY, "g2"): "", (common.DHCP, "d1"): ""}


@pytest.mark.parametrize(("host", "version"), [("10.0.0.1", 3), ("h" * 300, 0), ("hôte", 1 << 20)])
def test_pieces_concatenate_into_exactly_the_message_protobuf_writes(host: str, version: int) -> None:
    refs = [(common.VPC, "vpc-1"), (common.PORT, "p0"), (common.NEIGHBOR, ""), (common.DHCP, "d" * 200), (0, "x"), (0, "")]
    want = gs.GoalStateV2(format_version=version)
    want.host_resources[host].resources.extend(gs.ResourceIdType(type=t, id=i) for t, i in refs)  # type: ignore[arg-type]
    ids = ["p0", "", "d" * 200, "é"]  # one state of each type, with ids of every kind, some states empty
    for n, rtype in enumerate(sorted(MAP_FIELD)):
        state = state_map(want, rtype)[ids[n % len(ids)]]
        if n % 2:
            state.operation_type = common.UPDATE
    got = head(version) + host_listing(host, [ref_piece(t, i) for t, i in refs])
    number = {rtype: gs.GoalStateV2.DESCRIPTOR.fields_by_name[name].number for rtype, name in MAP_FIELD.items()}
    got += b"".join(piece_of(rtype, rid, state) for rtype, rid, state in sorted(iter_states(want), key=lambda t: number[t[0]]))
    assert got == want.SerializeToString()


def test_message_heads_are_protobufs_and_a_callers_many_versions_are_not_all_kept() -> None:
    for version in range(3 * resources.HEADS_KEPT):
        assert head(version) == gs.GoalStateV2(format_version=version).SerializeToString()
    assert len(resources._HEADS) <= resources.HEADS_KEPT


def test_kafka_settings_defaults_and_pass_through() -> None:
    plain = KafkaSettings("b:9092")
    producer = plain.producer()
    assert producer["bootstrap.servers"] == "b:9092"
    assert (producer["partitioner"], producer["acks"], producer["enable.idempotence"]) == ("murmur2_random", "all", True)
    consumer = plain.consumer("g")
    assert (consumer["group.id"], consumer["enable.auto.commit"], consumer["enable.auto.offset.store"]) == ("g", False, False)
    tls = KafkaSettings("b:9093", {"security.protocol": "SSL", "linger.ms": "50"})
    assert tls.producer()["security.protocol"] == "SSL" and tls.producer()["linger.ms"] == "50"  # the user's value wins
    assert tls.consumer("g")["security.protocol"] == tls.admin()["security.protocol"] == "SSL"
    assert tls.producer(**{"linger.ms": 0})["linger.ms"] == 0  # the code's explicit override wins over both
