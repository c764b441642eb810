"""The ack tracker over a MemoryBus: replies matched by (request, host, message), statuses
merged, stragglers retried, silent hosts failed; the caller's stream in order, with
backpressure (no Kafka, no gRPC server)."""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref
from collections.abc import AsyncIterator, Callable

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp
from dpm_server.acks import AckTracker, decode_acks
from dpm_server.ackwire import AckFields
from dpm_server.engine import Engine
from dpm_server.hostsets import Part
from dpm_server.inputs import Input
from dpm_server.service import Batcher, Budget, Provisioner
from dpm_server.testing import ack, goal, memory_engine, neighbor, port_goal, published, security_group, subnet_goal
from gsmq import wire
from gsmq.errors import TransportError
from gsmq.topics import Topics
from gsmq.transport import Envelope, MemoryBus
from gsmq.v1 import ack_pb2

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"
HOSTS = [A, B, C]


class FakeAcas:
    """Stands for the ACAs of some hosts: replies to what the DPM published for them, when told."""

    def __init__(self, eng: Engine, bus: MemoryBus, topics: Topics) -> None:
        self.eng, self.bus, self.topics = eng, bus, topics
        self.seen: set[tuple[str, int, int]] = set()  # what the test has looked at (new())
        self.done: dict[str, set[tuple[str, int, int]]] = {}  # host -> messages it acknowledged
        self.source = bus.source("dpm")
        self.source.assign([(topics.reply, p, 0) for p in range(2)])

    def new(self) -> list[Envelope]:
        """Messages published since the last call."""
        fresh = [m for m in published(self.bus) if (m.topic, m.partition, m.offset) not in self.seen]
        self.seen.update((m.topic, m.partition, m.offset) for m in fresh)
        return fresh

    def reply(self, hosts: list[str], status: Callable[[str], int] = lambda host: common.SUCCESS,
              times: Callable[[str], tuple[int, int, int]] = lambda host: (1, 2, 3)) -> int:
        """Each of `hosts` acknowledges what reached it and it has not acknowledged yet; replies go through the bus."""
        sink, sent = self.bus.sink(), 0
        for m in published(self.bus):
            multicast = m.topic == self.topics.multicast
            targets = self.eng.snapshot.members.get(m.key, set()) if multicast else {m.key}
            for host in hosts:
                done = self.done.setdefault(host, set())
                if host in targets and (m.topic, m.partition, m.offset) not in done:
                    done.add((m.topic, m.partition, m.offset))
                    message = gs.GoalStateV2.FromString(m.value)
                    sink.send(ack(message, m.headers, host, self.topics.reply, status(host), multicast, times(host)))
                    sent += 1
        self.pump()
        return sent

    def pump(self) -> None:
        """The DPM's reply reader: what is on the reply topic, decoded, to the engine."""
        self.eng.on_acks(*decode_acks(self.source.poll_batch(1000, 0), self.topics.dead_letter))


class Clock:
    """The tracker's clock, moved by the test (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def engine(timeout: float, retry_after: float | None = None) -> tuple[Engine, MemoryBus, Topics, FakeAcas, Clock]:
    eng, bus, topics = memory_engine(timeout=timeout, retry_after=retry_after)
    clock = Clock()
    eng.tracker.clock = clock
    return eng, bus, topics, FakeAcas(eng, bus, topics), clock


def cluster(timeout: float = 10.0, retry_after: float | None = None) -> tuple[Engine, MemoryBus, Topics, FakeAcas]:
    """Three hosts with a port each in vpc-1, at time 0 on the tracker's clock (retry_after: half the timeout unless given)."""
    eng, bus, topics, acas, _ = engine(timeout, retry_after)
    eng.submit(subnet_goal("vpc-1", HOSTS), lambda r: None)
    for i, host in enumerate(HOSTS):
        eng.submit(port_goal(f"p{i}", "vpc-1", host, f"10.1.0.{i}", HOSTS), lambda r: None)
    acas.reply(HOSTS)
    assert eng.tracker.pending == {}
    acas.new()  # the set-up is not what tests look at
    return eng, bus, topics, acas


def statuses(reply: gsp.GoalStateOperationReply) -> dict[str, int]:
    return {s.resource_id: s.operation_status for s in reply.operation_statuses}


def test_a_request_completes_when_every_targeted_host_replied() -> None:
    eng, _, _, acas = cluster()
    replies: list[gsp.GoalStateOperationReply] = []
    eng.submit(port_goal("p9", "vpc-1", A, "10.1.0.9", HOSTS), replies.append)
    acas.reply([A])  # A's unicast (its port); B and C are still to apply the neighbor
    assert replies == []
    acas.reply([B])
    assert replies == []
    acas.reply([C])
    (reply,) = replies
    assert statuses(reply) == {"p9": common.SUCCESS, "dhcp-p9": common.SUCCESS, "nb-p9": common.SUCCESS}
    assert eng.counts()["requests_completed"] >= 1 and eng.tracker.pending == {}


def test_a_finished_request_is_freed_at_once_not_left_for_the_collector() -> None:
    eng, _, _, acas = cluster()

    def done(reply: gsp.GoalStateOperationReply) -> None:
        pass

    eng.submit(port_goal("p9", "vpc-1", A, "10.1.0.9", HOSTS), done)
    (request,) = eng.tracker.pending.values()
    assert request.fanouts  # the neighbor's multicast: its fanout refers back to the request
    freed = weakref.ref(done)  # held by the request alone (a compiled request takes no weak reference)
    del request, done
    gc.disable()
    try:
        acas.reply(HOSTS)
        assert eng.tracker.pending == {} and freed() is None
    finally:
        gc.enable()


def groups_for(eng: Engine, listed: list[list[str]], replies: list[gsp.GoalStateOperationReply]) -> None:
    """One security group of vpc-1 per entry, listed for those hosts: a multicast message each."""
    for i, hosts in enumerate(listed):
        eng.submit(goal([security_group(f"sg-{i}", "vpc-1")], {host: [f"sg-{i}"] for host in hosts}), replies.append)


def multicast_seqs(acas: FakeAcas) -> list[int]:
    return [int(m.headers[wire.SEQ]) for m in acas.new() if m.topic == acas.topics.multicast]


