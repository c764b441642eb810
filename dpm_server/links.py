"""The DPM's gRPC channel (docs/internals.md, "Channels per VPC"): one
`GoalStateProvisioner.PushGoalStatesStream` per registered agent process, its hosts
multiplexed by `host_resources`, or one per host when the agent asks for it.

Each message is the Kafka record it stands for: the GoalStateV2 bytes followed by its
headers as `gsmq.v1.ChannelHeaders`; the agent answers each, in order, with its acks
(`gsmq.v1.ChannelAcks`), which go to the same ack tracker as the reply topic's. A link
whose stream fails, or that leaves messages unanswered for `timeout` seconds, is dropped
with its registration: its hosts are served through Kafka (the ack tracker resyncs the
ones whose messages it lost) until the agent registers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import grpc
import structlog

from dpm_server.ackwire import AckFields, fields_of
from gsmq import wire
from gsmq.v1 import channel_pb2

log = structlog.get_logger()
METHOD = "/alcor.schema.GoalStateProvisioner/PushGoalStatesStream"
MAX_MESSAGE_BYTES = 256 << 20  # the agent's fast path takes up to this much (a host's full state)
# A ChannelBatch holds the messages queued while the previous write was in flight, and is
# closed once it reaches either bound (as the agent closes a group of pushed messages): the
# agent answers a request after applying all of it, so a batch stays well inside
# --link-timeout's patience.
BATCH_MESSAGES = 500
BATCH_BYTES = 256 << 10

OnAcks = Callable[[list[AckFields]], None]


class Link:
    """One registration's fast path: a stream for all its hosts, or one per host
    (`per_host`: a simulator standing for single-host agents), on one HTTP/2 connection.
    Each stream's messages are queued in order and answered in order; to an agent that
    takes batches, the messages queued on a stream while its write was in flight go as one
    request. Any stream failing takes the whole link down."""

    def __init__(self, address: str, hosts: frozenset[str], on_acks: OnAcks, on_down: Callable[[Link, str], None],
                 batches: bool = False, per_host: bool = False) -> None:
        self.address = address
        self.hosts = hosts
        self.batches = batches
        self.per_host = per_host
        self.requests = 0  # requests written (a batch is one)
        self.up = True
        self.outstanding = 0  # messages sent and not answered yet
        self.heard = time.monotonic()  # when it last answered (or was opened)
        self.messages = 0
        self.bytes = 0
        self._on_acks = on_acks
        self._on_down = on_down
        self._streams: dict[str, _Stream] = {}  # host ("" for all of them) -> its stream, opened at its first message
        self._channel: grpc.aio.Channel | None = None

    @property
    def streams(self) -> int:
        return len(self._streams)

    def open(self) -> None:
        options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES), ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        self._channel = grpc.aio.insecure_channel(self.address, options=options)

    def send(self, message: bytes, host: str) -> None:
        """Queue a message for `host` (one of `hosts`) on its stream."""
        if not self.outstanding:
            self.heard = time.monotonic()  # its patience counts from the oldest unanswered message
        self.outstanding += 1
        self.messages += 1
        self.bytes += len(message)
        key = host if self.per_host else ""
        stream = self._streams.get(key)
        if stream is None:
            assert self._channel is not None, "send before open"
            stream = self._streams[key] = _Stream(self, key)
            stream.task = asyncio.get_running_loop().create_task(stream.run(self._channel), name=f"link-{self.address}-{key}")
        stream.queue.put_nowait(message)

    def close(self) -> None:
        self.up = False
        for stream in self._streams.values():
            stream.queue.put_nowait(None)
            if stream.task is not None:
                stream.task.cancel()
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(RuntimeError):  # no loop running: the process is ending, and the connection with it
                asyncio.get_running_loop().create_task(channel.close())

    def _answered(self, messages: int, raw: bytes) -> None:
        self.outstanding -= messages
        self.heard = time.monotonic()
        acks = [fields_of(ack) for ack in channel_pb2.ChannelAcks.FromString(raw).channel_acks]
        if acks:
            self._on_acks(acks)


class _Stream:
    """One PushGoalStatesStream of a link."""

    def __init__(self, link: Link, host: str) -> None:
        self.link = link
        self.host = host
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.written: deque[int] = deque()  # messages in each request written and not answered yet, in order
        self.task: asyncio.Task[None] | None = None

    async def _requests(self) -> Any:
        link = self.link
        while (message := await self.queue.get()) is not None:
            batch, size = [message], len(message)
            while link.batches and len(batch) < BATCH_MESSAGES and size < BATCH_BYTES and not self.queue.empty():
                more = self.queue.get_nowait()
                if more is None:
                    return  # closed: the link is down, its unanswered messages are the ack tracker's
                batch.append(more)
                size += len(more)
            self.written.append(len(batch))
            link.requests += 1
            yield batch[0] if len(batch) == 1 else wire.channel_batch(batch)

    async def run(self, channel: grpc.aio.Channel) -> None:
        why = "the agent ended the stream"
        call: Any = channel.stream_stream(METHOD, request_serializer=None, response_deserializer=None)(self._requests())
        try:
            async for raw in call:
                if not self.written:
                    why = "the agent answered more requests than it was sent"
                    break
                self.link._answered(self.written.popleft(), raw)
        except grpc.RpcError as exc:
            why = f"{exc.code().name}: {exc.details()}"
        except asyncio.CancelledError:
            why = "closed"
        except Exception as exc:  # noqa: BLE001 - an undecodable answer: the agent is not what it registered as
            why = f"{type(exc).__name__}: {exc}"
        finally:
            call.cancel()
        self.link._on_down(self.link, why if not self.host else f"host {self.host}'s stream: {why}")


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

    def register(self, address: str, hosts: Iterable[str], batches: bool = False, per_host: bool = False) -> int:
        """Reach `hosts` through `address` from now on (a host named by another link moves;
        `batches`: the agent takes ChannelBatch requests; `per_host`: a stream per host); a
        registration repeated while its link is up changes nothing. Returns the host count."""
        named = frozenset(hosts)
        link = self.links.get(address)
        self.registrations += 1
        if link is not None and link.up and link.hosts == named and (link.batches, link.per_host) == (batches, per_host):
            return len(named)
        if link is not None:
            self._forget(link)
        link = self.links[address] = Link(address, named, self.on_acks, self._down, batches, per_host)
        for host in named:
            self.by_host[host] = link
        link.open()
        self.changed += 1
        log.info("agent_registered", address=address, hosts=len(named), batches=batches, stream_per_host=per_host)
        return len(named)

    def __len__(self) -> int:
        return len(self.links)

    @property
    def streams(self) -> int:
        """Streams open over every link."""
        return sum(link.streams for link in self.links.values())

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
