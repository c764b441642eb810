"""gRPC servicers: they move requests to the engine and replies back, nothing more."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import structlog

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp
from alcor.schema import goalstateprovisioner_pb2_grpc as gsp_grpc
from dpm_server.acks import failed_reply
from dpm_server.engine import Done, Engine
from dpm_server.inputs import Input, InputError
from dpm_server.links import AgentLinks
from dpm_server.paths import Paths
from gsmq.config import is_address
from gsmq.grpc_ops import Handlers
from gsmq.host_ranges import hosts_of
from gsmq.v1 import channel_pb2, channel_pb2_grpc, status_pb2, status_pb2_grpc

log = structlog.get_logger()

RESIZE_EVERY = 1.0  # seconds between two updates of the host-delivery bound (`Provisioner`)
MAX_INPUT_BYTES = 32 << 20  # the default bound on one caller input (--max-input-bytes)
# Batches in flight before new inputs wait to go together (--batches-in-flight): one, as in
# Nagle's algorithm, so that under load a batch holds what arrived during a whole round trip.
BATCHES_IN_FLIGHT = 1
# What the servicers use of a call's context (abort) does not depend on its message types.
Context = grpc.aio.ServicerContext[Any, Any]


class Batcher:
    """Hands inputs to the engine together, so a storm becomes few large messages instead
    of many small ones (like Nagle's algorithm): at once while fewer than `in_flight`
    batches are in flight (no wait when idle), otherwise when one completes, after
    gathering for `window` seconds, or at `size` inputs. Under load a batch holds what
    arrived during the round trip of the ones before it, so it grows with the load. Each
    input of a batch is still answered on its own (`Engine.submit_many`); a batch is in
    flight until all of them are. `lane` names the channel of an input: each lane batches
    apart, with its own `in_flight`."""

    def __init__(self, engine: Engine, window: float, size: int, in_flight: int = BATCHES_IN_FLIGHT,
                 lane: Callable[[Input], str] | None = None) -> None:
        self.engine = engine
        self.window = window
        self.size = size
        self.in_flight = in_flight
        # Inputs answered over gRPC in milliseconds never wait for a batch held by Kafka's round trip.
        self.lane = lane
        self._lanes: dict[str, _Lane] = {}
        self.batches = 0
        self.inputs = 0

    @property
    def queue(self) -> list[tuple[Input, Done]]:
        """The inputs waiting, every lane's."""
        return [item for lane in self._lanes.values() for item in lane.queue]

    def add(self, data: Input, on_done: Done) -> None:
        key = self.lane(data) if self.lane is not None else ""
        lane = self._lanes.get(key) or self._lanes.setdefault(key, _Lane())
        lane.queue.append((data, on_done))
        if len(lane.queue) >= self.size or self.window <= 0 or lane.open < self.in_flight:
            self.flush(key)
        elif lane.timer is None:
            lane.timer = asyncio.get_running_loop().call_later(self.window, self.flush, key)

    def _counted(self, key: str, batch: list[tuple[Input, Done]]) -> list[tuple[Input, Done]]:
        """The batch, its callbacks answering once each and counting down to its end; then
        the lane's queue is handed over if that made room (soon, not from inside the ack tracker)."""
        lane = self._lanes[key]
        left = len(batch)
        lane.open += 1

        def wrap(on_done: Done) -> Done:
            answered = False

            def done(reply: gsp.GoalStateOperationReply) -> None:  # once: a batch that failed answers only the rest
                nonlocal left, answered
                if answered:
                    return
                answered = True
                left -= 1
                if left == 0:
                    lane.open -= 1
                    if lane.queue:
                        asyncio.get_running_loop().call_soon(self._drain, key)
                on_done(reply)

            return done

        return [(data, wrap(on_done)) for data, on_done in batch]

    def _drain(self, key: str) -> None:
        if self._lanes[key].queue and self._lanes[key].open < self.in_flight:
            self.flush(key)

    def flush(self, key: str | None = None) -> None:
        """Send a lane's waiting inputs as one batch (every lane's, each its own batch, if no key)."""
        for name in list(self._lanes) if key is None else [key]:
            lane = self._lanes[name]
            if lane.timer is not None:
                lane.timer.cancel()
                lane.timer = None
            batch, lane.queue = lane.queue, []
            if not batch:
                continue
            self.batches += 1
            self.inputs += len(batch)
            counted = self._counted(name, batch)
            try:
                self.engine.submit_many(counted)
            except Exception as exc:
                log.exception("batch_failed", inputs=len(batch))
                for data, on_done in counted:
                    on_done(failed_reply(data, f"{type(exc).__name__}: {exc}"))


class _Lane:
    """One channel's inputs waiting, its batches not all answered, its gathering timer."""

    def __init__(self) -> None:
        self.queue: list[tuple[Input, Done]] = []
        self.open = 0
        self.timer: asyncio.TimerHandle | None = None


class Budget:
    """At most `limit` units in flight, granted first come, first served; a request larger
    than the whole limit goes alone (when nothing else is in flight)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def _fits(self, units: int) -> bool:
        return self.used == 0 or self.used + units <= self.limit

    async def acquire(self, units: int) -> None:
        if not self._waiters and self._fits(units):
            self.used += units
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((units, granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(units)  # granted, then cancelled before it could run
            raise

    def release(self, units: int) -> None:
        self.used -= units
        self._grant()

    def resize(self, limit: int) -> None:
        """A new limit; the waiters that fit it now are granted."""
        self.limit = limit
        self._grant()

    def _grant(self) -> None:
        """Grant the waiters that fit, in order."""
        while self._waiters and self._fits(self._waiters[0][0]):
            units, granted = self._waiters.popleft()
            if not granted.cancelled():
                self.used += units
                granted.set_result(None)


class Provisioner(gsp_grpc.GoalStateProvisionerServicer):
    """alcor.schema.GoalStateProvisioner on the DPM."""

    def __init__(self, engine: Engine, max_in_flight: int, batch_window: float = 0.0, batch_size: int = 1,
                 max_in_flight_hosts: int = 100_000, batches_in_flight: int = BATCHES_IN_FLIGHT, max_input_bytes: int = MAX_INPUT_BYTES,
                 max_hosts_per_input: int = 1_000_000, lane: Callable[[Input], str] | None = None,
                 in_flight_seconds: float = 0.25, clock: Callable[[], float] = time.monotonic) -> None:
        """`lane`: the channel of an input's messages (`Batcher`); `clock` times the deliveries answered."""
        self.engine = engine
        # an input over either bound is refused whole (INVALID_ARG), and the stream goes on
        self.max_input_bytes = max_input_bytes
        self.max_hosts_per_input = max_hosts_per_input
        self.in_flight = Budget(max_in_flight)  # inputs
        # Host deliveries: an input counts once per host it targets. Bounding inputs alone let
        # a storm in 100-host VPCs queue a million deliveries, minutes of agent work, so hosts
        # at the back looked silent and were retried (Little's law, docs/internals.md).
        # `max_in_flight_hosts` is the least bound; above it the bound follows what the agents
        # deliver (`_follow_deliveries`).
        self.in_flight_hosts = Budget(max_in_flight_hosts)
        self.least_hosts = max_in_flight_hosts
        self.in_flight_seconds = in_flight_seconds
        self.clock = clock
        self._delivered = 0  # host deliveries answered since `_counted_since`
        self._counted_since = self.clock()
        self.batcher = Batcher(engine, batch_window, batch_size, batches_in_flight, lane)
        self.answered: Callable[[float], None] | None = None  # told each input's seconds from received to answered

    async def PushGoalStatesStream(  # noqa: N802 - gRPC method name
        self, request_iterator: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[gsp.GoalStateOperationReply]:
        """One reply per input, in input order, each once every targeted host applied it.
        Inputs arrive as bytes (`register`); one that is not a GoalStateV2, or is over
        `max_input_bytes`, is answered INVALID_ARG and the stream goes on."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[asyncio.Future[gsp.GoalStateOperationReply] | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for raw in request_iterator:
                    try:
                        data = self._parse(raw)
                    except InputError as exc:
                        answered: asyncio.Future[gsp.GoalStateOperationReply] = loop.create_future()
                        answered.set_result(self.engine.unreadable(str(exc)))
                        await queue.put(answered)
                        continue
                    # an input worked in slices counts as one slice: other callers' inputs go on beside it
                    hosts = max(1, min(data.host_count, self.engine.slice_hosts))
                    await self.in_flight.acquire(1)  # backpressure: stop reading the caller's stream
                    try:
                        await self.in_flight_hosts.acquire(hosts)
                    except asyncio.CancelledError:
                        self.in_flight.release(1)
                        raise
                    future: asyncio.Future[gsp.GoalStateOperationReply] = loop.create_future()

                    def done(reply: gsp.GoalStateOperationReply, future: asyncio.Future[gsp.GoalStateOperationReply] = future,
                             hosts: int = hosts, received: float = time.monotonic()) -> None:
                        self.in_flight.release(1)
                        self.in_flight_hosts.release(hosts)
                        self._follow_deliveries(hosts)
                        if self.answered is not None:
                            self.answered(time.monotonic() - received)
                        if not future.done():
                            future.set_result(reply)

                    self.batcher.add(data, done)
                    await queue.put(future)
            finally:
                await queue.put(None)

        reader = asyncio.create_task(read())
        try:
            while (future := await queue.get()) is not None:
                yield await future
            await reader  # surfaces a broken input stream
        finally:
            reader.cancel()

    def _follow_deliveries(self, hosts: int) -> None:
        """Count `hosts` deliveries answered; every RESIZE_EVERY seconds, bound the deliveries
        in flight to what was answered per second times `in_flight_seconds`, and never below
        --max-in-flight-hosts. By Little's law an admitted input then spends about that long in
        flight, when the grown bound holds. Where agents apply a VPC's message once for its
        many hosts (1,000 deliveries, one apply) the bound grows with what they manage; where
        deliveries cost an apply each, the flag's bound holds and the time in flight is its own."""
        self._delivered += hosts
        now = self.clock()
        elapsed = now - self._counted_since
        if elapsed >= RESIZE_EVERY:
            rate = self._delivered / elapsed
            self.in_flight_hosts.resize(max(self.least_hosts, int(rate * self.in_flight_seconds)))
            self._delivered, self._counted_since = 0, now

    def _parse(self, raw: bytes) -> Input:
        if len(raw) > self.max_input_bytes:
            raise InputError(f"input of {len(raw)} bytes, over the {self.max_input_bytes}-byte limit (--max-input-bytes)")
        data = Input.parse(raw)
        if data.host_count > self.max_hosts_per_input:
            raise InputError(f"input listing {data.host_count} hosts, over the limit of {self.max_hosts_per_input} (--max-hosts-per-input)")
        return data

    async def RequestGoalStates(self, request: gsp.HostRequest, context: Context) -> gsp.HostRequestReply:  # noqa: N802
        """AGENT_RESTARTED: publish the host's full state; ON_DEMAND: is the destination routable."""
        reply = gsp.HostRequestReply(format_version=request.format_version)
        for item in request.state_requests:
            if not item.source_ip:
                status = common.INVALID_ARG
            elif item.request_type == common.AGENT_RESTARTED:
                status = common.SUCCESS if self.engine.resync_restarted(item.source_ip) else common.FAILURE
            else:
                status = common.SUCCESS if self.engine.routable(item.source_ip, item.destination_ip) else common.FAILURE
            reply.operation_statuses.add(request_id=item.request_id, operation_status=status)
        return reply

    async def PushNetworkResourceStates(self, request: gs.GoalState, context: Context) -> gsp.GoalStateOperationReply:  # noqa: N802
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "GoalState (V1) is not served: send GoalStateV2 on PushGoalStatesStream")
        raise AssertionError("unreachable")

    async def PushGoalstates(self, request: gsp.NeighborRulesRequest, context: Context) -> gsp.GoalStateOperationReply:  # noqa: N802
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "neighbor rules are sent as GoalStateV2 on PushGoalStatesStream")
        raise AssertionError("unreachable")