@pytest.mark.source("dpm_server.acks")
def test_an_ack_covering_many_messages_costs_one_look_at_the_watermarks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Work per ack does not grow with the messages it covers: acks that complete nothing
    read no watermark, and the one that completes 50 requests reads each host's once."""
    eng, _, _, acas = cluster()
    replies: list[gsp.GoalStateOperationReply] = []
    groups_for(eng, [HOSTS] * 50, replies)
    last = max(multicast_seqs(acas))
    reads: list[str] = []
    mark = eng.tracker._mark

    def counted_mark(host: str, vpc: str) -> int:
        reads.append(host)
        return mark(host, vpc)

    monkeypatch.setattr(eng.tracker, "_mark", counted_mark)
    send_ack(acas, B, vpcs=[("vpc-1", last, last)])  # the first: counts the hosts behind the first message
    counted = len(reads)
    send_ack(acas, C, vpcs=[("vpc-1", last, last)])
    assert replies == [] and counted <= len(HOSTS) and len(reads) == counted
    send_ack(acas, A, vpcs=[("vpc-1", last, last)])
    assert len(replies) == 50 and all(set(statuses(r).values()) == {common.SUCCESS} for r in replies)
    assert len(reads) - counted <= len(HOSTS) and eng.tracker.pending == {} and eng.tracker.queues == {}


def test_a_request_held_behind_an_earlier_one_of_its_vpc_is_answered_at_the_patience_not_the_timeout() -> None:
    """Only the first open message of a VPC counts its hosts; a later one whose hosts all
    passed it, behind one that waits for a silent host, is let go by the straggler tick."""
    eng, _, _, acas = cluster(timeout=30.0, retry_after=5.0)
    first: list[gsp.GoalStateOperationReply] = []
    second: list[gsp.GoalStateOperationReply] = []
    groups_for(eng, [HOSTS], first)
    eng.submit(goal([security_group("sg-b", "vpc-1")], {B: ["sg-b"], C: ["sg-b"]}), second.append)
    last = max(multicast_seqs(acas))
    for host in (B, C):
        send_ack(acas, host, vpcs=[("vpc-1", last, last)])
    waiting_for_a, behind = eng.tracker.pending.values()
    assert eng.tracker.waiting(waiting_for_a) == {A} and eng.tracker.waiting(behind) == set() and second == []
    eng.tracker.tick(waiting_for_a.started + 5.5)
    assert len(second) == 1 and set(statuses(second[0]).values()) == {common.SUCCESS} and first == []
    assert full_states(acas, A)  # and A, silent, is resynced for the first


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(listed=st.lists(st.lists(st.sampled_from(HOSTS), min_size=1, max_size=3, unique=True), min_size=1, max_size=8),
       acks=st.lists(st.tuples(st.sampled_from(HOSTS), st.integers(0, 7)), max_size=12))
def test_requests_complete_exactly_when_every_listed_host_passed_their_message(listed: list[list[str]],
                                                                              acks: list[tuple[str, int]]) -> None:
    """Against the plain rule (request i is done when each of its hosts acked a watermark
    at or past its message): never early; all of them by the straggler tick; every one
    once every host acked everything."""
    inputs = [goal([security_group(f"sg-{i}", "vpc-1")], {host: [f"sg-{i}"] for host in hosts}) for i, hosts in enumerate(listed)]
    complete_exactly(inputs, listed, acks)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(own=st.lists(st.sampled_from(HOSTS), min_size=2, max_size=8),
       acks=st.lists(st.tuples(st.sampled_from(HOSTS), st.integers(0, 7)), max_size=12))
def test_requests_listing_every_host_but_one_complete_exactly_when_the_others_passed(own: list[str],
                                                                                   acks: list[tuple[str, int]]) -> None:
    """As above, each input listing its state for every host but one (listed first, for
    nothing), as a port's neighbor is: the DPM reads the hosts as a part of their set, and
    the tracker counts them by the one out."""
    listed = [[h for h in HOSTS if h != one] for one in own]
    inputs = [goal([security_group(f"sg-{i}", "vpc-1")], {one: [], **{host: [f"sg-{i}"] for host in hosts}})
              for i, (one, hosts) in enumerate(zip(own, listed, strict=True))]
    assert Part in complete_exactly(inputs, listed, acks)


def complete_exactly(inputs: list[gs.GoalStateV2], listed: list[list[str]], acks: list[tuple[str, int]]) -> set[type]:
    """Submit the inputs, each a multicast of vpc-1 listed for `listed[i]`, and check their
    completion against the acks as the tests above say; the types of the sets of hosts the
    tracker waited for."""
    eng, _, _, acas = cluster(timeout=30.0, retry_after=5.0)
    replies: dict[int, list[gsp.GoalStateOperationReply]] = {i: [] for i in range(len(listed))}
    for i, message in enumerate(inputs):
        eng.submit(message, replies[i].append)
    kinds = {type(f.hosts) for queue in eng.tracker.queues.values() for f in queue.fanouts}
    seqs = multicast_seqs(acas)
    assert len(seqs) == len(listed)
    mark = dict.fromkeys(HOSTS, 0)
    passed: set[int] = set()
    for host, at in acks:
        seq = seqs[at % len(seqs)]
        send_ack(acas, host, vpcs=[("vpc-1", seq, seq)])
        mark[host] = max(mark[host], seq)
        passed = {i for i, hosts in enumerate(listed) if all(mark[h] >= seqs[i] for h in hosts)}
        assert {i for i, got in replies.items() if got} <= passed
    for request in eng.tracker.pending.values():  # from the rankings kept as the acks came
        (key,) = request.data.states
        i = int(key[1].removeprefix("sg-"))
        assert eng.tracker.waiting(request) == {h for h in listed[i] if mark[h] < seqs[i]}
    eng.tracker.tick(5.5)
    assert {i for i, got in replies.items() if got} == passed
    for host in HOSTS:
        send_ack(acas, host, vpcs=[("vpc-1", seqs[-1], seqs[-1])])
    assert all(len(got) == 1 and set(statuses(got[0]).values()) == {common.SUCCESS} for got in replies.values())
    assert eng.tracker.pending == {} and eng.tracker.queues == {}
    return kinds


