"""The protobuf wire format, for the few encodings built in bulk from parts: a length-delimited
field is its tag, its length and its bytes, so pieces serialized once concatenate into a
message without building one object per part (https://protobuf.dev/programming-guides/encoding/);
and for what is read in bulk without a parser: acks (`dpm_server.ackwire`), the pieces of a
join's bundle (`gsmq.resources.read_bundle`)."""

from __future__ import annotations

from typing import Final

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


# Reading: a message walked field by field.
VARINT: Final = 0  # wire types
LEN: Final = 2
_MAX_FIELD: Final = (1 << 29) - 1


class NotReadError(Exception):
    """Bytes these readers do not read: malformed, or a form they leave to a full parser."""


def check_fields(data: bytes, i: int, end: int) -> None:
    """Check that data[i:end] holds varint and length-delimited fields only, as a map entry of numbers does."""
    while i < end:
        _, kind, i = tag(data, i, end)
        if kind == VARINT:
            _, i = varint_at(data, i, end)
        elif kind == LEN:
            _, i = span(data, i, end)
        else:
            raise NotReadError


def span(data: bytes, i: int, end: int) -> tuple[int, int]:
    """Where the bytes of the length-delimited field whose length is at data[i] start and stop."""
    size, i = varint_at(data, i, end)
    if i + size > end:
        raise NotReadError
    return i, i + size


def tag(data: bytes, i: int, end: int) -> tuple[int, int, int]:
    """The field number and wire type of the tag at data[i], and the index after it (field
    numbers run from 1 to 2^29-1)."""
    key, i = varint_at(data, i, end)
    number = key >> 3
    if number == 0 or number > _MAX_FIELD:
        raise NotReadError
    return number, key & 7, i


def varint_at(data: bytes, i: int, end: int) -> tuple[int, int]:
    """The varint at data[i] and the index after it. Nine bytes hold 63 bits: a varint of
    ten (a number past 2^63-1, or a smaller one padded) or running past `end` is not read here."""
    if i >= end:
        raise NotReadError
    b = data[i]
    if b < 0x80:
        return b, i + 1
    value, shift = b & 0x7F, 7
    i += 1
    while True:
        if i >= end or shift > 56:
            raise NotReadError
        b = data[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7
