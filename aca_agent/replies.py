"""The gRPC fast path's replies: one `GoalStateOperationReply` per pushed message (Kafka carries acks: aca_agent.acks)."""

from __future__ import annotations

from collections.abc import Iterable

from aca_agent.applier import Result
from alcor.schema import goalstateprovisioner_pb2 as gsp


def build_reply(results: Iterable[Result]) -> gsp.GoalStateOperationReply:
    """The statuses of the hosts' results of one message in one reply; the total time is the largest."""
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
