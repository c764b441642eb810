"""gsmq.partition: Kafka's murmur2 and the partition of a key, as Java and librdkafka compute them."""

from __future__ import annotations

import random
import struct

import pytest

from gsmq.partition import murmur2, partition_for

# Kafka's own test vectors (clients' UtilsTest.testMurmur2), signed as Java returns them.
JAVA = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829, b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107}


def reference(data: bytes) -> int:
    """Java's Utils.murmur2 transcribed with Python ints, unsigned."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (0x9747B28C ^ len(data)) & mask
    whole = len(data) // 4 * 4
    for (block,) in struct.iter_unpack("<I", data[:whole]):
        k = (block * m) & mask
        k ^= k >> 24
        h = ((h * m) & mask) ^ ((k * m) & mask)
    tail = data[whole:]
    for i in reversed(range(len(tail))):
        h ^= tail[i] << (8 * i)
    if tail:
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    return h ^ (h >> 15)


@pytest.mark.parametrize(("key", "signed"), JAVA.items())
def test_murmur2_gives_javas_values(key: bytes, signed: int) -> None:
    assert murmur2(key) == signed & 0xFFFFFFFF


def test_murmur2_agrees_with_the_reference_for_every_length_and_byte() -> None:
    rng = random.Random(7)
    keys = [bytes(rng.randrange(256) for _ in range(n)) for n in range(64) for _ in range(8)] + [b"\xff" * 13, b""]
    assert [murmur2(k) for k in keys] == [reference(k) for k in keys]


def test_a_key_lands_on_its_hash_modulo_the_partitions_and_text_as_its_utf8() -> None:
    assert partition_for("foobar", 16) == (reference(b"foobar") & 0x7FFFFFFF) % 16
    assert partition_for("hôte", 7) == partition_for("hôte".encode(), 7)
    with pytest.raises(ValueError, match="positive"):
        partition_for("x", 0)
