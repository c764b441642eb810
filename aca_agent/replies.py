"""Replies to the DPM: one `GoalStateOperationReply` per (host, applied message)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aca_agent.applier import Result
from alcor.schema import goalstateprovisioner_pb2 as gsp
from gsmq import wire
from gsmq.transport import Envelope
from gsmq.wire import MessageType

_ECHOED = (wire.REQUEST_ID, wire.SEQ, wire.VPC_ID, wire.SENT_NS)


def build_reply(results: Iterable[Result]) -> gsp.GoalStateOperationReply:
    """The statuses of one or more hosts' results in one reply (one host for Kafka, the
    hosts of a message on the gRPC fast path); the total time is the largest."""
    reply = gsp.GoalStateOperationReply()
    total = 0
    for result in results:
        total = max(total, result.total_us)
        for s in result.statuses:
            reply.operation_statuses.add(
                resource_id=s.resource_id,
                resource_type=s.resource_type,
                operation_type=s.operation_type,
                operation_status=s.status,
                dataplane_programming_time=s.dataplane_us,
                network_configuration_time=s.config_us,
                state_elapse_time=s.elapse_us,
            )
    reply.message_total_operation_time = total
    return reply


def reply_headers(result: Result, incoming: Mapping[str, str]) -> dict[str, str]:
    """gs-request-id, gs-seq, gs-vpc-id, gs-sent-ns echoed; the replying host, when applied, the type."""
    out = {name: incoming[name] for name in _ECHOED if name in incoming}
    out[wire.HOST_ID] = result.host
    out[wire.APPLIED_NS] = str(result.applied_ns)
    out[wire.MSG_TYPE] = MessageType.REPLY
    return out


def reply_envelope(topic: str, result: Result, incoming: Mapping[str, str]) -> Envelope:
    """The Kafka message carrying `result` (key = host id)."""
    return Envelope(topic, result.host, build_reply([result]).SerializeToString(), reply_headers(result, incoming))