SERVICE = "alcor.schema.GoalStateProvisioner"


def register(provisioner: Provisioner, server: grpc.aio.Server | Handlers) -> None:
    """Serve alcor.schema.GoalStateProvisioner as generated, except that PushGoalStatesStream
    takes its inputs as bytes: the engine reads them as `Input`s (grouped host listings),
    and an undecodable one is answered instead of ending the stream."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "PushNetworkResourceStates": grpc.unary_unary_rpc_method_handler(
            provisioner.PushNetworkResourceStates, request_deserializer=gs.GoalState.FromString,
            response_serializer=gsp.GoalStateOperationReply.SerializeToString),
        "PushGoalStatesStream": grpc.stream_stream_rpc_method_handler(
            provisioner.PushGoalStatesStream, request_deserializer=None,
            response_serializer=gsp.GoalStateOperationReply.SerializeToString),
        "RequestGoalStates": grpc.unary_unary_rpc_method_handler(
            provisioner.RequestGoalStates, request_deserializer=gsp.HostRequest.FromString,
            response_serializer=gsp.HostRequestReply.SerializeToString),
        "PushGoalstates": grpc.unary_unary_rpc_method_handler(
            provisioner.PushGoalstates, request_deserializer=gsp.NeighborRulesRequest.FromString,
            response_serializer=gsp.GoalStateOperationReply.SerializeToString),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


class Status(status_pb2_grpc.DpmStatusServiceServicer):
    """gsmq.v1.DpmStatusService: counters and a host's snapshot."""

    def __init__(self, engine: Engine, batcher: Batcher, paths: Paths | None = None) -> None:
        self.engine = engine
        self.batcher = batcher
        self.paths = paths

    async def GetStatus(self, request: status_pb2.StatusRequest, context: Context) -> status_pb2.DpmStatus:  # noqa: N802
        channels = self.paths.counts() if self.paths is not None else {}
        return status_pb2.DpmStatus(strategy=self.engine.strategy, inputs_waiting=len(self.batcher.queue),
                                    batches_sent=self.batcher.batches, path=self.paths.mode if self.paths else "mq",
                                    **self.engine.counts(), **channels)

    async def GetHostSnapshot(self, request: status_pb2.HostId, context: Context) -> gs.GoalStateV2:  # noqa: N802
        return self.engine.host_goal_state(request.host_id)


class Registry(channel_pb2_grpc.AgentRegistryServicer):
    """gsmq.v1.AgentRegistry: agents announce their fast path (docs/internals.md, "Channels per VPC")."""

    def __init__(self, links: AgentLinks, path: str) -> None:
        self.links = links
        self.path = path

    async def Register(self, request: channel_pb2.Registration, context: Context) -> channel_pb2.Registered:  # noqa: N802
        if not is_address(request.address):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"address must be host:port, got {request.address[:100]!r}")
        try:
            hosts = hosts_of(request.hosts)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"hosts: {exc}")
        hosts_reached = self.links.register(request.address, hosts, request.takes_batches, request.stream_per_host)
        return channel_pb2.Registered(hosts=hosts_reached, path=self.path)