def test_statuses_merge_to_the_worst_and_times_to_the_largest() -> None:
    eng, _, _, acas = cluster()
    replies: list[gsp.GoalStateOperationReply] = []
    eng.submit(goal([security_group("sg-1", "vpc-1")], {host: ["sg-1"] for host in HOSTS}), replies.append)
    worst = {A: common.SUCCESS, B: common.OUT_OF_ORDER, C: common.PENDING}
    times = {A: (9, 1, 1), B: (1, 8, 1), C: (1, 1, 7)}
    acas.reply(HOSTS, status=worst.__getitem__, times=times.__getitem__)
    (reply,) = replies
    (s,) = reply.operation_statuses
    assert (s.resource_id, s.resource_type, s.operation_type) == ("sg-1", common.SECURITYGROUP, common.CREATE)
    assert s.operation_status == common.OUT_OF_ORDER
    assert (s.dataplane_programming_time, s.network_configuration_time, s.state_elapse_time) == (9, 8, 7)
    assert reply.message_total_operation_time == 11


def send_ack(acas: FakeAcas, host: str, **fields: object) -> None:
    """`host` sends an ack with these fields (the DPM's epoch unless given)."""
    progress = ack_pb2.Ack(host_id=host, epoch=str(fields.pop("epoch", acas.eng.publisher.epoch)))
    for vpc, seq, seen in fields.pop("vpcs", ()):  # type: ignore[attr-defined]
        progress.vpcs.add(vpc_id=vpc, epoch=acas.eng.publisher.epoch, seq=seq, seen=seen)
    progress.failures.extend(fields.pop("failures", ()))  # type: ignore[arg-type]
    for name, value in fields.items():
        setattr(progress, name, value)
    acas.bus.sink().send(Envelope(acas.topics.reply, host, progress.SerializeToString(), {wire.MSG_TYPE: "Ack", wire.HOST_ID: host}))
    acas.pump()


def test_acks_nobody_waits_for_are_ignored_and_broken_records_refused_alone() -> None:
    eng, bus, topics, acas = cluster()
    replies: list[gsp.GoalStateOperationReply] = []
    eng.submit(port_goal("p9", "vpc-1", A, "10.1.0.9", [A]), replies.append)
    (m,) = [x for x in acas.new() if x.topic == topics.unicast]
    seq = int(m.headers[wire.SEQ])
    send_ack(acas, B, unicast_seq=99, unicast_seen=99)  # a host it did not target
    send_ack(acas, A, epoch="another-dpm", unicast_seq=seq, unicast_seen=seq)  # another incarnation's sequences
    send_ack(acas, A, unicast_seq=seq - 1, unicast_seen=seq - 1)  # not there yet
    assert replies == [] and eng.counts()["dead_letters"] == 0
    sink = bus.sink()
    broken = [Envelope(topics.reply, A, b"\xff\xff not protobuf", {wire.MSG_TYPE: "Ack"}),
              Envelope(topics.reply, A, b"", {wire.MSG_TYPE: "GoalStateOperationReply"}),  # an agent of the old protocol
              Envelope(topics.reply, A, ack_pb2.Ack(unicast_seq=seq).SerializeToString(), {wire.MSG_TYPE: "Ack"}),  # no host
              Envelope(topics.reply, A, ack_pb2.Ack(host_id=A, epoch=eng.publisher.epoch, unicast_seq=2**63).SerializeToString(),
                       {wire.MSG_TYPE: "Ack"})]  # past the sequence space
    for record in broken:
        sink.send(record)
    with structlog.testing.capture_logs() as logs:
        send_ack(acas, A, unicast_seq=seq, unicast_seen=seq)  # the real one, in the same batch
    assert len(replies) == 1 and set(statuses(replies[0]).values()) == {common.SUCCESS}
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["reply_refused"] * len(broken)
    dead = list(bus.logs[(topics.dead_letter, 0)])
    assert len(dead) == len(broken) and all(x.headers[wire.SOURCE_TOPIC] == topics.reply for x in dead)
    assert "2^63" in dead[-1].headers[wire.ERROR] and eng.counts()["dead_letters"] == len(broken)


@pytest.mark.parametrize("field", ["unicast_seq", "unicast_seen", "seq", "seen"])
def test_an_ack_with_any_sequence_past_the_sequence_space_is_refused(field: str) -> None:
    def record(value: int) -> Envelope:
        ack = ack_pb2.Ack(host_id=A, epoch="e")
        vpc = ack.vpcs.add(vpc_id="vpc-1", epoch="e")
        setattr(vpc if field in ("seq", "seen") else ack, field, value)
        return Envelope("t.reply", A, ack.SerializeToString(), {wire.MSG_TYPE: "Ack", wire.HOST_ID: A})

    acks, refused = decode_acks([record(wire.MAX_NUMBER), record(wire.MAX_NUMBER + 1)], "t.dead")
    assert len(acks) == 1 and [r.headers[wire.ERROR] for r in refused] == ["Ack with a sequence past 2^63-1"]


def test_an_ack_whose_text_looks_like_a_long_varint_is_read_field_by_field() -> None:
    host = "主机-東京-一号"  # UTF-8: runs of 9 and more bytes with the high bit set
    def record(value: int) -> Envelope:
        ack = ack_pb2.Ack(host_id=host, epoch="e", unicast_seq=value)
        return Envelope("t.reply", host, ack.SerializeToString(), {wire.MSG_TYPE: "Ack", wire.HOST_ID: host})

    acks, refused = decode_acks([record(7), record(wire.MAX_NUMBER + 1)], "t.dead")
    assert [(a.host_id, a.unicast_seq) for a in acks] == [(host, 7)] and len(refused) == 1


def test_a_record_without_gs_type_is_an_ack_one_typed_ack_too_markers_are_skipped_other_types_refused() -> None:
    ack = ack_pb2.Ack(host_id=A, epoch="e", unicast_seq=3).SerializeToString()
    untyped = Envelope("t.reply", A, ack)
    typed = Envelope("t.reply", A, ack, {wire.MSG_TYPE: "Ack", wire.HOST_ID: A})  # as agents sent before
    marker = Envelope("t.reply", "", b"", {wire.MSG_TYPE: "Marker"})
    goal = Envelope("t.reply", A, ack, {wire.MSG_TYPE: "GoalStateV2"}, partition=2, offset=7)
    acks, refused = decode_acks([untyped, marker, typed, goal], "t.dead")
    assert [(a.host_id, a.unicast_seq) for a in acks] == [(A, 3), (A, 3)]
    assert [(r.topic, r.headers[wire.SOURCE_OFFSET]) for r in refused] == [("t.dead", "7")]
    assert refused[0].headers[wire.ERROR] == "not an Ack on the reply topic: gs-type 'GoalStateV2'"


