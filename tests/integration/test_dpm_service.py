"""The DPM in-process through the real broker, with a tiny fake ACA (a plain consumer and
producer) that replies for the hosts it serves: caller replies, silent hosts, resync,
on-demand requests, and what each strategy publishes where."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp
from alcor.schema import goalstateprovisioner_pb2_grpc as gsp_grpc
from dpm_server.main import parse_config, serve
from dpm_server.testing import Item, ack, dhcp, goal, keys, neighbor, port, port_goal, subnet, subnet_goal
from gsmq import wire
from gsmq.broker import free_port
from gsmq.kafka import KafkaSettings
from gsmq.partition import partition_for
from gsmq.topics import Topics
from gsmq.transport import Envelope
from gsmq.v1 import ack_pb2, channel_pb2, channel_pb2_grpc, status_pb2, status_pb2_grpc

A, B, C = "192.168.5.1", "192.168.5.2", "192.168.5.3"
PARTS = {"unicast": 4, "multicast": 4, "reply": 2}


@dataclass
class Seen:
    """A goal-state message as the fake ACA received it."""

    topic: str
    partition: int
    key: str
    headers: dict[str, str]
    goal: gs.GoalStateV2


class FakeAca(threading.Thread):
    """Replies for `hosts` to every goal state meant for them: unicast by key, multicast for
    the VPCs where they hold ports. Replies of `held` hosts wait for `release`."""

    def __init__(self, kafka: KafkaSettings, topics: Topics, hosts: set[str], held: set[str] | None = None) -> None:
        super().__init__(daemon=True, name="fake-aca")
        self.topics, self.hosts, self.held = topics, hosts, set(held or ())
        self.consumer = Consumer(kafka.consumer(f"fake-aca-{uuid.uuid4().hex[:6]}"))
        self.producer = Producer(kafka.producer())
        self.received: list[Seen] = []
        self.ports: dict[str, dict[str, str]] = {host: {} for host in hosts}  # host -> {port: vpc}
        self.waiting: list[Envelope] = []
        self.lock = threading.Lock()
        self.halt = threading.Event()

    def run(self) -> None:
        assigned = {self.topics.unicast, self.topics.multicast}
        self.consumer.assign([TopicPartition(t, p, 0) for t, n in ((self.topics.unicast, PARTS["unicast"]),
                                                                    (self.topics.multicast, PARTS["multicast"])) for p in range(n)])
        next_lookup = 0.0
        while not self.halt.is_set():
            if time.monotonic() > next_lookup:  # topic-per-host: read each host's topic once it exists
                existing = self.consumer.list_topics(timeout=5).topics
                new = [self.topics.host(x) for x in self.hosts if self.topics.host(x) in existing and self.topics.host(x) not in assigned]
                if new:
                    self.consumer.incremental_assign([TopicPartition(t, 0, 0) for t in new])
                    assigned.update(new)
                next_lookup = time.monotonic() + 0.3
            for msg in self.consumer.consume(500, 0.1):
                if msg.error() is None:
                    raw = msg.headers() or []
                    pairs = list(raw.items()) if isinstance(raw, dict) else raw
                    headers = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in pairs}
                    self.handle(str(msg.topic()), int(msg.partition() or 0), (msg.key() or b"").decode(), headers, msg.value() or b"")
            self.producer.poll(0)
        self.producer.flush(5)
        self.consumer.close()

    def handle(self, topic: str, partition: int, key: str, headers: dict[str, str], value: bytes) -> None:
        if headers.get(wire.MSG_TYPE) != "GoalStateV2":
            return
        message = gs.GoalStateV2.FromString(value)
        with self.lock:
            self.received.append(Seen(topic, partition, key, headers, message))
        multicast = topic == self.topics.multicast
        if multicast:
            targets = [x for x in self.hosts if key in self.ports[x].values()]
        else:
            targets = [key] if key in self.hosts else []
            for rid, state in message.port_states.items():
                if key in self.hosts and state.operation_type == common.DELETE:
                    self.ports[key].pop(rid, None)
                elif key in self.hosts:
                    self.ports[key][rid] = state.configuration.vpc_id
        for host in targets:
            reply = ack(message, headers, host, self.topics.reply, multicast=multicast)
            with self.lock:
                if host in self.held:
                    self.waiting.append(reply)
                    continue
            self.send(reply)

    def send(self, reply: Envelope) -> None:
        self.producer.produce(reply.topic, reply.value, reply.key.encode(), headers=list(reply.headers.items()))

    def release(self, host: str) -> None:
        """Send the replies held for `host`, and from now on reply at once."""
        with self.lock:
            self.held.discard(host)
            mine = [r for r in self.waiting if r.key == host]
            self.waiting = [r for r in self.waiting if r.key != host]
        for reply in mine:
            self.send(reply)
        self.producer.flush(5)

    def messages(self, where: Callable[[Seen], bool] = lambda s: True) -> list[Seen]:
        with self.lock:
            return [s for s in self.received if where(s)]


@dataclass
class Dpm:
    address: str
    channel: grpc.aio.Channel
    stop: asyncio.Event
    task: asyncio.Task[int]

    @property
    def provisioner(self) -> gsp_grpc.GoalStateProvisionerStub:
        return gsp_grpc.GoalStateProvisionerStub(self.channel)

    @property
    def status(self) -> status_pb2_grpc.DpmStatusServiceStub:
        return status_pb2_grpc.DpmStatusServiceStub(self.channel)

    async def get_status(self) -> status_pb2.DpmStatus:
        status: status_pb2.DpmStatus = await self.status.GetStatus(status_pb2.StatusRequest(), timeout=10)
        return status

    async def push(self, *messages: gs.GoalStateV2) -> list[gsp.GoalStateOperationReply]:
        """One stream with these inputs (which the DPM may coalesce into one set of messages)."""
        return [reply async for reply in self.provisioner.PushGoalStatesStream(iter(messages), timeout=60)]

    def stream(self, *messages: gs.GoalStateV2) -> tuple[list[gsp.GoalStateOperationReply], asyncio.Task[None]]:
        """One stream with these inputs, read in the background: (the answers so far, the reader)."""
        call = self.provisioner.PushGoalStatesStream(iter(messages), timeout=60)
        answers: list[gsp.GoalStateOperationReply] = []

        async def read() -> None:
            async for reply in call:
                answers.append(reply)  # noqa: PERF401 - read while it grows

        return answers, asyncio.create_task(read())

    async def push_each(self, *messages: gs.GoalStateV2) -> list[gsp.GoalStateOperationReply]:
        """Each input on its own, once the previous one is applied everywhere."""
        return [reply for message in messages for reply in await self.push(message)]


async def eventually(condition: Callable[[], object], what: str, deadline: float = 30.0) -> None:
    """Wait for a condition (async or not); fail naming it after a generous deadline."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


