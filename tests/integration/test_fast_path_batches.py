"""The DPM's link (`dpm_server.links.Link`) against an agent's fast path (`aca_agent.status.
FastPath`) over real gRPC on loopback: the messages queued while a write is in flight go as
one ChannelBatch to an agent that takes batches, one request each to one that does not;
every message reaches the agent once, in order, and every request is answered once."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest

from aca_agent.status import FastPath, add_fast_path
from alcor.schema import goalstate_pb2 as gs
from dpm_server.links import BATCH_BYTES, Link
from gsmq import wire
from gsmq.v1 import ack_pb2


def _message(n: int) -> bytes:
    return wire.channel_message(gs.GoalStateV2(format_version=n).SerializeToString(), {wire.HOST_ID: f"10.0.0.{n}", wire.SEQ: "1"})


async def _run(batches: bool, messages: list[bytes]) -> tuple[list[list[bytes]], list[str], Link]:
    """Send `messages` on a link before it writes anything; wait until all are answered.
    Returns the groups the agent applied, the hosts acked, the link."""
    applied: list[list[bytes]] = []

    def pushed(group: list[tuple[bytes, dict[str, str]]]) -> list[ack_pb2.Ack]:
        applied.append([raw for raw, _ in group])
        return [ack_pb2.Ack(host_id=headers[wire.HOST_ID]) for _, headers in group]

    fast = FastPath(applier=None, lock=threading.Lock())  # type: ignore[arg-type]  # only pushed messages here
    fast.pushed = pushed
    server = grpc.aio.server()
    add_fast_path(fast, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    acked: list[str] = []
    down: list[str] = []
    link = Link(f"127.0.0.1:{port}", frozenset(), lambda acks: acked.extend(a.host_id for a in acks),
                lambda _, why: down.append(why), batches)
    try:
        link.open()
        for message in messages:
            link.send(message)
        for _ in range(1000):  # until answered (bounded: a hang fails below, not here)
            if not link.outstanding or down:
                break
            await asyncio.sleep(0.01)
        assert link.outstanding == 0 and not down, down
    finally:
        link.close()
        await server.stop(None)
    return applied, acked, link


@pytest.mark.parametrize("batches", [True, False])
async def test_every_message_is_applied_once_in_order_and_every_request_answered(batches: bool) -> None:
    messages = [_message(n) for n in range(1, 8)]
    applied, acked, link = await _run(batches, messages)
    assert [m for group in applied for m in group] == messages
    assert acked == [f"10.0.0.{n}" for n in range(1, 8)]
    # Sent before the link wrote anything: one batch to an agent that takes them, a request each otherwise.
    assert link.requests == (1 if batches else 7)
    if batches:
        assert applied == [messages]


async def test_a_batch_stops_at_its_byte_bound_and_the_rest_follows_in_order() -> None:
    big = wire.channel_message(b"", {wire.HOST_ID: "10.0.0.1", wire.SEQ: "1", "pad": "x" * (BATCH_BYTES // 3)})
    messages = [big, big, big, _message(2), _message(3)]
    applied, acked, link = await _run(True, messages)
    assert [m for group in applied for m in group] == messages
    assert link.requests == 2  # the third of a third of the bound reaches it and closes the batch
    assert len(acked) == 5
