"""What the ack tracker reads of a `gsmq.v1.Ack`, read straight from its bytes when it has the
usual form (docs/internals.md, "Acknowledgements").

Parsing an ack into a protobuf message, reading its fields one by one and freeing it costs
several times what the tracker then does with it; most acks carry no failure, and their
fields are a few strings and numbers. `read` walks the bytes once into an `AckFields`;
an ack it does not read this way (a failure, a field of an unexpected wire type, a number
past 2^63-1, anything malformed) is left to the protobuf parser (`fields_of` then takes
what the tracker needs), so that both ways give the same fields for every ack and refuse
the same ones.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from gsmq import pbwire
from gsmq.v1 import ack_pb2

# (vpc_id, epoch, seq, seen) of a VpcProgress
VpcMark = tuple[str, str, int, int]

# An ack's times as the tracker keeps them: apply, slowest data-plane call, resource time, publish -> applied (us).
Times = tuple[int, int, int, int]


@dataclass(init=False, slots=True, eq=False)
class AckFields:
    """The fields of an Ack the tracker reads (proto3 defaults for those absent)."""

    host_id: str
    epoch: str
    unicast_seq: int
    unicast_seen: int
    vpcs: list[VpcMark]
    failures: Sequence[ack_pb2.Failure]
    times: Times

    def __init__(self, host_id: str = "", epoch: str = "", unicast_seq: int = 0, unicast_seen: int = 0,
                 vpcs: list[VpcMark] | None = None, failures: Sequence[ack_pb2.Failure] = (),
                 times: Times = (0, 0, 0, 0)) -> None:
        self.host_id = host_id
        self.epoch = epoch
        self.unicast_seq = unicast_seq
        self.unicast_seen = unicast_seen
        self.vpcs = [] if vpcs is None else vpcs
        self.failures = failures
        self.times = times


def fields_of(ack: ack_pb2.Ack) -> AckFields:
    """The fields of a parsed Ack (VPC ids interned, as `read` gives them)."""
    t = ack.timing
    return AckFields(ack.host_id, ack.epoch, ack.unicast_seq, ack.unicast_seen,
                     [(sys.intern(v.vpc_id), v.epoch, v.seq, v.seen) for v in ack.vpcs], ack.failures,
                     (t.apply_us, t.max_dataplane_us, t.max_config_us, t.max_elapse_us))


_UINT32: Final = 0xFFFFFFFF


def read(data: bytes) -> AckFields | None:
    """The ack's fields, or None when it is not of the usual form (see the module)."""
    try:
        return _read(data)
    except (pbwire.NotReadError, IndexError, UnicodeDecodeError):  # not of the usual form: the parser decides
        return None


class _Rest:
    """The fields of the last ack read after its host's own (its VPCs and times: fields 4 and
    6, nothing else of the host's among them), with their bytes: `last`, replaced whole, so
    that readers in several threads each see one ack's. The followers of one shared apply
    send the same rest one after another (aca_agent.acks): an ack whose rest is byte for
    byte the last one's takes its fields, read once (its VPC list is shared: read only)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[bytes, list[VpcMark], Times] = (b"", [], (0, 0, 0, 0))


_REST: Final = _Rest()


def _read(data: bytes) -> AckFields:
    ack = AckFields()
    i, end = 0, len(data)
    rest = -1  # where the rest begins (its first field 4 or 6); -2: a field of the host's follows, not kept
    while i < end:
        at = i
        number, kind, i = pbwire.tag(data, i, end)
        if rest == -1 and number in (4, 6):
            rest = at
            seen, vpcs, times = _REST.last
            if end - at == len(seen) and data.endswith(seen):
                ack.vpcs, ack.times = vpcs, times
                return ack
        elif rest >= 0 and number in (1, 2, 3, 7):  # the host's own fields
            rest = -2
        if kind == pbwire.LEN:
            i, j = pbwire.span(data, i, end)
            if number == 1:
                ack.host_id = data[i:j].decode()
            elif number == 2:
                ack.epoch = data[i:j].decode()
            elif number == 4:
                ack.vpcs.append(_vpc(data, i, j))
            elif number == 6:
                ack.times = _timing(data, i, j, ack.times)
            elif number == 5:
                raise pbwire.NotReadError  # a failure: the parser reads it
            i = j
        elif kind == pbwire.VARINT:
            value, i = pbwire.varint_at(data, i, end)
            if number == 3:
                ack.unicast_seq = value
            elif number == 7:
                ack.unicast_seen = value
        else:
            raise pbwire.NotReadError
    if rest >= 0:
        _REST.last = (data[rest:], ack.vpcs, ack.times)
    return ack


def _vpc(data: bytes, i: int, end: int) -> VpcMark:
    vpc = epoch = ""
    seq = seen = 0
    while i < end:
        number, kind, i = pbwire.tag(data, i, end)
        if kind == pbwire.LEN:
            i, j = pbwire.span(data, i, end)
            if number == 1:  # interned: the tracker's lookups by VPC match by identity (read once per rest)
                vpc = sys.intern(data[i:j].decode())
            elif number == 2:
                epoch = data[i:j].decode()
            i = j
        elif kind == pbwire.VARINT:
            value, i = pbwire.varint_at(data, i, end)
            if number == 3:
                seq = value
            elif number == 4:
                seen = value
        else:
            raise pbwire.NotReadError
    return vpc, epoch, seq, seen


def _timing(data: bytes, i: int, end: int, was: Times) -> Times:
    """A Timing's four times, over `was` (a message field given twice is merged, field by field)."""
    apply_us, dataplane_us, config_us, elapse_us = was
    while i < end:
        number, kind, i = pbwire.tag(data, i, end)
        if kind == pbwire.VARINT:
            value, i = pbwire.varint_at(data, i, end)
            if number == 3:
                apply_us = value
            elif number == 4:
                dataplane_us = value & _UINT32
            elif number == 5:
                config_us = value & _UINT32
            elif number == 6:
                elapse_us = value & _UINT32
        elif kind == pbwire.LEN:
            i, j = pbwire.span(data, i, end)
            if number == 8:  # an elapse_buckets entry: checked as the parser would, not kept
                pbwire.check_fields(data, i, j)
            i = j
        else:
            raise pbwire.NotReadError
    return apply_us, dataplane_us, config_us, elapse_us