@contextlib.asynccontextmanager
async def running_dpm(bootstrap: str, topics: Topics, strategy: str, *extra: str) -> AsyncIterator[Dpm]:
    """`serve()` on this event loop, on a free port; stopped (drained, flushed) on exit.
    Through Kafka only (`--path mq`) unless `extra` chooses a path: the agents of these
    tests register their fast paths."""
    address = f"127.0.0.1:{free_port()}"
    if "--path" not in extra:
        extra = (*extra, "--path", "mq")
    config = parse_config(["--bootstrap", bootstrap, "--topic-prefix", topics.prefix, "--grpc-address", address,
                           "--strategy", strategy, "--unicast-partitions", str(PARTS["unicast"]),
                           "--multicast-partitions", str(PARTS["multicast"]), "--reply-partitions", str(PARTS["reply"]),
                           *extra], environ={})
    stop = asyncio.Event()
    task = asyncio.create_task(serve(config, bootstrap, stop))
    async with grpc.aio.insecure_channel(address) as channel:
        dpm = Dpm(address, channel, stop, task)

        async def ready() -> bool:
            if task.done():
                task.result()  # surfaces a start-up failure
            try:
                await dpm.get_status()
                return True
            except grpc.aio.AioRpcError:
                return False

        await eventually(ready, "the DPM to serve")
        try:
            yield dpm
        finally:
            stop.set()
            assert await asyncio.wait_for(asyncio.shield(task), 30) == 0


