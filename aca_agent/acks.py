"""Progress acknowledgements: what applying a batch did, one `gsmq.v1.Ack` per host that moved.

`Progress` gathers the `Result`s of a batch; `acks()` then gives, for every host with a
result, its watermarks (read from the applier: the unicast one, and each VPC whose
multicast moved), the resources that did not succeed and a timing summary. Work per
result is O(its failures); the ack costs O(what it carries), whatever the batch covered.
See docs/internals.md, "Acknowledgements".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from aca_agent.applier import Applier, Result
from alcor.schema import common_pb2 as common
from gsmq import wire
from gsmq.transport import Envelope
from gsmq.v1 import ack_pb2
from gsmq.wire import MessageType


def elapse_bucket(us: int) -> int:
    """The `Timing.elapse_buckets` bucket of an elapse: b with 2^(b/8) <= us < 2^((b+1)/8)."""
    return int(8 * math.log2(us)) if us >= 1 else 0


def bucket_floor_us(bucket: int) -> float:
    """The smallest elapse a bucket counts, in microseconds."""
    return float(2 ** (bucket / 8))


@dataclass(slots=True)
class _HostProgress:
    vpcs: set[str] = field(default_factory=set)
    failures: list[ack_pb2.Failure] = field(default_factory=list)
    messages: int = 0
    resources: int = 0
    apply_us: int = 0
    max_dataplane_us: int = 0
    max_config_us: int = 0
    max_elapse_us: int = 0
    last_applied_ns: int = 0
    buckets: dict[int, int] = field(default_factory=dict)


class Progress:
    """The acks of one batch, built from its results and the applier's watermarks."""

    def __init__(self) -> None:
        self._hosts: dict[str, _HostProgress] = {}

    def add(self, result: Result) -> None:
        p = self._hosts.get(result.host)
        if p is None:
            p = self._hosts[result.host] = _HostProgress()
        if result.vpc:
            p.vpcs.add(result.vpc)
        p.messages += 1
        p.resources += len(result.statuses)
        p.apply_us += result.total_us
        p.last_applied_ns = max(p.last_applied_ns, result.applied_ns)
        if result.elapse_us is not None:
            p.max_elapse_us = max(p.max_elapse_us, result.elapse_us)
            b = elapse_bucket(result.elapse_us)
            p.buckets[b] = p.buckets.get(b, 0) + 1
        for s in result.statuses:
            p.max_dataplane_us = max(p.max_dataplane_us, s.dataplane_us)
            p.max_config_us = max(p.max_config_us, s.config_us)
            if s.status != common.SUCCESS:
                p.failures.append(ack_pb2.Failure(vpc_id=result.vpc, seq=result.seq, resource_type=s.resource_type,  # type: ignore[arg-type]
                                                  resource_id=s.resource_id, operation_type=s.operation_type,  # type: ignore[arg-type]
                                                  status=s.status))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._hosts)

    def acks(self, applier: Applier) -> list[ack_pb2.Ack]:
        """One Ack per host with a result since the last call, then start over."""
        out = []
        for host, p in self._hosts.items():
            hs = applier.hosts[host]
            ack = ack_pb2.Ack(host_id=host, epoch=hs.epoch or "", unicast_seq=hs.applied, unicast_seen=hs.seq)
            for vpc in sorted(p.vpcs):
                cursor = hs.cursors.get(vpc)
                if cursor is not None:
                    ack.vpcs.add(vpc_id=vpc, epoch=cursor.epoch, seq=cursor.watermark, seen=cursor.seq)
            ack.failures.extend(p.failures)
            t = ack.timing
            t.messages, t.resources, t.apply_us = p.messages, p.resources, p.apply_us
            t.max_dataplane_us, t.max_config_us, t.max_elapse_us = p.max_dataplane_us, p.max_config_us, p.max_elapse_us
            t.last_applied_ns = p.last_applied_ns
            t.elapse_buckets.update(p.buckets)
            out.append(ack)
        self._hosts = {}
        return out


def ack_envelope(topic: str, ack: ack_pb2.Ack) -> Envelope:
    """The Kafka record carrying `ack` (key = host id)."""
    headers = {wire.HOST_ID: ack.host_id, wire.MSG_TYPE: MessageType.ACK}
    return Envelope(topic, ack.host_id, ack.SerializeToString(), headers)
