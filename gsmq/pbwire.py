"""The protobuf wire format, for the few encodings built in bulk from parts: a length-delimited
field is its tag, its length and its bytes, so pieces serialized once concatenate into a
message without building one object per part (https://protobuf.dev/programming-guides/encoding/)."""

from __future__ import annotations


def varint(n: int) -> bytes:
    """`n` (>= 0) as a base-128 varint."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): a string, bytes, a message or a map entry."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload
