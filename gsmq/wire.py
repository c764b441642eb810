"""The wire conventions beside the protobuf payloads, one definition each (docs/internals.md).

Payloads stay plain serialized `GoalStateV2` / `GoalStateOperationReply`, so a real Alcor
component can read them; everything else travels in Kafka headers, as UTF-8 text:
- header names, and the message types of `gs-type`;
- numbers (`gs-seq`, offsets, times): ASCII decimal digits, at most 2^63 - 1; anything
  else is a `HeaderError`, which refuses that one message (dead letter with the reason);
- `gs-follow`: the multicast VPCs a unicast message joins, `vpc=partition:offset:seq`
  joined by `,`, with the VPC id percent-encoded so any id round-trips;
- the position token: a message a request waits for a host to pass;
- the failure marker: the caller-reply status that names a host that never answered;
- the strategies: which channels a DPM publishes on.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import NamedTuple
from urllib.parse import quote, unquote

from google.protobuf.message import DecodeError

from gsmq import pbwire
from gsmq.transport import Envelope
from gsmq.v1 import channel_pb2

REQUEST_ID = "gs-request-id"  # the DPM's id of the caller's request (echoed in replies)
HOST_ID = "gs-host-id"  # target host (unicast; a VPC's message pushed to one host)
VPC_ID = "gs-vpc-id"  # the VPC of a multicast message
SEQ = "gs-seq"  # per-host sequence number (unicast) / per-VPC sequence (multicast)
EPOCH = "gs-epoch"  # the DPM incarnation that numbered SEQ (`make_epoch`); a new epoch restarts SEQ
SENT_NS = "gs-sent-ns"  # time.time_ns() when the DPM produced the message
MSG_TYPE = "gs-type"  # a MessageType
FULL = "gs-full"  # "1": the message replaces the host's whole state (resync)
FOLLOW = "gs-follow"  # see `encode_follow`
PART = "gs-part"  # "i/n": part i (1-based) of the n parts of one unicast message over the size limit (`resources.split`)
APPLIED_NS = "gs-applied-ns"  # time.time_ns() when the ACA finished applying (reply)
ERROR = "gs-error"  # dead letter: why it could not be decoded or applied
SOURCE_TOPIC = "gs-source-topic"  # dead letter: where it came from
SOURCE_PARTITION = "gs-source-partition"
SOURCE_OFFSET = "gs-source-offset"
TRUNCATED = "gs-truncated"  # dead letter: the value's size before it was cut to DEAD_LETTER_VALUE_BYTES
DEAD_LETTER_VALUE_BYTES = 256 << 10  # a dead letter keeps at most this much of the refused value, so it always fits the broker's limit
DEAD_LETTER_REASON_CHARS = 2000  # ... and of its reason

MAX_NUMBER = 2**63 - 1  # Kafka offsets and our counters are signed 64-bit

Headers = Mapping[str, str]


class MessageType(StrEnum):
    """The value of `gs-type` (when the header is absent: an Ack on the reply topic, else a goal state)."""

    GOAL_STATE = "GoalStateV2"
    REPLY = "GoalStateOperationReply"
    MARKER = "Marker"  # the DPM's start-up marker on every multicast and reply partition
    ACK = "Ack"  # an agent's progress for one host (gsmq.v1.Ack)


class Strategy(StrEnum):
    """How a DPM publishes: VPC-wide states once per VPC, or every host its own copy."""

    VPC_MULTICAST = "vpc-multicast"
    UNICAST_ONLY = "unicast-only"
    TOPIC_PER_HOST = "topic-per-host"


STRATEGIES: tuple[str, ...] = tuple(s.value for s in Strategy)


class HeaderError(ValueError):
    """A header whose value breaks the conventions: the message carrying it is refused."""


RawHeaders = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None


def decode_headers(headers: RawHeaders) -> dict[str, str]:
    """A Kafka client's headers (pairs, or a dict) as text; the last value wins for a repeated name."""
    if not headers:
        return {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {k: header_text(v) for k, v in pairs}


def header_text(value: bytes | str | None) -> str:
    """One header value as text: bytes decoded as UTF-8 (invalid bytes replaced), none as ""."""
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def message_type(headers: Headers, reply: bool = False) -> str:
    """A record's gs-type; without one, an Ack on the reply topic (`reply`), else a goal state."""
    return headers.get(MSG_TYPE, MessageType.ACK if reply else MessageType.GOAL_STATE)


def number(text: str, name: str = "number") -> int:
    """`text` as a number of the wire: ASCII digits only, 0 .. 2^63 - 1."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > MAX_NUMBER:
        raise HeaderError(f"{name} is not a number of 0..2^63-1: {text[:40]!r}")
    return int(text)


MAX_PARTS = 100_000


def encode_part(index: int, count: int) -> str:
    return f"{index}/{count}"


def decode_part(text: str) -> tuple[int, int]:
    """`gs-part` as (index, count), 1 <= index <= count <= MAX_PARTS; HeaderError when malformed."""
    index, slash, count = text.partition("/")
    if not slash:
        raise HeaderError(f"{PART} is not i/n: {text[:40]!r}")
    i, n = number(index, PART), number(count, PART)
    if not 1 <= i <= n <= MAX_PARTS:
        raise HeaderError(f"{PART} is not i/n with 1 <= i <= n <= {MAX_PARTS}: {text[:40]!r}")
    return i, n


def make_epoch(incarnation: int) -> str:
    """A DPM run's `gs-epoch`: its incarnation (1, 2, ... counted in the changelog), a dot,
    and random hex that tells two runs apart."""
    if not 1 <= incarnation <= MAX_NUMBER:
        raise ValueError(f"an incarnation is 1..2^63-1, got {incarnation}")
    return f"{incarnation}.{uuid.uuid4().hex[:12]}"


def epoch_incarnation(epoch: str) -> int | None:
    """The incarnation of a `make_epoch` epoch; None when `epoch` is not one."""
    head, dot, tail = epoch.partition(".")
    try:
        value = number(head)
    except HeaderError:
        return None
    return value if dot and tail and value >= 1 else None


def number_header(headers: Headers, name: str) -> int | None:
    """The number in header `name` (None when absent; HeaderError when malformed)."""
    text = headers.get(name)
    return None if text is None else number(text, name)


class FollowPosition(NamedTuple):
    """Where a VPC's multicast stream is to be read from by a host that joins it."""

    partition: int
    offset: int  # first offset of `partition` to read for this VPC
    seq: int  # last VPC sequence number the message joining it already includes


def encode_follow(positions: Mapping[str, FollowPosition]) -> str:
    """`gs-follow`: `vpc=partition:offset:seq` per VPC, sorted, joined by `,`."""
    return ",".join(f"{quote(vpc, safe='')}={p.partition}:{p.offset}:{p.seq}" for vpc, p in sorted(positions.items()))


def decode_follow(text: str) -> dict[str, FollowPosition]:
    """The positions of a `gs-follow` header; HeaderError when any entry is malformed."""
    out: dict[str, FollowPosition] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        vpc, sep, spec = item.partition("=")
        fields = spec.split(":")
        if not sep or not vpc or len(fields) != 3:
            raise HeaderError(f"{FOLLOW} entry is not vpc=partition:offset:seq: {item[:80]!r}")
        partition, offset, seq = (number(f, FOLLOW) for f in fields)
        out[unquote(vpc)] = FollowPosition(partition, offset, seq)
    return out


class Token(NamedTuple):
    """A message's position, which a host's watermark passes: its unicast `seq` (vpc empty), or a VPC's multicast `seq`."""

    vpc: str
    seq: int

    @property
    def multicast(self) -> bool:
        return bool(self.vpc)


def unicast_token(seq: int) -> Token:
    return Token("", seq)


# Caller replies: a host that never answered is named by one FAILURE status of this id.
_FAILED_HOST = "host:"


def failed_host_id(host: str) -> str:
    """The resource_id of the status that names a silent host."""
    return f"{_FAILED_HOST}{host}"


def failed_host(resource_id: str) -> str | None:
    """The host a failure-marker status names, or None for a resource status."""
    return resource_id[len(_FAILED_HOST) :] if resource_id.startswith(_FAILED_HOST) else None


# Beyond `MAX_FAILED_HOSTS` markers, one status of this id counts the silent hosts not named.
MAX_FAILED_HOSTS = 1000  # keeps a reply far below gRPC's 4 MB default
_MORE_FAILED = "hosts-not-named:"


def more_failed_hosts_id(count: int) -> str:
    """The resource_id of the status that counts the silent hosts not named."""
    return f"{_MORE_FAILED}{count}"


def more_failed_hosts(resource_id: str) -> int:
    """How many silent hosts a `more_failed_hosts_id` status counts (0 for any other status)."""
    tail = resource_id[len(_MORE_FAILED) :] if resource_id.startswith(_MORE_FAILED) else ""
    return int(tail) if tail.isdigit() else 0


def dead_letter(message: Envelope, topic: str, reason: str) -> Envelope:
    """`message` for the dead-letter `topic`: its key, value and headers, plus why and where
    from; a value over DEAD_LETTER_VALUE_BYTES is cut to that size (its size before in
    `gs-truncated`: the source offset names the whole), so a dead letter is never itself lost."""
    headers = dict(message.headers)
    headers.update({ERROR: reason[:DEAD_LETTER_REASON_CHARS], SOURCE_TOPIC: message.topic, SOURCE_PARTITION: str(message.partition),
                    SOURCE_OFFSET: str(message.offset)})
    value = message.value
    if len(value) > DEAD_LETTER_VALUE_BYTES:
        headers[TRUNCATED] = str(len(value))
        value = value[:DEAD_LETTER_VALUE_BYTES]
    return Envelope(topic, message.key, value, headers)


CHANNEL_BATCH_FIELD = channel_pb2.ChannelBatch.DESCRIPTOR.fields_by_name["channel_messages"].number


def channel_message(payload: bytes, headers: Mapping[str, str]) -> bytes:
    """A GoalStateV2 (`payload`) carrying a record's headers in fields GoalStateV2 does not
    define (`gsmq.v1.ChannelHeaders`): what the DPM's gRPC channel sends for that record."""
    return payload + channel_pb2.ChannelHeaders(channel_headers=headers).SerializeToString()


def channel_batch(messages: Sequence[bytes]) -> bytes:
    """Channel messages in one request (`gsmq.v1.ChannelBatch`), each kept whole."""
    return b"".join(pbwire.field(CHANNEL_BATCH_FIELD, message) for message in messages)


def channel_messages(request: bytes) -> list[tuple[bytes, dict[str, str]]]:
    """The channel messages of a fast-path request with their headers: itself, the entries
    of a `ChannelBatch`, or none (a plain GoalStateV2). DecodeError: undecodable, or a batch
    entry without headers."""
    headers = channel_pb2.ChannelHeaders.FromString(request).channel_headers
    if headers:
        return [(request, dict(headers))]
    out = []
    for message in channel_pb2.ChannelBatch.FromString(request).channel_messages:
        headers = channel_pb2.ChannelHeaders.FromString(message).channel_headers
        if not headers:
            raise DecodeError("a ChannelBatch entry without ChannelHeaders")
        out.append((message, dict(headers)))
    return out


def addressed(message: bytes, host: str) -> bytes:
    """A VPC's channel message addressed to one of its hosts (`gs-host-id`): the copy that
    host gets, applied for it alone. (Entries of a map field add up when concatenated.)"""
    return message + channel_pb2.ChannelHeaders(channel_headers={HOST_ID: host}).SerializeToString()