@contextlib.contextmanager
def fake_aca(kafka: KafkaSettings, topics: Topics, hosts: set[str], held: set[str] | None = None) -> Iterator[FakeAca]:
    aca = FakeAca(kafka, topics, hosts, held)
    aca.start()
    try:
        yield aca
    finally:
        aca.halt.set()
        aca.join(10)


def statuses(reply: gsp.GoalStateOperationReply) -> dict[str, int]:
    return {s.resource_id: s.operation_status for s in reply.operation_statuses}


async def test_the_caller_is_answered_in_order_once_every_targeted_host_replied(
    bootstrap: str, kafka: KafkaSettings, topics: Topics
) -> None:
    async with running_dpm(bootstrap, topics, "vpc-multicast") as dpm:
        with fake_aca(kafka, topics, {A, B}, held={B}) as aca:
            first = subnet_goal("vpc-1", [A, B])  # A and B must apply it; B's reply is held
            second = port_goal("pa", "vpc-1", A, "10.1.0.1", [A])  # A only
            answers, reader = dpm.stream(first, second)
            # the DPM has A's replies to both and answered `second` internally; `first` still waits for B
            await eventually(lambda: _status_is(dpm, requests_completed=1, requests_pending=1), "second done, first pending")
            assert answers == [] and len(aca.messages(lambda s: s.key == B)) == 1
            aca.release(B)
            await asyncio.wait_for(reader, 30)
            assert [statuses(r) for r in answers] == [
                {"subnet-vpc-1": common.SUCCESS},
                {"pa": common.SUCCESS, "dhcp-pa": common.SUCCESS, "nb-pa": common.SUCCESS},
            ]
            status = await dpm.get_status()
            assert (status.requests_completed, status.requests_pending, status.requests_failed) == (2, 0, 0)
            assert status.replies_received >= 3 and status.bytes_published > 0


async def _status_is(dpm: Dpm, **expected: int) -> bool:
    status = await dpm.get_status()
    return all(getattr(status, name) == value for name, value in expected.items())


async def test_inputs_sent_together_are_each_answered_when_their_own_hosts_applied(
    bootstrap: str, kafka: KafkaSettings, topics: Topics
) -> None:
    async with running_dpm(bootstrap, topics, "vpc-multicast", "--batches-in-flight", "1", "--batch-window-ms", "600000") as dpm:
        with fake_aca(kafka, topics, {A, B, C}, held={B, C}) as aca:
            first, first_reader = dpm.stream(subnet_goal("vpc-1", [B]))  # in flight until B is released
            await eventually(lambda: _status_is(dpm, requests_pending=1), "the first batch in flight")
            # two more callers, batched behind it: the same subnet for slow C, and for A with A's port
            to_c, c_reader = dpm.stream(subnet_goal("vpc-1", [C]))
            to_a, a_reader = dpm.stream(goal([subnet("vpc-1"), *port_items("pa", A)], {A: ["subnet-vpc-1", "pa", "dhcp-pa"]}))
            await eventually(lambda: _status_is(dpm, inputs_waiting=2), "both inputs waiting behind the first")
            aca.release(B)
            await asyncio.wait_for(a_reader, 30)  # A applied: its caller is answered while C still holds its reply
            assert statuses(to_a[0]) == {"subnet-vpc-1": common.SUCCESS, "pa": common.SUCCESS, "dhcp-pa": common.SUCCESS}
            assert to_c == [] and (await dpm.get_status()).batches_sent == 2
            [a_message] = aca.messages(lambda s: s.key == A)
            [c_message] = aca.messages(lambda s: s.key == C)
            assert a_message.headers[wire.REQUEST_ID] == c_message.headers[wire.REQUEST_ID]  # published together
            aca.release(C)
            await asyncio.wait_for(asyncio.gather(c_reader, first_reader), 30)
            assert statuses(to_c[0]) == {"subnet-vpc-1": common.SUCCESS} and statuses(first[0]) == {"subnet-vpc-1": common.SUCCESS}