def test_a_goal_state_sent_untyped_to_the_reply_topic_is_refused_as_an_ack_without_host() -> None:
    goal = port_goal("q0", "vpc-1", A, "10.1.0.20", [A]).SerializeToString()
    acks, refused = decode_acks([Envelope("t.reply", A, goal), Envelope("t.reply", A, b"")], "t.dead")
    reasons = [r.headers[wire.ERROR] for r in refused]
    assert acks == [] and len(reasons) == 2 and reasons[1] == "Ack without host_id"
    assert reasons[0] == "Ack without host_id" or reasons[0].startswith("undecodable Ack")


def test_many_messages_one_ack() -> None:
    eng, _, topics, acas = cluster()
    replies: list[gsp.GoalStateOperationReply] = []
    for i in range(5):
        eng.submit(port_goal(f"q{i}", "vpc-1", A, f"10.1.0.{20 + i}", [A]), replies.append)
    last = max(int(m.headers[wire.SEQ]) for m in acas.new() if m.topic == topics.unicast and m.key == A)
    before = eng.tracker.replies
    send_ack(acas, A, unicast_seq=last, unicast_seen=last)
    assert len(replies) == 5 and eng.tracker.replies == before + 1
    assert all(set(statuses(r).values()) == {common.SUCCESS} for r in replies)


def test_a_failure_in_an_ack_reaches_the_callers_reply_of_its_message_only() -> None:
    eng, _, topics, acas = cluster()
    replies: dict[str, gsp.GoalStateOperationReply] = {}
    eng.submit(port_goal("q0", "vpc-1", A, "10.1.0.20", [A]), lambda r: replies.__setitem__("q0", r))
    eng.submit(port_goal("q1", "vpc-1", A, "10.1.0.21", [A]), lambda r: replies.__setitem__("q1", r))
    s0, s1 = sorted(int(m.headers[wire.SEQ]) for m in acas.new() if m.topic == topics.unicast and m.key == A)
    failure = ack_pb2.Failure(seq=s1, resource_type=common.DHCP, resource_id="dhcp-q1", status=common.PENDING)
    send_ack(acas, A, unicast_seq=s1, unicast_seen=s1, failures=[failure])
    assert statuses(replies["q0"]) == {"q0": common.SUCCESS, "dhcp-q0": common.SUCCESS, "nb-q0": common.SUCCESS}
    assert statuses(replies["q1"]) == {"q1": common.SUCCESS, "dhcp-q1": common.PENDING, "nb-q1": common.SUCCESS}
    assert s0 < s1


def full_states(acas: FakeAcas, host: str) -> list[Envelope]:
    return [m for m in acas.new() if m.key == host and m.headers.get(wire.FULL) == "1"]


def test_a_silent_straggler_is_resynced_and_its_resync_covers_the_request() -> None:
    eng, _, _topics, acas = cluster(timeout=10.0)
    replies: list[gsp.GoalStateOperationReply] = []
    eng.submit(port_goal("p9", "vpc-1", A, "10.1.0.9", HOSTS), replies.append)
    acas.reply([B, C])
    (first,) = [m for m in acas.new() if m.key == A]
    (request,) = eng.tracker.pending.values()
    eng.tracker.tick(request.started + 5.5)  # past retry_after (5 s)
    (again,) = [m for m in acas.new() if m.key == A]
    assert again.headers[wire.FULL] == "1" and int(again.headers[wire.SEQ]) == int(first.headers[wire.SEQ]) + 1
    state = gs.GoalStateV2.FromString(again.value)
    assert {"p9"} <= set(state.port_states) and again.headers[wire.FOLLOW].startswith("vpc-1=")
    eng.tracker.tick(request.started + 6)  # not again before its resync had the same patience
    assert acas.new() == [] and eng.tracker.retries == 1
    send_ack(acas, A, unicast_seq=int(again.headers[wire.SEQ]), unicast_seen=int(again.headers[wire.SEQ]))
    assert len(replies) == 1 and set(statuses(replies[0]).values()) == {common.SUCCESS}


def test_a_resync_that_is_lost_too_is_sent_again_after_the_same_patience() -> None:
    """A gRPC link that goes down loses the resync it carried: the request must not wait for its timeout."""
    eng, _, _topics, acas = cluster(timeout=30.0, retry_after=5.0)
    replies: list[gsp.GoalStateOperationReply] = []
    eng.submit(port_goal("p9", "vpc-1", A, "10.1.0.9", HOSTS), replies.append)
    acas.reply([B, C])
    acas.new()  # A's message: lost
    (request,) = eng.tracker.pending.values()
    eng.tracker.tick(request.started + 5.5)
    (lost,) = [m for m in acas.new() if m.key == A]
    eng.tracker.tick(request.started + 10)  # the resync had 4.5 s: less than the patience (5 s)
    assert acas.new() == [] and eng.tracker.retries == 1
    eng.tracker.tick(request.started + 11)
    (again,) = [m for m in acas.new() if m.key == A]
    assert again.headers[wire.FULL] == "1" and int(again.headers[wire.SEQ]) == int(lost.headers[wire.SEQ]) + 1
    send_ack(acas, A, unicast_seq=int(again.headers[wire.SEQ]), unicast_seen=int(again.headers[wire.SEQ]))
    assert len(replies) == 1 and set(statuses(replies[0]).values()) == {common.SUCCESS} and eng.tracker.retries == 2


def two_ports_of_a() -> tuple[Engine, Topics, FakeAcas, Clock, Envelope, Envelope]:
    """Hosts A, B, C at time 0; then two ports created on A (retry_after 10 s), and A's two messages."""
    eng, _, topics, acas = cluster(timeout=20.0)
    clock = eng.tracker.clock
    assert isinstance(clock, Clock)
    eng.submit(port_goal("p8", "vpc-1", A, "10.1.0.8", [A]), lambda r: None)
    eng.submit(port_goal("p9", "vpc-1", A, "10.1.0.9", [A]), lambda r: None)
    first, second = [m for m in acas.new() if m.topic == topics.unicast]
    return eng, topics, acas, clock, first, second


def test_a_host_still_working_through_its_queue_is_not_resynced_until_it_falls_silent() -> None:
    eng, _topics, acas, clock, first, _second = two_ports_of_a()
    clock.now = 2.0
    seq = int(first.headers[wire.SEQ])
    send_ack(acas, A, unicast_seq=seq, unicast_seen=seq)  # alive, one message behind
    assert len(eng.tracker.pending) == 1
    eng.tracker.tick(10.5)
    assert acas.new() == [] and eng.tracker.retries == 0  # more would only queue behind `second`
    eng.tracker.tick(12.5)  # A silent for 10.5 s: now it is a straggler
    (again,) = acas.new()
    assert again.key == A and again.headers[wire.FULL] == "1" and eng.tracker.retries == 1


def test_a_lost_message_is_found_by_the_watermark_and_the_host_resynced() -> None:
    eng, _topics, acas, clock, first, second = two_ports_of_a()
    clock.now = 2.0
    before = int(first.headers[wire.SEQ]) - 1
    send_ack(acas, A, unicast_seq=before, unicast_seen=int(second.headers[wire.SEQ]))  # alive, but `first` never came
    eng.tracker.tick(10.5)
    (again,) = acas.new()
    assert again.headers[wire.FULL] == "1" and eng.tracker.retries == 1
    seq = int(again.headers[wire.SEQ])
    send_ack(acas, A, unicast_seq=seq, unicast_seen=seq)
    assert eng.tracker.pending == {}


def test_a_multicast_held_back_by_a_gap_gets_the_host_resynced() -> None:
    eng, _, topics, acas = cluster(timeout=20.0)
    clock = eng.tracker.clock
    assert isinstance(clock, Clock)
    replies: list[gsp.GoalStateOperationReply] = []
    eng.submit(port_goal("p9", "vpc-1", A, "10.1.0.9", HOSTS), replies.append)  # B and C get the neighbor by multicast
    (mc,) = [m for m in acas.new() if m.topic == topics.multicast]
    clock.now = 2.0
    acas.reply([A, C])
    seq = int(mc.headers[wire.SEQ])
    send_ack(acas, B, vpcs=[("vpc-1", seq - 1, seq + 1)])  # alive, a later one came, this one did not
    eng.tracker.tick(10.5)
    (again,) = acas.new()
    assert again.key == B and again.headers[wire.FULL] == "1" and "nb-p9" in gs.GoalStateV2.FromString(again.value).neighbor_states
    useq = int(again.headers[wire.SEQ])
    send_ack(acas, B, unicast_seq=useq, unicast_seen=useq)
    assert len(replies) == 1 and set(statuses(replies[0]).values()) == {common.SUCCESS}


@pytest.mark.parametrize(("replies_take", "patience"), [(1.0, 50.0), (20.0, 60.0), (40.0, 75.0)])
def test_when_every_host_answers_slowly_a_silent_host_is_retried_later_yet_before_the_timeout(replies_take: float, patience: float) -> None:
    eng, _, topics, acas, clock = engine(timeout=100.0)  # retry_after 50 s
    eng.submit(port_goal("p8", "vpc-1", A, "10.1.0.8", [A]), lambda r: None)
    eng.submit(port_goal("p9", "vpc-1", B, "10.1.0.9", [B]), lambda r: None)
    clock.now = replies_take
    acas.reply([A])  # B is silent
    assert eng.tracker.patience == patience  # 1 + 4 x 0.5 (at least 50), 20 + 4 x 10, 40 + 4 x 20 (at most 75)

    def to_b() -> list[str]:
        return [m.headers[wire.SEQ] for m in acas.new() if m.topic == topics.unicast and m.key == B]

    assert to_b() == ["1"]
    eng.tracker.tick(patience - 0.5)
    assert to_b() == [] and eng.tracker.retries == 0
    eng.tracker.tick(patience)
    assert to_b() == ["2"] and eng.tracker.retries == 1


def test_silent_hosts_fail_after_the_timeout() -> None:
    eng, _, _, acas = cluster(timeout=10.0)
    replies: list[gsp.GoalStateOperationReply] = []
    eng.submit(port_goal("p9", "vpc-1", A, "10.1.0.9", HOSTS), replies.append)
    acas.reply([A, C])  # B never answers (the neighbor reached it by multicast)
    (request,) = eng.tracker.pending.values()
    with structlog.testing.capture_logs() as logs:
        eng.tracker.tick(request.started + 10.0)
    (reply,) = replies
    assert statuses(reply) == {"p9": common.SUCCESS, "dhcp-p9": common.SUCCESS, "nb-p9": common.FAILURE, f"host:{B}": common.FAILURE}
    [failed] = [e for e in logs if e["event"] == "request_failed"]
    assert (failed["log_level"], failed["hosts"], failed["silent_hosts"]) == ("warning", [B], 1)
    extra = reply.operation_statuses[-1]
    assert (extra.resource_id, extra.operation_type) == (f"host:{B}", common.INFO)
    assert eng.counts()["requests_failed"] == 1 and eng.tracker.pending == {}


def test_a_coalesced_batch_answers_each_caller_when_its_own_hosts_applied() -> None:
    eng, _, _, acas = cluster()
    got: dict[str, gsp.GoalStateOperationReply] = {}
    first, second = port_goal("p8", "vpc-1", A, "10.1.0.8", [A]), port_goal("p9", "vpc-1", B, "10.1.0.9", [B])
    eng.submit_many([(first, lambda r: got.__setitem__("first", r)), (second, lambda r: got.__setitem__("second", r))])
    assert len([m for m in acas.new() if m.topic == eng.publisher.topics.multicast]) == 1  # both neighbors in one message
    acas.reply([A])
    assert list(got) == ["first"]  # B has not replied: only the input listed for B waits
    assert statuses(got["first"]) == {"p8": common.SUCCESS, "dhcp-p8": common.SUCCESS, "nb-p8": common.SUCCESS}
    acas.reply([B])
    assert statuses(got["second"]) == {"p9": common.SUCCESS, "dhcp-p9": common.SUCCESS, "nb-p9": common.SUCCESS}


def test_an_input_of_a_batch_waits_for_no_unicast_to_a_host_it_does_not_list() -> None:
    eng, _, _, acas = cluster()
    got: dict[str, gsp.GoalStateOperationReply] = {}
    to_ab, to_c = subnet_goal("vpc-1", [A, B]), port_goal("p9", "vpc-1", C, "10.1.0.9", [C])  # C's port: the batch's one unicast
    eng.submit_many([(to_ab, lambda r: got.__setitem__("ab", r)), (to_c, lambda r: got.__setitem__("c", r))])
    acas.reply([A, B])
    assert list(got) == ["ab"]


