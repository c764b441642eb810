"""The DPM's link (`dpm_server.links.Link`) against an agent's fast path (`aca_agent.status.
FastPath`) over real gRPC on loopback: the messages queued while a write is in flight go as
one ChannelBatch to an agent that takes batches, one request each to one that does not;
every message reaches the agent once, in order, and every request is answered once."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import grpc
import pytest

from aca_agent.status import FastPath, Pushed, add_fast_path
from alcor.schema import goalstate_pb2 as gs
from dpm_server.links import BATCH_BYTES, METHOD, Link
from gsmq import wire
from gsmq.v1 import ack_pb2, channel_pb2


def _message(n: int) -> bytes:
    return wire.channel_message(gs.GoalStateV2(format_version=n).SerializeToString(), {wire.HOST_ID: f"10.0.0.{n}", wire.SEQ: "1"})


async def _serve(pushed: Pushed) -> tuple[grpc.aio.Server, int, FastPath]:
    fast = FastPath(applier=None, lock=threading.Lock())  # type: ignore[arg-type]  # only pushed messages here
    fast.pushed = pushed
    server = grpc.aio.server()
    add_fast_path(fast, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port, fast


def _acked(group: list[tuple[bytes, dict[str, str]]]) -> list[ack_pb2.Ack]:
    return [ack_pb2.Ack(host_id=headers[wire.HOST_ID]) for _, headers in group]


async def _run(sends: list[tuple[bytes, str]], pushed: Pushed, batches: bool = True,
               per_host: bool = False) -> tuple[list[str], Link]:
    """Send (message, host) pairs on a link before it writes anything; wait until all are
    answered. Returns the hosts acked and the link."""
    server, port, _ = await _serve(pushed)
    acked: list[str] = []
    down: list[str] = []
    hosts = frozenset(host for _, host in sends)
    link = Link(f"127.0.0.1:{port}", hosts, lambda acks: acked.extend(a.host_id for a in acks),
                lambda _, why: down.append(why), batches, per_host)
    try:
        link.open()
        for message, host in sends:
            link.send(message, host)
        for _ in range(1000):  # until answered (bounded: a hang fails below, not here)
            if not link.outstanding or down:
                break
            await asyncio.sleep(0.01)
        assert link.outstanding == 0 and not down, down
    finally:
        link.close()
        await server.stop(None)
    return acked, link


async def _groups(batches: bool, messages: list[bytes]) -> tuple[list[list[bytes]], list[str], Link]:
    """`_run` on one stream; also returns the groups the agent applied."""
    applied: list[list[bytes]] = []

    def pushed(group: list[tuple[bytes, dict[str, str]]]) -> list[ack_pb2.Ack]:
        applied.append([raw for raw, _ in group])
        return _acked(group)

    acked, link = await _run([(m, "10.0.0.1") for m in messages], pushed, batches)
    return applied, acked, link


@pytest.mark.parametrize("batches", [True, False])
async def test_every_message_is_applied_once_in_order_and_every_request_answered(batches: bool) -> None:
    messages = [_message(n) for n in range(1, 8)]
    applied, acked, link = await _groups(batches, messages)
    assert [m for group in applied for m in group] == messages
    assert acked == [f"10.0.0.{n}" for n in range(1, 8)]
    # Sent before the link wrote anything: one batch to an agent that takes them, a request each otherwise.
    assert link.requests == (1 if batches else 7)
    if batches:
        assert applied == [messages]


async def test_a_batch_stops_at_its_byte_bound_and_the_rest_follows_in_order() -> None:
    big = wire.channel_message(b"", {wire.HOST_ID: "10.0.0.1", wire.SEQ: "1", "pad": "x" * (BATCH_BYTES // 3)})
    messages = [big, big, big, _message(2), _message(3)]
    applied, acked, link = await _groups(True, messages)
    assert [m for group in applied for m in group] == messages
    assert link.requests == 2  # the third of a third of the bound reaches it and closes the batch
    assert len(acked) == 5


async def test_a_link_with_a_stream_per_host_opens_one_per_host_and_keeps_each_hosts_order() -> None:
    applied: list[tuple[str, str]] = []

    def pushed(group: list[tuple[bytes, dict[str, str]]]) -> list[ack_pb2.Ack]:
        applied.extend((headers[wire.HOST_ID], headers[wire.SEQ]) for _, headers in group)
        return _acked(group)

    hosts = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    sends = [(wire.channel_message(b"", {wire.HOST_ID: host, wire.SEQ: str(seq)}), host) for seq in range(1, 5) for host in hosts]
    acked, link = await _run(sends, pushed, per_host=True)
    assert link.streams == 3
    for host in hosts:
        assert [seq for h, seq in applied if h == host] == ["1", "2", "3", "4"]
    assert sorted(acked) == sorted(hosts * 4)


async def test_the_agent_answers_each_hosts_acks_on_the_stream_that_carried_its_messages() -> None:
    """Two streams' requests applied together; each gets back only its host's acks."""
    fast: FastPath | None = None
    first = True

    def pushed(group: list[tuple[bytes, dict[str, str]]]) -> list[ack_pb2.Ack]:
        nonlocal first
        if first:  # hold the first group until both streams' other requests wait behind it (bounded)
            first = False
            for _ in range(500):
                if fast is not None and fast._inbox.qsize() >= 8:
                    break
                time.sleep(0.01)
        return _acked(group)

    server, port, fast = await _serve(pushed)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            push: Any = channel.stream_stream(METHOD, request_serializer=None, response_deserializer=None)

            async def stream(host: str) -> list[str]:
                messages = [wire.channel_message(b"", {wire.HOST_ID: host, wire.SEQ: str(n)}) for n in range(1, 6)]
                answers = [channel_pb2.ChannelAcks.FromString(raw) async for raw in push(iter([wire.channel_batch(messages), *messages]))]
                assert len(answers) == 1 + len(messages)  # one answer per request
                return [ack.host_id for answer in answers for ack in answer.channel_acks]

            a, b = await asyncio.gather(stream("10.0.0.1"), stream("10.0.0.2"))
    finally:
        await server.stop(None)
    assert fast.groups < 12  # some requests of the two streams were applied together
    assert sorted(a) == ["10.0.0.1"] * 10
    assert sorted(b) == ["10.0.0.2"] * 10


async def test_an_undecodable_request_ends_its_own_stream_only() -> None:
    server, port, _ = await _serve(_acked)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            push: Any = channel.stream_stream(METHOD, request_serializer=None, response_deserializer=None)
            good = [wire.channel_message(b"", {wire.HOST_ID: "10.0.0.1", wire.SEQ: str(n)}) for n in range(1, 4)]
            bad_call = push(iter([b"\xff\xff\xff"]))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in bad_call:
                    pass
            answers = [raw async for raw in push(iter(good))]
    finally:
        await server.stop(None)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(answers) == 3