async def test_inputs_sent_together_whose_vpc_message_is_split_are_each_answered(
    bootstrap: str, kafka: KafkaSettings, topics: Topics
) -> None:
    async with running_dpm(bootstrap, topics, "vpc-multicast", "--batches-in-flight", "1", "--batch-window-ms", "600000",
                           "--max-message-bytes", "600", "--retry-after", "20", "--reply-timeout", "40") as dpm:
        with fake_aca(kafka, topics, {A, B, C}, held={C}) as aca:
            await dpm.push_each(port_goal("pa", "vpc-1", A, "10.1.0.1", [A]), port_goal("pb", "vpc-1", B, "10.1.0.2", [B]))
            _, blocker_reader = dpm.stream(subnet_goal("vpc-9", [C]))  # in flight until C is released
            await eventually(lambda: _status_is(dpm, requests_pending=1), "the first batch in flight")
            to_a = goal([neighbor(f"na{i}", "vpc-1", C, f"10.1.2.{i}") for i in range(6)], {A: [f"na{i}" for i in range(6)]})
            to_b = goal([neighbor(f"nb{i}", "vpc-1", C, f"10.1.3.{i}") for i in range(6)], {B: [f"nb{i}" for i in range(6)]})
            (a_answers, a_reader), (b_answers, b_reader) = dpm.stream(to_a), dpm.stream(to_b)
            await eventually(lambda: _status_is(dpm, inputs_waiting=2), "both inputs waiting behind the first")
            before = len(aca.messages(lambda s: s.topic == topics.multicast))
            aca.release(C)
            await asyncio.wait_for(asyncio.gather(a_reader, b_reader, blocker_reader), 60)
            assert set(statuses(a_answers[0]).values()) == set(statuses(b_answers[0]).values()) == {common.SUCCESS}
            assert (await dpm.get_status()).retries == 0  # each completed by its hosts' acks, not by a straggler's resync
            assert len(aca.messages(lambda s: s.topic == topics.multicast)) - before >= 2  # the batch's VPC message, split


def port_items(pid: str, host: str) -> list[Item]:
    """A port of vpc-1 on `host` and its DHCP entry."""
    return [port(pid, "vpc-1", host, "10.1.0.1"), dhcp(f"dhcp-{pid}", "vpc-1", "10.1.0.1")]


async def test_an_input_waits_while_its_host_deliveries_would_pass_the_bound(bootstrap: str, kafka: KafkaSettings, topics: Topics) -> None:
    async with running_dpm(bootstrap, topics, "vpc-multicast", "--max-in-flight-hosts", "2") as dpm:
        with fake_aca(kafka, topics, {A, B}, held={B}) as aca:
            first = subnet_goal("vpc-1", [A, B])  # two deliveries: the whole bound
            second = port_goal("pa", "vpc-1", A, "10.1.0.1", [A])  # one more: waits for `first`
            answers, reader = dpm.stream(first, second)
            await eventually(lambda: _status_is(dpm, replies_received=1, requests_pending=1), "A's reply to the first")
            assert len(aca.messages(lambda s: s.key == A)) == 1  # the second was not published
            aca.release(B)
            await asyncio.wait_for(reader, 30)
            assert [sorted(statuses(r)) for r in answers] == [["subnet-vpc-1"], ["dhcp-pa", "nb-pa", "pa"]]
            assert len(aca.messages(lambda s: s.key == A)) == 2


async def test_a_silent_host_is_resynced_then_failed_after_the_timeout(bootstrap: str, kafka: KafkaSettings, topics: Topics) -> None:
    async with running_dpm(bootstrap, topics, "vpc-multicast", "--reply-timeout", "3", "--retry-after", "1") as dpm:
        with fake_aca(kafka, topics, {A}) as aca:  # nobody answers for C
            (reply,) = await dpm.push(port_goal("pa", "vpc-1", A, "10.1.0.1", [A, C]))
            assert statuses(reply) == {"pa": common.SUCCESS, "dhcp-pa": common.SUCCESS, "nb-pa": common.FAILURE,
                                       f"host:{C}": common.FAILURE}
            assert reply.operation_statuses[-1].operation_type == common.INFO
            to_c = aca.messages(lambda s: s.key == C)
            status = await dpm.get_status()  # final: retries come before the timeout's reply
            await eventually(lambda: len(aca.messages(lambda s: s.key == C)) >= 2, "the retry to reach the topic")
            to_c = aca.messages(lambda s: s.key == C)
            # each resync has its own sequence number (a resync not passed either is sent again)
            assert [s.headers[wire.SEQ] for s in to_c] == [str(n) for n in range(1, len(to_c) + 1)]
            assert all(s.headers[wire.FULL] == "1" and keys(s.goal) == {(common.NEIGHBOR, "nb-pa")} for s in to_c[1:])  # C's whole state
            assert status.requests_failed == 1 and status.retries >= 1
            # A is resynced too when its ack was late (a loaded machine): every resync is one more message.
            await eventually(lambda: len(aca.messages(lambda s: s.key == A)) - 1 + len(to_c) - 1 == status.retries,
                             "every retry to reach the topic")