def test_an_input_of_a_batch_waits_for_no_unicast_that_carries_only_another_inputs_resources() -> None:
    eng, bus, topics, acas = cluster()
    got: dict[str, gsp.GoalStateOperationReply] = {}
    on_a, on_b = port_goal("p8", "vpc-1", A, "10.1.0.8", HOSTS), port_goal("p9", "vpc-1", B, "10.1.0.9", HOSTS)
    eng.submit_many([(on_a, lambda r: got.__setitem__("a", r)), (on_b, lambda r: got.__setitem__("b", r))])
    sink = bus.sink()
    for m in acas.new():  # every host applies the VPC's message; of the unicasts only A's (p8), not B's (p9)
        multicast = m.topic == topics.multicast
        for host in HOSTS if multicast else [m.key] if m.key == A else []:
            sink.send(ack(gs.GoalStateV2.FromString(m.value), m.headers, host, topics.reply, multicast=multicast))
    acas.pump()
    assert list(got) == ["a"]  # p8's input lists B for nb-p8 only, which went by multicast
    assert statuses(got["a"]) == {"p8": common.SUCCESS, "dhcp-p8": common.SUCCESS, "nb-p8": common.SUCCESS}


def test_an_input_of_a_batch_waits_for_a_joining_host_whose_message_carries_its_vpcs_states() -> None:
    eng, _, _, acas = cluster()
    got: dict[str, gsp.GoalStateOperationReply] = {}
    d = "10.0.0.4"
    joins, on_a = port_goal("p10", "vpc-1", d, "10.1.0.10", [*HOSTS, d]), port_goal("p9", "vpc-1", A, "10.1.0.9", [*HOSTS, d])
    eng.submit_many([(joins, lambda r: got.__setitem__("d", r)), (on_a, lambda r: got.__setitem__("a", r))])
    acas.reply(HOSTS)  # D joins vpc-1 in this batch: nb-p9 reaches it in its own message, which it has not applied
    assert got == {}
    acas.reply([d])
    assert sorted(got) == ["a", "d"]


def test_a_resource_shared_with_an_input_to_a_silent_host_is_success_where_its_own_hosts_applied_it() -> None:
    eng, _, _, acas = cluster(timeout=10.0)
    got: dict[str, gsp.GoalStateOperationReply] = {}
    to_a, to_c = subnet_goal("vpc-1", [A]), subnet_goal("vpc-1", [C])  # the same state, for A and for C
    eng.submit_many([(to_a, lambda r: got.__setitem__("a", r)), (to_c, lambda r: got.__setitem__("c", r))])
    acas.reply([A, B])  # C is silent
    assert statuses(got["a"]) == {"subnet-vpc-1": common.SUCCESS}
    (waiting,) = eng.tracker.pending.values()
    eng.tracker.tick(waiting.started + 10.0)
    assert statuses(got["c"]) == {"subnet-vpc-1": common.FAILURE, f"host:{C}": common.FAILURE}


def test_a_failure_counts_only_for_the_inputs_that_listed_the_resource_for_that_host() -> None:
    eng, _, _, acas = cluster()
    got: dict[str, gsp.GoalStateOperationReply] = {}
    to_a, to_b = subnet_goal("vpc-1", [A]), subnet_goal("vpc-1", [B])
    eng.submit_many([(to_a, lambda r: got.__setitem__("a", r)), (to_b, lambda r: got.__setitem__("b", r))])
    acas.reply(HOSTS, status=lambda host: common.FAILURE if host == B else common.SUCCESS)
    assert statuses(got["a"]) == {"subnet-vpc-1": common.SUCCESS}
    assert statuses(got["b"]) == {"subnet-vpc-1": common.FAILURE}


async def test_the_callers_stream_is_answered_in_order_and_held_back_when_full() -> None:
    eng, _, _, acas = cluster()
    service = Provisioner(eng, max_in_flight=2)
    base = eng.answered
    pulled: list[int] = []

    async def inputs() -> AsyncIterator[bytes]:
        for i in range(4):
            pulled.append(i)
            host = [B, A][i % 2]
            yield port_goal(f"q{i}", "vpc-1", host, f"10.1.1.{i}", [host]).SerializeToString()  # targets its host only

    answers: list[gsp.GoalStateOperationReply] = []

    async def call() -> None:
        async for reply in service.PushGoalStatesStream(inputs(), None):  # type: ignore[arg-type]
            answers.append(reply)  # noqa: PERF401 - read while it grows

    task = asyncio.create_task(call())

    async def until(condition: Callable[[], bool]) -> None:
        for _ in range(1000):
            if condition():
                return
            await asyncio.sleep(0)
        raise AssertionError("condition never held")

    await until(lambda: len(eng.tracker.pending) == 2)
    for _ in range(50):
        await asyncio.sleep(0)
    assert len(eng.tracker.pending) == 2 and len(pulled) <= 3  # two in flight: the stream is not read on
    acas.reply([A])  # q1 is done, yet nothing is answered before q0; q2 is let in
    await until(lambda: eng.answered == base + 1 and len(eng.tracker.pending) == 2)
    for _ in range(50):
        await asyncio.sleep(0)
    assert answers == [] and len(pulled) <= 4
    acas.reply([B])  # q0 and q2: the three first answers go out in order, q3 is let in
    await until(lambda: len(answers) == 3)
    acas.reply([A])
    await asyncio.wait_for(task, 10)
    assert [min(statuses(a)) for a in answers] == ["dhcp-q0", "dhcp-q1", "dhcp-q2", "dhcp-q3"]
    assert pulled == [0, 1, 2, 3]


async def test_the_budget_grants_in_order_lets_an_oversized_request_go_alone_and_survives_cancellation() -> None:
    budget = Budget(5)
    await budget.acquire(3)
    order: list[str] = []

    async def take(name: str, units: int) -> None:
        await budget.acquire(units)
        order.append(name)

    big = asyncio.create_task(take("big", 9))  # more than the whole limit, and first
    small = asyncio.create_task(take("small", 1))  # would fit now, but waits its turn
    gone = asyncio.create_task(take("gone", 1))
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == [] and budget.used == 3
    gone.cancel()
    budget.release(3)  # empty: the oversized one goes alone
    await asyncio.sleep(0)
    assert order == ["big"] and budget.used == 9
    budget.release(9)
    await asyncio.wait_for(small, 1)
    assert order == ["big", "small"] and budget.used == 1  # the cancelled waiter took nothing
    assert gone.cancelled() and big.done()


async def test_callers_are_held_back_by_host_deliveries_in_flight_not_only_by_inputs() -> None:
    eng, _, _, acas = cluster()
    service = Provisioner(eng, max_in_flight=100, max_in_flight_hosts=5)  # room for one 3-host input at a time
    pulled: list[int] = []

    async def inputs() -> AsyncIterator[bytes]:
        for i in range(3):
            pulled.append(i)
            yield port_goal(f"q{i}", "vpc-1", A, f"10.1.1.{i}", HOSTS).SerializeToString()

    answers: list[gsp.GoalStateOperationReply] = []

    async def call() -> None:
        async for reply in service.PushGoalStatesStream(inputs(), None):  # type: ignore[arg-type]
            answers.append(reply)  # noqa: PERF401 - read while it grows

    task = asyncio.create_task(call())
    for round_ in range(3):
        for _ in range(50):
            await asyncio.sleep(0)
        assert len(eng.tracker.pending) == 1 and service.in_flight_hosts.used == 3 and len(pulled) <= round_ + 2
        acas.reply(HOSTS)
    await asyncio.wait_for(task, 10)
    assert [min(statuses(a)) for a in answers] == ["dhcp-q0", "dhcp-q1", "dhcp-q2"]


async def test_the_host_delivery_bound_follows_the_deliveries_answered_and_never_falls_below_the_flag() -> None:
    eng, _, _, acas = cluster()
    now = [0.0]
    service = Provisioner(eng, max_in_flight=100, max_in_flight_hosts=5, in_flight_seconds=0.5,  # one 3-host input at a time
                          clock=lambda: now[0])

    async def inputs() -> AsyncIterator[bytes]:
        for i in range(10):
            yield port_goal(f"q{i}", "vpc-1", A, f"10.1.1.{i}", HOSTS).SerializeToString()

    async def call() -> None:
        async for _ in service.PushGoalStatesStream(inputs(), None):  # type: ignore[arg-type]
            pass

    async def settle() -> None:
        for _ in range(50):
            await asyncio.sleep(0)

    task = asyncio.create_task(call())
    for _ in range(8):  # 24 deliveries answered over one second
        await settle()
        assert (service.in_flight_hosts.limit, service.in_flight_hosts.used, len(eng.tracker.pending)) == (5, 3, 1)
        now[0] += 0.125
        acas.reply(HOSTS)
    await settle()
    assert service.in_flight_hosts.limit == 24 // 2  # per second, times in_flight_seconds
    assert (service.in_flight_hosts.used, len(eng.tracker.pending)) == (6, 2)  # the last two inputs went in together
    now[0] += 10.0  # 6 deliveries over 10 s: the flag's bound again
    acas.reply(HOSTS)
    await asyncio.wait_for(task, 10)
    assert service.in_flight_hosts.limit == 5 and service.in_flight_hosts.used == 0


def test_a_host_with_nothing_awaited_keeps_no_queue() -> None:
    eng, _, _, acas = cluster()
    eng.submit(port_goal("p9", "vpc-1", A, "10.1.0.9", HOSTS), lambda reply: None)
    assert eng.tracker.hosts[A].unicast_waits
    acas.reply(HOSTS)
    assert eng.tracker.pending == {}
    assert all(hp.unicast_waits is None for hp in eng.tracker.hosts.values()) and eng.tracker.queues == {}


async def test_inputs_wait_while_a_batch_is_in_flight_and_go_together_when_it_completes() -> None:
    eng, bus, topics, acas = cluster()
    batcher = Batcher(eng, window=60.0, size=100)  # the default: one batch in flight (--batches-in-flight)
    got: list[str] = []

    def answer(name: str) -> Callable[[gsp.GoalStateOperationReply], None]:
        return lambda reply: got.append(name)

    def unicast() -> set[tuple[str, int]]:
        return {(m.key, m.offset) for m in published(bus) if m.topic == topics.unicast}

    def unicast_since(seen: set[tuple[str, int]]) -> set[str]:
        return {key for key, _ in unicast() - seen}

    seen = unicast()
    batcher.add(Input.of(port_goal("q0", "vpc-1", A, "10.1.1.0", [A])), answer("q0"))  # idle: it goes at once
    batcher.add(Input.of(port_goal("q1", "vpc-1", B, "10.1.1.1", [B])), answer("q1"))  # q0 in flight: these wait
    batcher.add(Input.of(port_goal("q2", "vpc-1", C, "10.1.1.2", [C])), answer("q2"))
    assert (batcher.batches, len(eng.tracker.pending), unicast_since(seen)) == (1, 1, {A})
    acas.reply([A])  # q0 completes: q1 and q2 go together, one set of messages, each tracked on its own
    assert got == ["q0"]
    for _ in range(5):
        await asyncio.sleep(0)
    assert (batcher.batches, len(eng.tracker.pending), unicast_since(seen)) == (2, 2, {A, B, C})
    acas.reply([B, C])
    assert sorted(got) == ["q0", "q1", "q2"]  # each once its own host applied it (a caller's stream keeps its order)


async def test_each_lane_batches_apart_so_a_held_lane_never_holds_the_other() -> None:
    """Inputs of a VPC on gRPC are not held behind a batch waiting for Kafka's round trip."""
    eng, _, _, _ = cluster()
    slow = {"vpc-1"}
    batcher = Batcher(eng, window=60.0, size=100, in_flight=1,
                      lane=lambda data: "mq" if slow & {v for v in data.vpcs.values() if v} else "grpc")
    batcher.add(Input.of(port_goal("q0", "vpc-1", A, "10.1.1.0", [A])), lambda r: None)  # never acked: holds its lane
    batcher.add(Input.of(port_goal("q1", "vpc-1", B, "10.1.1.1", [B])), lambda r: None)
    assert (batcher.batches, len(batcher.queue)) == (1, 1)
    batcher.add(Input.of(port_goal("q2", "vpc-2", C, "10.1.2.2", [C])), lambda r: None)  # the other lane: at once
    assert (batcher.batches, len(batcher.queue)) == (2, 1)
    batcher.flush()  # every lane's waiting inputs
    assert (batcher.batches, len(batcher.queue), batcher.inputs) == (3, 0, 3)


