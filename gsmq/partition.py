"""Java-compatible key partitioning: Kafka's murmur2, as librdkafka's `murmur2_random`.

A Java or Go producer and ours put a key on the same partition, so an ACA can compute
which unicast partition carries its host id without asking anyone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_extensions import i64  # compiled: machine integers (every product is below 2^63)

_M: i64 = 0x5BD1E995
_MASK: i64 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (seed 0x9747b28c) as an unsigned 32-bit integer."""
    length: i64 = len(data)
    h: i64 = (0x9747B28C ^ length) & _MASK
    end: i64 = length - length % 4
    i: i64 = 0
    while i < end:  # little-endian 4-byte blocks, read byte by byte (no slice a block)
        k: i64 = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
        i += 4
    rest = length - end
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: str | bytes, partitions: int) -> int:
    """The partition a non-empty key lands on among `partitions` (Java's `toPositive(murmur2) % n`)."""
    if partitions <= 0:
        raise ValueError("partitions must be positive")
    raw = key.encode() if isinstance(key, str) else key
    return (murmur2(raw) & 0x7FFFFFFF) % partitions