async def test_agent_restarted_on_demand_invalid_input_and_unimplemented(bootstrap: str, kafka: KafkaSettings, topics: Topics) -> None:
    async with running_dpm(bootstrap, topics, "vpc-multicast") as dpm:
        with fake_aca(kafka, topics, {A, B}) as aca:
            replies = await dpm.push_each(subnet_goal("vpc-1", [A, B]), port_goal("pa", "vpc-1", A, "10.1.0.1", [A, B]),
                                          port_goal("pb", "vpc-1", B, "10.1.0.2", [A, B]))
            assert all(set(statuses(r).values()) == {common.SUCCESS} for r in replies)

            request = gsp.HostRequest(format_version=1)
            request.state_requests.add(request_type=common.AGENT_RESTARTED, request_id="r1", source_ip=A)
            request.state_requests.add(request_type=common.ON_DEMAND, request_id="r2", source_ip=A, destination_ip="10.1.0.2")
            request.state_requests.add(request_type=common.ON_DEMAND, request_id="r3", source_ip=A, destination_ip="10.9.9.9")
            request.state_requests.add(request_type=common.AGENT_RESTARTED, request_id="r4", source_ip="")
            answer = await dpm.provisioner.RequestGoalStates(request, timeout=10)
            assert [(s.request_id, s.operation_status) for s in answer.operation_statuses] == [
                ("r1", common.SUCCESS), ("r2", common.SUCCESS), ("r3", common.FAILURE), ("r4", common.INVALID_ARG)]

            await eventually(lambda: aca.messages(lambda s: s.headers.get(wire.FULL) == "1"), "the full state of A")
            (full,) = aca.messages(lambda s: s.headers.get(wire.FULL) == "1")
            snapshot = await dpm.status.GetHostSnapshot(status_pb2.HostId(host_id=A), timeout=10)
            assert full.key == A and full.topic == topics.unicast and full.goal == snapshot
            assert keys(full.goal) == {(common.SUBNET, "subnet-vpc-1"), (common.PORT, "pa"), (common.DHCP, "dhcp-pa"),
                                       (common.NEIGHBOR, "nb-pb")}
            vpc, _, position = full.headers[wire.FOLLOW].partition("=")
            part, offset, seq = (int(x) for x in position.split(":"))
            assert (vpc, part) == ("vpc-1", partition_for("vpc-1", PARTS["multicast"])) and offset >= 1 and seq >= 1

            before = await dpm.get_status()
            bad = goal([subnet("vpc-1", rev=2)], {A: ["subnet-vpc-1", "not-there"]})
            (refused,) = await dpm.push(bad)
            assert [(s.resource_id, s.operation_status) for s in refused.operation_statuses] == [("not-there", common.INVALID_ARG)]
            after = await dpm.get_status()
            assert after.messages_published == before.messages_published and after.invalid_requests == 1

            with pytest.raises(grpc.aio.AioRpcError) as info:
                await dpm.provisioner.PushNetworkResourceStates(gs.GoalState(), timeout=10)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_resync_over_the_producers_message_limit_goes_in_parts(bootstrap: str, kafka: KafkaSettings, topics: Topics) -> None:
    """Issue 12: a host's whole state over librdkafka's message.max.bytes made
    RequestGoalStates answer UNKNOWN. The DPM now derives its limit from the producer's
    and the topic's (here 90 % of 2,000 bytes, less 1 KiB) and sends the state in parts."""
    async with running_dpm(bootstrap, topics, "unicast-only", "-X", "message.max.bytes=2000") as dpm:
        with fake_aca(kafka, topics, {A}) as aca:
            ports = [port_goal(f"p{i}", "vpc-1", A, f"10.1.0.{i}", [A]) for i in range(12)]
            replies = await dpm.push_each(subnet_goal("vpc-1", [A]), *ports)
            assert all(set(statuses(r).values()) == {common.SUCCESS} for r in replies)  # each on its own is small
            request = gsp.HostRequest(format_version=1)
            request.state_requests.add(request_type=common.AGENT_RESTARTED, request_id="r1", source_ip=A)
            answer = await dpm.provisioner.RequestGoalStates(request, timeout=10)
            assert [(s.request_id, s.operation_status) for s in answer.operation_statuses] == [("r1", common.SUCCESS)]
            await eventually(lambda: aca.messages(lambda s: s.headers.get(wire.FULL) == "1"), "the full state of A")
            parts = [s.headers[wire.PART] for s in aca.messages(lambda s: s.headers.get(wire.FULL) == "1")]
            count = int(parts[0].split("/")[1])
            assert count >= 2 and len({int(p.split("/")[1]) for p in parts}) == 1
            status = await dpm.get_status()
            assert status.resync_failures == 0 and status.delivery_errors == 0


async def test_a_reply_to_many_silent_hosts_names_a_bounded_number(bootstrap: str, topics: Topics, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "MAX_FAILED_HOSTS", 2)
    hosts = [f"10.0.9.{i}" for i in range(1, 6)]
    async with running_dpm(bootstrap, topics, "unicast-only", "--reply-timeout", "2", "--retry-after", "1") as dpm:
        (reply,) = await dpm.push(port_goal("p9", "vpc-1", hosts[0], "10.1.0.9", hosts))  # no agent runs
        markers = [s.resource_id for s in reply.operation_statuses if s.operation_type == common.INFO]
        assert markers == [f"host:{hosts[0]}", f"host:{hosts[1]}", "hosts-not-named:3"]
        assert (await dpm.get_status()).requests_failed == 1


@pytest.mark.parametrize("strategy", ["vpc-multicast", "unicast-only", "topic-per-host"])
async def test_each_strategy_publishes_to_its_topics_and_keys(strategy: str, bootstrap: str, kafka: KafkaSettings, topics: Topics) -> None:
    async with running_dpm(bootstrap, topics, strategy) as dpm:
        with fake_aca(kafka, topics, {A, B, C}) as aca:
            hosts = [A, B, C]
            messages = [subnet_goal("vpc-1", hosts)]
            messages += [port_goal(f"p{i}", "vpc-1", host, f"10.1.0.{i}", hosts) for i, host in enumerate(hosts)]
            replies = await dpm.push_each(*messages)
            assert all(set(statuses(r).values()) == {common.SUCCESS} for r in replies)
            seen = aca.messages()
            multicast = [s for s in seen if s.topic == topics.multicast]
            unicast = [s for s in seen if s.topic != topics.multicast]
            for s in unicast:
                assert list(s.goal.host_resources) == [s.key] and s.headers[wire.HOST_ID] == s.key
                if strategy == "topic-per-host":
                    assert (s.topic, s.partition) == (topics.host(s.key), 0)
                else:
                    assert (s.topic, s.partition) == (topics.unicast, partition_for(s.key, PARTS["unicast"]))
            if strategy == "vpc-multicast":
                assert multicast and all(s.key == "vpc-1" and not s.goal.host_resources for s in multicast)
                assert {s.partition for s in multicast} == {partition_for("vpc-1", PARTS["multicast"])}
                # the neighbors of the 2nd and 3rd ports reached the VPC's members once, on the multicast
                # channel (the 1st port's VPC had no member yet); nobody is sent its own neighbor
                assert sorted(rid for s in multicast for rid in s.goal.neighbor_states) == ["nb-p1", "nb-p2"]
                assert all(n.configuration.host_ip_address != s.key for s in unicast for n in s.goal.neighbor_states.values())
            else:
                assert multicast == []
                for host in hosts:  # each host got its own copy of every neighbor of the others
                    got = {rid for s in unicast if s.key == host for rid in s.goal.neighbor_states}
                    assert got == {f"nb-p{i}" for i, x in enumerate(hosts) if x != host}
                    snapshot = await dpm.status.GetHostSnapshot(status_pb2.HostId(host_id=host), timeout=10)
                    assert set().union(*(keys(s.goal) for s in unicast if s.key == host)) == keys(snapshot)


