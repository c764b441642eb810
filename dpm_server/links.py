"""The DPM's gRPC channel (docs/internals.md, "Channels per VPC"): one
`GoalStateProvisioner.PushGoalStatesStream` per registered agent process, its hosts
multiplexed by `host_resources`.

Each message is the Kafka record it stands for: the GoalStateV2 bytes followed by its
headers as `gsmq.v1.ChannelHeaders`; the agent answers each, in order, with its acks
(`gsmq.v1.ChannelAcks`), which go to the same ack tracker as the reply topic's. A link
whose stream fails, or that leaves messages unanswered for `timeout` seconds, is dropped
with its registration: its hosts are served through Kafka (the ack tracker resyncs the
ones whose messages it lost) until the agent registers again.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import grpc
import structlog

from gsmq import wire
from gsmq.v1 import ack_pb2, channel_pb2

log = structlog.get_logger()
METHOD = "/alcor.schema.GoalStateProvisioner/PushGoalStatesStream"
MAX_MESSAGE_BYTES = 256 << 20  # the agent's fast path takes up to this much (a host's full state)
# A ChannelBatch holds the messages queued while the previous write was in flight, and is
# closed once it reaches either bound (as the agent closes a group of pushed messages): the
# agent answers a request after applying all of it, so a batch stays well inside
# --link-timeout's patience.
BATCH_MESSAGES = 500
BATCH_BYTES = 256 << 10

OnAcks = Callable[[list[ack_pb2.Ack]], None]


class Link:
    """One agent process's stream: messages queued in order, answered in order; to an agent
    that takes batches, the messages queued while a write was in flight go as one request."""

    def __init__(self, address: str, hosts: frozenset[str], on_acks: OnAcks, on_down: Callable[[Link, str], None],
                 batches: bool = False) -> None:
        self.address = address
        self.hosts = hosts
        self.batches = batches
        self.requests = 0  # requests written (a batch is one)
        self.up = True
        self.outstanding = 0  # messages sent and not answered yet
        self.heard = time.monotonic()  # when it last answered (or was opened)
        self.messages = 0
        self.bytes = 0
        self._on_acks = on_acks
        self._on_down = on_down
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._written: deque[int] = deque()  # messages in each request written and not answered yet, in order
        self._task: asyncio.Task[None] | None = None

    def open(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"link-{self.address}")

    def send(self, message: bytes) -> None:
        if not self.outstanding:
            self.heard = time.monotonic()  # its patience counts from the oldest unanswered message
        self.outstanding += 1
        self.messages += 1
        self.bytes += len(message)
        self._queue.put_nowait(message)

    def close(self) -> None:
        self.up = False
        self._queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()

    async def _requests(self) -> Any:
        while (message := await self._queue.get()) is not None:
            batch, size = [message], len(message)
            while self.batches and len(batch) < BATCH_MESSAGES and size < BATCH_BYTES and not self._queue.empty():
                more = self._queue.get_nowait()
                if more is None:
                    return  # closed: the link is down, its unanswered messages are the ack tracker's
                batch.append(more)
                size += len(more)
            self._written.append(len(batch))
            self.requests += 1
            yield batch[0] if len(batch) == 1 else wire.channel_batch(batch)

    async def _run(self) -> None:
        why = "the agent ended the stream"
        options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES), ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        async with grpc.aio.insecure_channel(self.address, options=options) as channel:
            call: Any = channel.stream_stream(METHOD, request_serializer=None, response_deserializer=None)(self._requests())
            try:
                async for raw in call:
                    if not self._written:
                        why = "the agent answered more requests than it was sent"
                        break
                    self.outstanding -= self._written.popleft()
                    self.heard = time.monotonic()
                    acks = list(channel_pb2.ChannelAcks.FromString(raw).channel_acks)
                    if acks:
                        self._on_acks(acks)
            except grpc.RpcError as exc:
                why = f"{exc.code().name}: {exc.details()}"
            except asyncio.CancelledError:
                why = "closed"
            except Exception as exc:  # noqa: BLE001 - an undecodable answer: the agent is not what it registered as
                why = f"{type(exc).__name__}: {exc}"
            finally:
                call.cancel()
        self._on_down(self, why)


class AgentLinks:
    """The registered fast paths: address -> link, host -> link."""

    def __init__(self, on_acks: OnAcks, timeout: float) -> None:
        self.on_acks = on_acks
        self.timeout = timeout  # seconds a link may leave a message unanswered
        self.links: dict[str, Link] = {}
        self.by_host: dict[str, Link] = {}
        self.registrations = 0
        self.dropped = 0
        self.changed = 0  # bumped when a link comes or goes

    def register(self, address: str, hosts: Iterable[str], batches: bool = False) -> int:
        """Reach `hosts` through `address` from now on (a host named by another link moves;
        `batches`: the agent takes ChannelBatch requests); a registration repeated while its
        link is up changes nothing. Returns the host count."""
        named = frozenset(hosts)
        link = self.links.get(address)
        self.registrations += 1
        if link is not None and link.up and link.hosts == named and link.batches == batches:
            return len(named)
        if link is not None:
            self._forget(link)
        link = self.links[address] = Link(address, named, self.on_acks, self._down, batches)
        for host in named:
            self.by_host[host] = link
        link.open()
        self.changed += 1
        log.info("agent_registered", address=address, hosts=len(named), batches=batches)
        return len(named)

    def __len__(self) -> int:
        return len(self.links)

    def of(self, host: str) -> Link | None:
        """The host's link while it is up."""
        link = self.by_host.get(host)
        return link if link is not None and link.up else None

    def check(self, now: float | None = None) -> None:
        """Drop the links that left a message unanswered for `timeout` seconds."""
        now = time.monotonic() if now is None else now
        for link in list(self.links.values()):
            if link.outstanding and now - link.heard > self.timeout:
                self._down(link, f"{link.outstanding} messages unanswered for {self.timeout:g} s")

    def close(self) -> None:
        for link in list(self.links.values()):
            self._forget(link)

    def _down(self, link: Link, why: str) -> None:
        if self.links.get(link.address) is not link:
            return  # replaced or dropped already
        self.dropped += 1
        log.warning("agent_link_down", address=link.address, hosts=len(link.hosts), unanswered=link.outstanding, why=why,
                    then="its hosts are served through Kafka until it registers again")
        self._forget(link)

    def _forget(self, link: Link) -> None:
        link.close()
        if self.links.get(link.address) is link:
            del self.links[link.address]
        for host in link.hosts:
            if self.by_host.get(host) is link:
                del self.by_host[host]
        self.changed += 1
