"""The agent's gRPC servers: `gsmq.v1.AgentStatusService` (counters, a host's tables)
and the fast path `alcor.schema.GoalStateProvisioner.PushGoalStatesStream`: the DPM's
gRPC channel (docs/internals.md, "Channels per VPC"), and plain GoalStateV2s applied
directly with a reply each."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import psutil
from google.protobuf.message import DecodeError

from aca_agent.applier import Applier
from aca_agent.replies import build_reply
from alcor.schema import goalstate_pb2 as gs
from gsmq import wire
from gsmq.grpc_ops import Health, add_operations
from gsmq.v1 import ack_pb2, channel_pb2, status_pb2, status_pb2_grpc

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
                bytes_pushed=c.bytes_pushed,
                stale_messages=c.stale_messages,
                bundle_states_known=c.bundle_states_known,
            )

    async def GetStatus(self, request: status_pb2.StatusRequest, context: Context) -> status_pb2.AgentStatus:  # noqa: N802
        return self.snapshot()

    async def GetHostState(self, request: status_pb2.HostId, context: Context) -> gs.GoalStateV2:  # noqa: N802
        if request.host_id not in self.applier.hosts:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"host {request.host_id} is not served here")
        with self.lock:
            return self.applier.host_state(request.host_id)


Pushed = Callable[[list[tuple[bytes, dict[str, str]]]], list[ack_pb2.Ack]]
MAX_PUSHED_BATCH = 1000  # most pushed messages applied together (one lock, one set of acks) ...
MAX_PUSHED_BYTES = 1 << 20  # ... and most bytes: answers keep coming while large states are applied


class FastPath:
    """alcor.schema.GoalStateProvisioner.PushGoalStatesStream, each stream answered in order.

    A request with `gsmq.v1.ChannelHeaders`, or a `ChannelBatch` of such messages, comes
    from the DPM's gRPC channel: it is applied by `pushed` (the consume loop's rules) and
    answered once with acks (`ChannelAcks`). The requests of every stream go to one queue:
    those that arrived while earlier ones were applied are applied together, as the consume
    loop applies a poll batch, whichever stream they came on (the DPM may open one per
    host). Each ack goes back on the stream that carried its host's messages, in the last
    answer of that stream in the group; the stream's other answers carry none. A plain
    GoalStateV2 (the bench's direct baseline, or an Alcor DPM) is applied for the served
    hosts of its host_resources and answered with a status per resource."""

    def __init__(self, applier: Applier, lock: threading.Lock) -> None:
        self.applier = applier
        self.lock = lock
        self.pushed: Pushed | None = None  # set once the consume loop exists
        self.groups = 0  # groups of pushed messages applied
        self._inbox: asyncio.Queue[tuple[bytes | None, _Answers]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    async def PushGoalStatesStream(  # noqa: N802
        self, request_iterator: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[bytes]:
        answers: _Answers = asyncio.Queue()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="fast-path")

        async def read() -> None:
            try:
                async for raw in request_iterator:
                    self._inbox.put_nowait((raw, answers))
            finally:
                self._inbox.put_nowait((None, answers))  # after its last request: the stream's end

        reader = asyncio.create_task(read())
        try:
            while (answer := await answers.get()) is not None:
                if isinstance(answer, _Refused):
                    await context.abort(answer.code, answer.why)
                yield answer
            await reader
        finally:
            reader.cancel()

    async def _work(self) -> None:
        while True:
            first = await self._inbox.get()
            group, size = [first], len(first[0] or b"")
            while len(group) < MAX_PUSHED_BATCH and size < MAX_PUSHED_BYTES and not self._inbox.empty():
                group.append(more := self._inbox.get_nowait())
                size += len(more[0] or b"")
            try:
                await self._answer(group)
            except Exception as exc:  # noqa: BLE001 - the group's streams end; the agent goes on serving
                for _, answers in group:
                    answers.put_nowait(_Refused(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}"))

    async def _answer(self, group: list[tuple[bytes | None, _Answers]]) -> None:
        """Answer each request of `group`, in order: channel messages (a ChannelBatch's too)
        applied together, plain GoalStateV2s alone; an undecodable request ends its stream."""
        pushed: list[tuple[bytes, dict[str, str]]] = []
        carried: list[tuple[_Answers, int]] = []  # (stream, messages) of each request in `pushed`
        for raw, answers in group:
            if raw is None:
                await self._apply(pushed, carried)
                pushed, carried = [], []
                answers.put_nowait(None)
                continue
            try:
                messages = wire.channel_messages(raw)
                goal = None if messages else gs.GoalStateV2.FromString(raw)
            except DecodeError as exc:
                answers.put_nowait(_Refused(grpc.StatusCode.INVALID_ARGUMENT, f"undecodable GoalStateV2: {exc}"))
                continue
            if goal is None:
                pushed += messages
                carried.append((answers, len(messages)))
                continue
            await self._apply(pushed, carried)
            pushed, carried = [], []
            with self.lock:
                results = self.applier.apply_direct(goal)
            answers.put_nowait(build_reply(results).SerializeToString())
        await self._apply(pushed, carried)

    async def _apply(self, pushed: list[tuple[bytes, dict[str, str]]], carried: list[tuple[_Answers, int]]) -> None:
        """Apply pushed messages together; answer each request they came in, every ack in the
        last answer of the stream that carried its host (of the group's last stream if none did)."""
        if not carried:
            return
        apply = self.pushed
        if apply is None:
            for answers, _ in carried:
                answers.put_nowait(_Refused(grpc.StatusCode.UNAVAILABLE, "the agent is starting: not consuming yet"))
            return
        acks = await asyncio.to_thread(apply, pushed)
        self.groups += 1
        stream_of: dict[str, _Answers] = {}
        at = 0
        for answers, count in carried:
            for _, headers in pushed[at:at + count]:
                stream_of[headers.get(wire.HOST_ID, "")] = answers
            at += count
        last = carried[-1][0]
        routed: dict[int, list[ack_pb2.Ack]] = {}
        for ack in acks:
            routed.setdefault(id(stream_of.get(ack.host_id, last)), []).append(ack)
        # from the group's end, a stream's first request met (its last one) takes its acks
        answered = [(answers, routed.pop(id(answers), None)) for answers, _ in reversed(carried)]
        for answers, mine in reversed(answered):
            answers.put_nowait(channel_pb2.ChannelAcks(channel_acks=mine).SerializeToString() if mine else EMPTY_ANSWER)


class _Refused:
    """An answer that ends its stream with a gRPC status."""

    def __init__(self, code: grpc.StatusCode, why: str) -> None:
        self.code = code
        self.why = why


_Answers = asyncio.Queue[bytes | _Refused | None]  # a stream's answers, in order; None: it ended


EMPTY_ANSWER = b""  # an answer carrying no ack: its stream's last answer in the group carries them


def add_fast_path(fast_path: FastPath, server: grpc.aio.Server) -> None:
    """Serve PushGoalStatesStream on bytes (`FastPath` reads the headers beside the GoalStateV2)."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "PushGoalStatesStream": grpc.stream_stream_rpc_method_handler(
            fast_path.PushGoalStatesStream, request_deserializer=None, response_serializer=None),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


SERVICE = "alcor.schema.GoalStateProvisioner"
MAX_REQUEST_BYTES = 256 << 20  # the largest request the fast path takes (a host's full state)


async def start_servers(
    applier: Applier, lock: threading.Lock, status_port: int, grpc_port: int, host: str = "127.0.0.1",
    fast_path: FastPath | None = None,
) -> tuple[list[grpc.aio.Server], list[Health]]:
    """Start the status service and/or the fast path (port 0 = off; the same port = one
    server), each server with health (NOT_SERVING until the agent is ready) and reflection."""
    wanted: dict[int, list[str]] = {}
    if status_port:
        wanted.setdefault(status_port, []).append("status")
    if grpc_port:
        wanted.setdefault(grpc_port, []).append("fastpath")
    servers, healths = [], []
    for port, services in wanted.items():
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_REQUEST_BYTES)])
        names = []
        if "status" in services:
            status_pb2_grpc.add_AgentStatusServiceServicer_to_server(AgentStatus(applier, lock), server)
            names.append(status_pb2.DESCRIPTOR.services_by_name["AgentStatusService"].full_name)
        if "fastpath" in services:
            add_fast_path(fast_path or FastPath(applier, lock), server)
            names.append(SERVICE)
        checker = add_operations(server, names)
        if server.add_insecure_port(f"{host}:{port}") == 0:
            raise OSError(f"cannot listen on {host}:{port}")
        await checker.start()
        await server.start()
        servers.append(server)
        healths.append(checker)
    return servers, healths