async def test_on_stop_calls_in_flight_are_drained(bootstrap: str, kafka: KafkaSettings, topics: Topics) -> None:
    async with running_dpm(bootstrap, topics, "unicast-only") as dpm:
        with fake_aca(kafka, topics, {A}, held={A}) as aca:
            call = asyncio.create_task(dpm.push(port_goal("pa", "vpc-1", A, "10.1.0.1", [A])))
            await eventually(lambda: aca.messages(lambda s: s.key == A), "the message to reach A")
            dpm.stop.set()  # SIGTERM: no new calls, but this one may still complete
            aca.release(A)
            (reply,) = await asyncio.wait_for(call, 30)
            assert statuses(reply) == {"pa": common.SUCCESS, "dhcp-pa": common.SUCCESS, "nb-pa": common.SUCCESS}
            assert await asyncio.wait_for(asyncio.shield(dpm.task), 30) == 0


class ForgingAca(FakeAca):
    """Sends, before each real ack, records the DPM must refuse: sequences past 2^63 - 1
    (protobuf's uint64 holds them, the sequence space does not), and a record of another type."""

    def forged(self, real: Envelope) -> list[Envelope]:
        out = []
        for field, value in (("unicast_seq", 2**63), ("unicast_seen", 2**64 - 1)):
            ack = ack_pb2.Ack.FromString(real.value)
            setattr(ack, field, value)
            out.append(Envelope(real.topic, real.key, ack.SerializeToString(), {**real.headers, "forged": field}))
        vpc = ack_pb2.Ack.FromString(real.value)
        vpc.vpcs.add(vpc_id="vpc-1", epoch=vpc.epoch, seq=2**63)
        out.append(Envelope(real.topic, real.key, vpc.SerializeToString(), {**real.headers, "forged": "vpcs.seq"}))
        out.append(Envelope(real.topic, real.key, real.value, {**real.headers, wire.MSG_TYPE: "GoalStateOperationReply",
                                                                "forged": "gs-type"}))
        return out

    def send(self, reply: Envelope) -> None:
        for record in self.forged(reply):
            super().send(record)
        super().send(reply)


FORGED = ["unicast_seq", "unicast_seen", "vpcs.seq", "gs-type"]


async def test_malformed_acks_are_dead_lettered_alone(bootstrap: str, kafka: KafkaSettings, topics: Topics) -> None:
    async with running_dpm(bootstrap, topics, "vpc-multicast") as dpm:
        aca = ForgingAca(kafka, topics, {A})
        aca.start()
        try:
            [reply] = await dpm.push(port_goal("pa", "vpc-1", A, "10.1.0.1", [A]))
            assert set(statuses(reply).values()) == {common.SUCCESS}  # the real ack of each batch still counts
            dead = Consumer(kafka.consumer(f"dead-{uuid.uuid4().hex[:6]}"))
            dead.assign([TopicPartition(topics.dead_letter, 0, 0)])
            found: list[dict[str, str]] = []
            end = time.monotonic() + 30
            while len(found) < len(FORGED) and time.monotonic() < end:
                found += [wire.decode_headers(m.headers()) for m in await asyncio.to_thread(dead.consume, 10, 0.2) if m.error() is None]
            dead.close()
            assert sorted(h["forged"] for h in found) == sorted(FORGED)
            assert all(h[wire.SOURCE_TOPIC] == topics.reply and h[wire.ERROR] for h in found)
            assert (await dpm.get_status()).dead_letters >= len(FORGED)
        finally:
            aca.halt.set()
            aca.join(10)


