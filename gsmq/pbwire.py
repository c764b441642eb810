"""The protobuf wire format, for the few encodings built in bulk from parts: a length-delimited
field is its tag, its length and its bytes, so pieces serialized once concatenate into a
message without building one object per part (https://protobuf.dev/programming-guides/encoding/)."""

from __future__ import annotations

_ONE_BYTE = tuple(bytes((n,)) for n in range(0x80))


def varint(n: int) -> bytes:
    """`n` (>= 0) as a base-128 varint."""
    if 0 <= n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def number_field(number: int, n: int) -> bytes:
    """A varint field (wire type 0): an integer (>= 0), an enum or a bool."""
    return varint(number << 3) + varint(n)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): a string, bytes, a message or a map entry."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload
