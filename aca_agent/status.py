"""The agent's gRPC servers: `gsmq.v1.AgentStatusService` (counters, a host's tables)
and the fast path `alcor.schema.GoalStateProvisioner.PushGoalStatesStream` (the gRPC
baseline the bench compares Kafka with: apply each GoalStateV2, stream back its reply)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import grpc
import psutil

from aca_agent.applier import Applier
from aca_agent.replies import build_reply
from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp
from alcor.schema import goalstateprovisioner_pb2_grpc as gsp_grpc
from gsmq.v1 import status_pb2, status_pb2_grpc

# What the servicers use of a call's context (abort) does not depend on its message types.
Context = grpc.aio.ServicerContext[Any, Any]


class AgentStatus(status_pb2_grpc.AgentStatusServiceServicer):
    """Counters and per-host tables, read under the agent's lock."""

    def __init__(self, applier: Applier, lock: threading.Lock) -> None:
        self.applier = applier
        self.lock = lock
        self._process = psutil.Process()

    def snapshot(self) -> status_pb2.AgentStatus:
        applier, c = self.applier, self.applier.counters
        with self.lock:
            return status_pb2.AgentStatus(
                hosts=len(applier.hosts),
                messages_applied=c.messages_applied,
                messages_other_host=c.messages_other_host,
                dead_lettered=c.dead_lettered,
                duplicates=c.duplicates,
                out_of_order=c.out_of_order,
                pending=applier.pending_count(),
                resyncs=c.resyncs,
                flows=applier.dataplane.flows(),
                followed_vpcs=sorted(applier.followers),
                bytes_consumed=c.bytes_consumed,
                rss_bytes=self._process.memory_info().rss,
                replies_sent=c.replies_sent,
                resources=applier.dataplane.resources(),
            )

    async def GetStatus(self, request: status_pb2.StatusRequest, context: Context) -> status_pb2.AgentStatus:  # noqa: N802
        return self.snapshot()

    async def GetHostState(self, request: status_pb2.HostId, context: Context) -> gs.GoalStateV2:  # noqa: N802
        if request.host_id not in self.applier.hosts:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"host {request.host_id} is not served here")
        with self.lock:
            return self.applier.host_state(request.host_id)


class FastPath(gsp_grpc.GoalStateProvisionerServicer):
    """gRPC fast path: each GoalStateV2 is applied for the served hosts of its
    host_resources (inline, under the lock) and answered with one reply, in order."""

    def __init__(self, applier: Applier, lock: threading.Lock) -> None:
        self.applier = applier
        self.lock = lock

    async def PushGoalStatesStream(  # noqa: N802
        self, request_iterator: AsyncIterator[gs.GoalStateV2], context: Context
    ) -> AsyncIterator[gsp.GoalStateOperationReply]:
        async for goal in request_iterator:
            with self.lock:
                results = self.applier.apply_direct(goal)
            yield build_reply(results)


async def start_servers(
    applier: Applier, lock: threading.Lock, status_port: int, grpc_port: int, host: str = "0.0.0.0"
) -> list[grpc.aio.Server]:
    """Start the status service and/or the fast path (port 0 = off; the same port = one server)."""
    wanted: dict[int, list[str]] = {}
    if status_port:
        wanted.setdefault(status_port, []).append("status")
    if grpc_port:
        wanted.setdefault(grpc_port, []).append("fastpath")
    servers = []
    for port, services in wanted.items():
        server = grpc.aio.server()
        if "status" in services:
            status_pb2_grpc.add_AgentStatusServiceServicer_to_server(AgentStatus(applier, lock), server)
        if "fastpath" in services:
            gsp_grpc.add_GoalStateProvisionerServicer_to_server(FastPath(applier, lock), server)
        if server.add_insecure_port(f"{host}:{port}") == 0:
            raise OSError(f"cannot listen on {host}:{port}")
        await server.start()
        servers.append(server)
    return servers