async def test_undecodable_empty_and_unlisted_inputs_are_answered_invalid_and_the_stream_goes_on(
    bootstrap: str, kafka: KafkaSettings, topics: Topics
) -> None:
    async with running_dpm(bootstrap, topics, "vpc-multicast") as dpm:
        with fake_aca(kafka, topics, {A}):
            method = "/alcor.schema.GoalStateProvisioner/PushGoalStatesStream"
            push: grpc.aio.StreamStreamMultiCallable[bytes, gsp.GoalStateOperationReply] = dpm.channel.stream_stream(
                method, request_serializer=None, response_deserializer=gsp.GoalStateOperationReply.FromString)
            unlisted = port_goal("p1", "vpc-1", A, "10.1.0.2", [A])
            del unlisted.host_resources[A].resources[:]  # the port and its DHCP entry are for no host
            inputs = [subnet_goal("vpc-1", [A]).SerializeToString(), b"\x12\x05\x0a\x09abc",  # a host id cut short
                      b"", unlisted.SerializeToString(),  # an empty input, and one whose port no host gets
                      port_goal("p0", "vpc-1", A, "10.1.0.1", [A]).SerializeToString()]
            replies = [reply async for reply in push(iter(inputs), timeout=60)]
            assert [sorted(statuses(r).items()) for r in replies] == [
                [("subnet-vpc-1", common.SUCCESS)], [("", common.INVALID_ARG)], [("", common.INVALID_ARG)],
                [("dhcp-p1", common.INVALID_ARG), ("p1", common.INVALID_ARG)],
                [("dhcp-p0", common.SUCCESS), ("nb-p0", common.SUCCESS), ("p0", common.SUCCESS)]]
            status = await dpm.get_status()
            assert status.invalid_requests == 3 and status.resources == 4  # the subnet, the port, its DHCP entry and neighbor


async def test_an_input_over_the_size_limit_is_refused_whole_and_the_stream_goes_on(
    bootstrap: str, kafka: KafkaSettings, topics: Topics
) -> None:
    async with running_dpm(bootstrap, topics, "vpc-multicast", "--max-input-bytes", "2000") as dpm:
        with fake_aca(kafka, topics, {A}):
            big = goal([subnet("vpc-1"), *(item for i in range(20) for item in port_items(f"p{i}", A))],
                       {A: ["subnet-vpc-1", *(f"p{i}" for i in range(20))]})
            assert 2000 < big.ByteSize() < 4000
            replies = await dpm.push(big, port_goal("p0", "vpc-1", A, "10.1.0.1", [A]))
            assert [sorted(statuses(r).items()) for r in replies] == [
                [("", common.INVALID_ARG)], [("dhcp-p0", common.SUCCESS), ("nb-p0", common.SUCCESS), ("p0", common.SUCCESS)]]
            status = await dpm.get_status()
            assert (status.invalid_requests, status.resources) == (1, 3)  # nothing of the big input was stored


async def test_an_input_listing_many_hosts_is_worked_in_slices_and_answered_once(
    bootstrap: str, kafka: KafkaSettings, topics: Topics
) -> None:
    hosts = [f"192.168.6.{i}" for i in range(1, 6)]
    async with running_dpm(bootstrap, topics, "unicast-only", "--slice-hosts", "2", "--max-hosts-per-input", "5") as dpm:
        with fake_aca(kafka, topics, set(hosts)) as aca:
            replies = await dpm.push(subnet_goal("vpc-1", hosts), subnet_goal("vpc-2", [*hosts, "192.168.6.99"]))
            assert [sorted(statuses(r).items()) for r in replies] == [[("subnet-vpc-1", common.SUCCESS)], [("", common.INVALID_ARG)]]
            sent = aca.messages(lambda s: s.key in hosts)
            assert sorted(s.key for s in sent) == sorted(hosts)
            assert len({s.headers[wire.REQUEST_ID] for s in sent}) == 3  # slices of 2, 2 and 1 hosts
            status = await dpm.get_status()
            assert (status.requests_completed, status.invalid_requests, status.resources) == (2, 1, 1)


@pytest.mark.parametrize(("address", "ranges", "says"), [
    ("nonsense", [("10.0.0.1", 1)], "host:port"), ("127.0.0.1:1", [("10.0.0.1", 0)], "empty"),
    ("127.0.0.1:1", [("host-a", 5)], "IPv4"),
])
async def test_a_bad_registration_is_invalid_argument_and_registers_nothing(
    bootstrap: str, topics: Topics, address: str, ranges: list[tuple[str, int]], says: str
) -> None:
    async with running_dpm(bootstrap, topics, "vpc-multicast") as dpm:
        registration = channel_pb2.Registration(address=address, hosts=[channel_pb2.HostRange(first_host=f, count=n) for f, n in ranges])
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await channel_pb2_grpc.AgentRegistryStub(dpm.channel).Register(registration, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and says in (info.value.details() or "")
        assert (await dpm.get_status()).agents_registered == 0
