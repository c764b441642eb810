"""Kafka headers: what a message needs beyond its plain protobuf payload.

Payloads stay plain serialized `GoalStateV2` / `GoalStateOperationReply`, so a real Alcor
component can read them; everything else travels here. Values are UTF-8 text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

REQUEST_ID = "gs-request-id"  # the DPM's id of the caller's request (echoed in replies)
HOST_ID = "gs-host-id"  # target host (unicast) or replying host (reply)
VPC_ID = "gs-vpc-id"  # the VPC of a multicast message
SEQ = "gs-seq"  # per-host sequence number (unicast) / per-VPC sequence (multicast)
EPOCH = "gs-epoch"  # the DPM incarnation that numbered SEQ; a new epoch restarts SEQ
SENT_NS = "gs-sent-ns"  # time.time_ns() when the DPM produced the message
MSG_TYPE = "gs-type"  # "GoalStateV2" | "GoalStateOperationReply"
FULL = "gs-full"  # "1": the message replaces the host's whole state (resync)
FOLLOW = "gs-follow"  # "vpc=partition:offset:seq,...": multicast VPCs joined with this message
APPLIED_NS = "gs-applied-ns"  # time.time_ns() when the ACA finished applying (reply)
ERROR = "gs-error"  # dead letter: why it could not be decoded or applied
SOURCE_TOPIC = "gs-source-topic"  # dead letter: where it came from
SOURCE_PARTITION = "gs-source-partition"
SOURCE_OFFSET = "gs-source-offset"

Headers = list[tuple[str, bytes]]


def to_dict(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """A message's headers as text (the last value wins for a repeated name)."""
    if not headers:
        return {}
    return {k: (v.decode(errors="replace") if v is not None else "") for k, v in headers}


def pairs(items: Iterable[tuple[str, object]]) -> Headers:
    """Headers from (name, value) pairs, skipping None values."""
    return [(k, str(v).encode()) for k, v in items if v is not None]