async def test_a_batch_waits_at_most_the_window_when_nothing_completes() -> None:
    eng, _, _, _ = cluster()
    batcher = Batcher(eng, window=0.01, size=100, in_flight=1)
    batcher.add(Input.of(port_goal("q0", "vpc-1", A, "10.1.1.0", [A])), lambda r: None)  # never acked
    batcher.add(Input.of(port_goal("q1", "vpc-1", B, "10.1.1.1", [B])), lambda r: None)
    assert batcher.batches == 1
    for _ in range(100):
        if batcher.batches == 2:
            break
        await asyncio.sleep(0.01)
    assert batcher.batches == 2 and len(eng.tracker.pending) == 2


class RefusingSink:
    """A sink whose broker refuses every message as too large (what librdkafka raises at once)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def send(self, message: Envelope, on_delivered: object = None) -> None:
        raise TransportError("producing to u.unicast: Broker: Message size too large", "MSG_SIZE_TOO_LARGE")

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_a_resync_that_cannot_be_published_is_a_failure_logged_and_counted() -> None:
    eng, _, _, _acas = cluster(timeout=10.0)
    eng.submit(port_goal("p9", "vpc-1", A, "10.1.0.9", [A]), lambda r: None)
    eng.publisher.sink = RefusingSink(eng.publisher.sink)  # type: ignore[assignment]
    with structlog.testing.capture_logs() as logs:
        assert eng.resync(A) is None
        reply = await Provisioner(eng, 10).RequestGoalStates(gsp.HostRequest(state_requests=[
            gsp.HostRequest.ResourceStateRequest(request_type=common.AGENT_RESTARTED, source_ip=A, request_id="r1")]), None)  # type: ignore[arg-type]
    assert [s.operation_status for s in reply.operation_statuses] == [common.FAILURE]
    failed = [e for e in logs if e["event"] == "resync_failed"]
    assert len(failed) == 2 and failed[0]["log_level"] == "warning" and failed[0]["host"] == A and "too large" in failed[0]["error"]
    assert eng.counts()["resync_failures"] == 2 and eng.counts()["resyncs_served"] == 0


def test_a_reply_names_at_most_max_failed_hosts_and_counts_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "MAX_FAILED_HOSTS", 2)
    eng, _, _, _acas = cluster(timeout=10.0)
    hosts = [A, B, C, "10.0.0.4", "10.0.0.5"]
    replies: list[gsp.GoalStateOperationReply] = []
    eng.submit(port_goal("p9", "vpc-1", A, "10.1.0.9", hosts), replies.append)  # nobody answers
    (request,) = eng.tracker.pending.values()
    with structlog.testing.capture_logs() as logs:
        eng.tracker.tick(request.started + 10.0)
    (reply,) = replies
    markers = [s.resource_id for s in reply.operation_statuses if s.operation_type == common.INFO]
    assert markers == [f"host:{A}", f"host:{B}", "hosts-not-named:3"]
    assert wire.more_failed_hosts(markers[-1]) == 3 and wire.failed_host(markers[-1]) is None
    assert {s.resource_id: s.operation_status for s in reply.operation_statuses if s.operation_type != common.INFO} == {
        "p9": common.FAILURE, "dhcp-p9": common.FAILURE, "nb-p9": common.FAILURE}
    [failed] = [e for e in logs if e["event"] == "request_failed"]
    assert failed["silent_hosts"] == 5


def test_an_input_listing_many_hosts_is_worked_in_slices_with_other_inputs_between_and_answered_once() -> None:
    eng, _, _, acas = cluster()
    later: list[Callable[[], object]] = []
    eng.slice_hosts, eng.defer = 1, later.append
    got: dict[str, gsp.GoalStateOperationReply] = {}
    eng.submit(subnet_goal("vpc-1", HOSTS, rev=2), lambda r: got.__setitem__("big", r))  # three slices of one host
    assert len({m.headers[wire.REQUEST_ID] for m in acas.new()}) == 1 and len(later) == 1  # one slice out, the next deferred
    eng.submit(port_goal("p8", "vpc-1", A, "10.1.0.8", [A]), lambda r: got.__setitem__("small", r))  # another caller, between
    acas.reply(HOSTS)
    assert list(got) == ["small"]
    while later:
        later.pop(0)()
    acas.reply(HOSTS[:2])  # C is silent
    (waiting,) = eng.tracker.pending.values()
    eng.tracker.tick(waiting.started + 10.0)
    assert statuses(got["big"]) == {"subnet-vpc-1": common.FAILURE, f"host:{C}": common.FAILURE}
    assert eng.counts()["requests_completed"] >= 2


def test_inputs_of_a_batch_whose_vpc_message_is_split_each_complete() -> None:
    eng, _, _, acas = cluster()
    eng.publisher.max_message_bytes = 600  # the batch's VPC-wide states go as several multicast messages
    got: dict[str, gsp.GoalStateOperationReply] = {}
    first = goal([neighbor(f"na{i}", "vpc-1", C, f"10.1.2.{i}") for i in range(6)], {A: [f"na{i}" for i in range(6)]})
    second = goal([neighbor(f"nb{i}", "vpc-1", C, f"10.1.3.{i}") for i in range(6)], {B: [f"nb{i}" for i in range(6)]})
    eng.submit_many([(first, lambda r: got.__setitem__("first", r)), (second, lambda r: got.__setitem__("second", r))])
    assert len([m for m in acas.new() if m.topic == eng.publisher.topics.multicast]) >= 2
    acas.reply(HOSTS)
    assert set(statuses(got["first"]).values()) == set(statuses(got["second"]).values()) == {common.SUCCESS}
    assert eng.tracker.pending == {}


def test_an_acks_host_is_looked_up_by_the_trackers_own_key() -> None:
    """An ack's host id is a new str; the tracker's keys are the inputs' ids: the VPC marks
    an ack moves are keyed by the tracker's object, so every later lookup matches by identity."""
    tracker = AckTracker(30.0, 60.0, lambda host: None, epoch="e")
    name = sys.intern("10.7.0.1")
    tracker.host(name)  # as a request first names it
    tracker.on_ack(AckFields(b"10.7.0.1".decode(), "e", vpcs=[("vpc-1", "e", 3, 3)]))
    (key,) = tracker.marks["vpc-1"]
    assert key is name and list(tracker.hosts) == [name]
