"""The consume loop over MemoryBus: replies and commits, skips, dead letters, following
VPCs on the multicast topic (assign, seek back, unassign), resync requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from aca_agent.applier import Applier
from aca_agent.consumer import AgentConsumer
from aca_agent.dataplane import MemoryDataPlane
from aca_agent.testing import goal_state, port, security_group, subnet
from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from gsmq import wire
from gsmq.errors import BrokerUnavailableError
from gsmq.partition import partition_for
from gsmq.topics import Topics
from gsmq.transport import Delivered, Envelope, MemoryBus, Sending, envelopes, send_each
from gsmq.v1 import ack_pb2

T = Topics("t")
H1, H2 = "10.1.0.1", "10.1.0.2"
GROUP = "aca-sim.test"


class FailingSink:
    """Reports the first `failures` deliveries as failed (the message is not placed)."""

    def __init__(self, bus: MemoryBus, failures: int) -> None:
        self.inner = bus.sink()
        self.failures = failures
        self._failed: list[tuple[Envelope, Delivered | None]] = []

    def send(self, message: Envelope, on_delivered: Delivered | None = None) -> None:
        if self.failures > 0:
            self.failures -= 1
            self._failed.append((message, on_delivered))
            return
        self.inner.send(message, on_delivered)

    def send_all(self, messages: Sequence[Envelope]) -> Sending:
        return send_each(self, messages)

    def send_values(self, topic: str, records: Sequence[tuple[str, bytes]]) -> Sending:
        return send_each(self, envelopes(topic, records))

    def poll(self, timeout: float = 0.0) -> int:
        failed, self._failed = self._failed, []
        for message, callback in failed:
            if callback is not None:
                callback(message, "broker down")
        return self.inner.poll(timeout) + len(failed)

    def flush(self, timeout: float = 10.0) -> int:
        self.poll()
        return 0


class Agent:
    """A consumer wired to a MemoryBus, with what it asked to resync."""

    def __init__(self, hosts: Sequence[str], channel: str = "unicast", failures: int = 0) -> None:
        self.bus = MemoryBus({T.unicast: 16, T.multicast: 16, T.reply: 8, T.dead_letter: 1})
        self.applier = Applier(MemoryDataPlane(), hosts)
        self.resyncs: list[list[str]] = []
        self.existing: set[str] = set()  # topics the "cluster" has (auto channel)
        self.source = self.bus.source(GROUP)
        self.consumer = AgentConsumer(
            source=self.source,
            sink=FailingSink(self.bus, failures) if failures else self.bus.sink(),
            applier=self.applier,
            topics=T,
            partition_count=self.bus.partition_count,
            channel=channel,
            resync=self.resyncs.append,
            existing_topics=lambda: self.existing,
        )
        self.consumer.start()

    def send(self, topic: str, key: str, value: gs.GoalStateV2 | bytes, **headers: str) -> Envelope:
        raw = value if isinstance(value, bytes) else value.SerializeToString()
        return self.bus.append(Envelope(topic, key, raw, {k.replace("_", "-"): v for k, v in headers.items()}))

    def drain(self) -> None:
        while self.consumer.run_once(0):
            pass

    def replies(self) -> list[tuple[dict[str, str], ack_pb2.Ack]]:
        """The acks on the reply topic, in order per partition."""
        out: list[tuple[dict[str, str], ack_pb2.Ack]] = []
        for (topic, _), log in sorted(self.bus.logs.items()):
            if topic == T.reply:
                out.extend((env.headers, ack_pb2.Ack.FromString(env.value)) for env in log)
        return out

    def committed(self, topic: str, host: str) -> int:
        return self.bus.commits[GROUP].get((topic, partition_for(host, 16)), -1)


def key_on_same_partition(host: str) -> str:
    return next(k for k in (f"10.9.{i // 256}.{i % 256}" for i in range(1, 5000)) if partition_for(k, 16) == partition_for(host, 16))


def test_applied_messages_get_one_ack_per_host_with_its_watermark_then_a_commit() -> None:
    agent = Agent([H1, H2])
    placed = [agent.send(T.unicast, H1, goal_state(H1, subnet(f"sn-{seq}")), gs_seq=str(seq), gs_epoch="e", gs_sent_ns="123")
              for seq in range(1, 6)]
    agent.send(T.unicast, H2, goal_state(H2, subnet(), port()), gs_seq="1", gs_epoch="e")
    agent.drain()
    acks = {ack.host_id: (headers, ack) for headers, ack in agent.replies()}
    assert len(agent.replies()) == 2  # one batch: one ack per host, however many messages it covers
    headers, ack = acks[H1]
    assert headers == {}  # an ack record has no headers: the reply topic says what it is
    assert (ack.epoch, ack.unicast_seq, ack.unicast_seen, list(ack.failures)) == ("e", 5, 5, [])
    assert (ack.timing.messages, ack.timing.resources, sum(ack.timing.elapse_buckets.values())) == (5, 5, 5)
    assert ack.timing.last_applied_ns > 0 and ack.timing.max_elapse_us > 0
    assert acks[H2][1].unicast_seq == 1 and acks[H2][1].timing.resources == 2
    assert agent.committed(T.unicast, H1) == placed[-1].offset + 1
    assert agent.applier.counters.replies_sent == 2
    assert agent.resyncs == [[H1, H2]]  # at start


def test_an_ack_carries_only_what_did_not_succeed_and_stops_below_a_gap() -> None:
    agent = Agent([H1])
    agent.send(T.unicast, H1, goal_state(H1, port()), gs_seq="1", gs_epoch="e")  # no subnet yet: PENDING
    agent.send(T.unicast, H1, goal_state(H1, subnet("sn-2")), gs_seq="2", gs_epoch="e")
    agent.send(T.unicast, H1, goal_state(H1, subnet("sn-4")), gs_seq="4", gs_epoch="e")  # 3 never came
    agent.drain()
    [(_, ack)] = agent.replies()
    assert [(f.seq, f.resource_id, f.status) for f in ack.failures] == [(1, "port-1", common.PENDING)]
    assert (ack.unicast_seq, ack.unicast_seen) == (2, 4)


def test_other_hosts_and_markers_are_skipped_and_committed_past() -> None:
    agent = Agent([H1])
    agent.send(T.unicast, key_on_same_partition(H1), goal_state(None, subnet()))
    agent.send(T.unicast, H1, b"marker", gs_type="Marker")
    last = agent.send(T.unicast, H1, goal_state(H1, subnet("sn-2")))
    agent.drain()
    assert agent.applier.counters.messages_other_host == 1
    assert agent.applier.counters.messages_skipped == 1
    assert [(a.host_id, a.timing.resources) for _, a in agent.replies()] == [(H1, 1)]
    assert agent.committed(T.unicast, H1) == last.offset + 1
    assert not agent.bus.logs.get((T.dead_letter, 0))


def test_poison_goes_to_the_dead_letter_topic_and_the_next_message_is_applied() -> None:
    agent = Agent([H1])
    poison = agent.send(T.unicast, H1, b"\xff\xff\xff\xff", gs_request_id="bad")
    good = agent.send(T.unicast, H1, goal_state(H1, subnet()))
    agent.drain()
    [dead] = agent.bus.logs[(T.dead_letter, 0)]
    assert dead.value == b"\xff\xff\xff\xff" and dead.key == H1
    assert dead.headers[wire.SOURCE_TOPIC] == T.unicast
    assert dead.headers[wire.SOURCE_PARTITION] == str(poison.partition)
    assert dead.headers[wire.SOURCE_OFFSET] == str(poison.offset)
    assert "undecodable" in dead.headers[wire.ERROR] and dead.headers[wire.REQUEST_ID] == "bad"
    assert len(agent.replies()) == 1
    assert agent.committed(T.unicast, H1) == good.offset + 1
    assert agent.applier.counters.dead_lettered == 1


def test_following_a_vpc_reads_its_multicast_partition_from_the_cursor_then_stops() -> None:
    agent = Agent([H1])
    mc = partition_for("vpc-1", 16)
    agent.send(T.multicast, "vpc-1", goal_state(None, security_group(rev=1)), gs_vpc_id="vpc-1", gs_seq="1", gs_epoch="e")
    agent.drain()
    assert (T.multicast, mc) not in agent.source.at
    agent.send(T.unicast, H1, goal_state(H1, subnet(), port()), gs_follow=f"vpc-1={mc}:1:1", gs_epoch="e")
    agent.drain()
    assert agent.source.at[(T.multicast, mc)] == 1
    headers = {"gs_vpc_id": "vpc-1", "gs_seq": "2", "gs_epoch": "e", "gs_request_id": "m2"}
    agent.send(T.multicast, "vpc-1", goal_state(None, security_group(rev=2)), **headers)
    agent.drain()
    _, ack = agent.replies()[-1]
    assert [(v.vpc_id, v.epoch, v.seq, v.seen) for v in ack.vpcs] == [("vpc-1", "e", 2, 2)]
    assert ack.timing.resources == 1 and not ack.failures
    assert agent.applier.table(H1, common.SECURITYGROUP)["sg-1"].configuration.revision_number == 2
    agent.send(T.unicast, H1, goal_state(H1, port(rev=2, op=common.DELETE)))
    agent.drain()
    assert (T.multicast, mc) not in agent.source.at
    assert agent.applier.followers == {}


def test_a_later_follow_seeks_a_partition_back_without_reapplying() -> None:
    agent = Agent([H1, H2])
    mc = 5  # both VPCs on one partition
    agent.send(T.unicast, H1, goal_state(H1, subnet(), port("p1", vpc_id="vpc-a")), gs_follow=f"vpc-a={mc}:0:0", gs_epoch="e")
    agent.drain()
    for vpc_id, seq, sg in (("vpc-a", "1", "sg-a"), ("vpc-b", "1", "sg-b"), ("vpc-a", "2", "sg-a2")):
        agent.bus.append(Envelope(T.multicast, vpc_id, goal_state(None, security_group(sg, vpc_id)).SerializeToString(),
                                  {wire.VPC_ID: vpc_id, wire.SEQ: seq, wire.EPOCH: "e"}, partition=mc))
    agent.drain()
    assert set(agent.applier.table(H1, common.SECURITYGROUP)) == {"sg-a", "sg-a2"}
    agent.send(T.unicast, H2, goal_state(H2, subnet(), port("p2", vpc_id="vpc-b")), gs_follow=f"vpc-b={mc}:1:0", gs_epoch="e")
    agent.drain()
    assert set(agent.applier.table(H2, common.SECURITYGROUP)) == {"sg-b"}
    applied: dict[str, int] = {}
    for _, ack in agent.replies():
        applied[ack.host_id] = applied.get(ack.host_id, 0) + ack.timing.messages
    assert applied == {H1: 3, H2: 2}  # each its join and its VPC's messages: H1 did not apply vpc-a's seq 2 twice


def test_a_sequence_gap_asks_to_resync_that_host() -> None:
    agent = Agent([H1, H2])
    for seq in ("1", "2", "4"):
        agent.send(T.unicast, H1, goal_state(H1, subnet()), gs_seq=seq, gs_epoch="e")
    agent.drain()
    assert agent.resyncs == [[H1, H2], [H1]]
    assert agent.applier.counters.resyncs == 1


def test_topic_per_host_channel_reads_the_hosts_topic() -> None:
    agent = Agent([H1, H2], channel="topic-per-host")
    agent.send(T.host(H2), H2, goal_state(H2, subnet()))
    agent.send(T.unicast, H1, goal_state(H1, subnet()))  # not read on this channel
    agent.drain()
    assert [ack.host_id for _, ack in agent.replies()] == [H2]
    assert agent.bus.commits[GROUP][(T.host(H2), 0)] == 1


@pytest.mark.parametrize("stopping", [False, True])
def test_commit_waits_for_reply_delivery(stopping: bool) -> None:
    agent = Agent([H1], failures=1)
    agent.send(T.unicast, H1, goal_state(H1, subnet()))
    if stopping:
        agent.consumer.stopping.set()
    agent.consumer.run_once(0)
    agent.consumer.run_once(0)  # nothing more to read: the replies produced are waited for
    if stopping:  # gave up: nothing delivered, nothing committed (the message will be read again)
        assert agent.replies() == [] and agent.committed(T.unicast, H1) == -1
    else:  # re-sent after the failure, then committed
        assert len(agent.replies()) == 1 and agent.committed(T.unicast, H1) == 1


def test_failed_acks_and_dead_letters_are_both_sent_again_and_only_acks_count_as_replies() -> None:
    agent = Agent([H1], failures=2)  # the batch's ack, then its dead letter
    agent.send(T.unicast, H1, b"\xff\xff")
    good = agent.send(T.unicast, H1, goal_state(H1, subnet()))
    agent.consumer.run_once(0)
    agent.consumer.run_once(0)  # nothing more to read: the replies produced are waited for
    assert len(agent.replies()) == 1 and len(agent.bus.logs[(T.dead_letter, 0)]) == 1
    assert agent.applier.counters.replies_sent == 1 and agent.committed(T.unicast, H1) == good.offset + 1


def test_auto_channel_reads_unicast_and_each_host_topic_once_it_exists() -> None:
    agent = Agent([H1, H2], channel="auto")
    agent.existing = {T.unicast}
    agent.send(T.host(H2), H2, goal_state(H2, subnet("sn-topic")))
    agent.send(T.unicast, H1, goal_state(H1, subnet("sn-unicast")))
    agent.drain()
    assert [ack.host_id for _, ack in agent.replies()] == [H1]
    agent.existing.add(T.host(H2))  # the DPM created it
    agent.consumer.check_host_topics()
    agent.drain()
    assert sorted(ack.host_id for _, ack in agent.replies()) == [H1, H2]
    assert "sn-topic" in agent.applier.table(H2, common.SUBNET)



def test_an_error_while_a_batch_gathers_is_raised_after_the_batch_in_hand_is_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    agent = Agent([H1])
    agent.drain()
    for seq in (1, 2):
        agent.send(T.unicast, H1, goal_state(H1, subnet(f"sn-{seq}")), gs_seq=str(seq), gs_epoch="e")
    inner, polls = agent.source.poll_batch, []

    def first_one_then_down(max_messages: int, timeout: float) -> list[Envelope]:
        polls.append(1)
        if len(polls) == 2:
            raise BrokerUnavailableError("consuming: broker down", "_TRANSPORT")
        return inner(1 if len(polls) == 1 else max_messages, timeout)

    monkeypatch.setattr(agent.source, "poll_batch", first_one_then_down)
    agent.consumer.ack_interval = 60.0  # gather: a second poll follows the first
    agent.consumer._acked_at = time.monotonic()
    with pytest.raises(BrokerUnavailableError):
        agent.consumer.run_once(0)
    assert [ack.unicast_seq for _, ack in agent.replies()] == [1]  # the first message was applied and acked
    agent.consumer.ack_interval = 0.0
    agent.drain()
    assert [ack.unicast_seq for _, ack in agent.replies()] == [1, 2]


def test_a_failed_seek_is_raised_after_what_was_applied_is_acked_with_the_pushed_dead_letters(monkeypatch: pytest.MonkeyPatch) -> None:
    agent = Agent([H1])
    agent.drain()
    agent.consumer.apply_pushed([(b"\xff\xff not a goal state", {wire.HOST_ID: H1, wire.SEQ: "1", wire.EPOCH: "e"})])
    mc = partition_for("vpc-1", 16)
    agent.send(T.unicast, H1, goal_state(H1, subnet(), port()), gs_follow=f"vpc-1={mc}:0:0", gs_seq="1", gs_epoch="e")

    def down(positions: Sequence[tuple[str, int, int]]) -> None:
        raise BrokerUnavailableError("assigning partitions: broker down", "_TRANSPORT")

    monkeypatch.setattr(agent.source, "assign", down)  # the join's seek to its cursor
    with pytest.raises(BrokerUnavailableError):
        agent.consumer.run_once(0)
    assert [ack.unicast_seq for _, ack in agent.replies()] == [1]  # the join was applied: acked before the error
    [dead] = agent.bus.logs[(T.dead_letter, 0)]
    assert "undecodable" in dead.headers[wire.ERROR]


def test_while_acks_gather_each_poll_is_applied_before_the_next_and_one_ack_covers_them(monkeypatch: pytest.MonkeyPatch) -> None:
    agent = Agent([H1])
    agent.drain()
    for seq in (1, 2, 3):
        agent.send(T.unicast, H1, goal_state(H1, subnet(f"sn-{seq}")), gs_seq=str(seq), gs_epoch="e")
    inner, seen = agent.source.poll_batch, []

    def one_at_a_time(max_messages: int, timeout: float) -> list[Envelope]:
        seen.append(sorted(agent.applier.table(H1, common.SUBNET)))  # what was applied before this poll
        return inner(1, 0)

    monkeypatch.setattr(agent.source, "poll_batch", one_at_a_time)
    agent.consumer.ack_interval = 60.0  # gathers until a poll finds nothing
    agent.consumer._acked_at = time.monotonic()
    before = len(agent.replies())
    assert agent.consumer.run_once(0) == 3
    assert seen == [[], ["sn-1"], ["sn-1", "sn-2"], ["sn-1", "sn-2", "sn-3"]]
    assert [ack.unicast_seq for _, ack in agent.replies()[before:]] == [3]  # one ack for the three


def test_under_load_offsets_are_committed_asynchronously_at_most_every_interval_and_at_once_when_idle(
        monkeypatch: pytest.MonkeyPatch) -> None:
    agent = Agent([H1])
    commits: list[bool] = []
    inner = agent.source.commit

    def commit(positions: Sequence[tuple[str, int, int]], asynchronous: bool = False) -> None:
        commits.append(asynchronous)
        inner(positions, asynchronous)

    monkeypatch.setattr(agent.source, "commit", commit)
    agent.consumer.commit_interval = 3600.0
    first = agent.send(T.unicast, H1, goal_state(H1, subnet("sn-1")))
    assert agent.consumer.run_once(0) == 1
    assert agent.committed(T.unicast, H1) == -1  # its ack is not known delivered yet
    agent.send(T.unicast, H1, goal_state(H1, subnet("sn-2")))
    assert agent.consumer.run_once(0) == 1  # the first ack delivered: the first commit is due at once
    assert len(agent.replies()) == 2 and agent.committed(T.unicast, H1) == first.offset + 1
    third = agent.send(T.unicast, H1, goal_state(H1, subnet("sn-3")))
    assert agent.consumer.run_once(0) == 1
    assert agent.committed(T.unicast, H1) == first.offset + 1  # the second ack delivered, commit not due yet
    assert agent.consumer.run_once(0) == 0
    assert agent.committed(T.unicast, H1) == third.offset + 1  # nothing more to read: committed at once
    assert commits == [True, True]


def test_a_batch_is_applied_while_the_acks_of_the_one_before_are_delivered() -> None:
    """The consume loop waits for a batch's acks only once the next batch is applied, so at
    most one batch's replies are in flight."""
    agent = Agent([H1])
    inner = agent.consumer.sink
    events: list[tuple[str, int]] = []  # (what the sink was asked, messages applied by then)

    class Watched:
        def send_all(self, messages: Sequence[Envelope]) -> Sending:
            events.append(("send", agent.applier.counters.messages_applied))
            return inner.send_all(messages)

        def send_values(self, topic: str, records: Sequence[tuple[str, bytes]]) -> Sending:
            return self.send_all(envelopes(topic, records))

        def flush(self, timeout: float = 10.0) -> int:
            events.append(("flush", agent.applier.counters.messages_applied))
            return inner.flush(timeout)

    agent.consumer.sink = Watched()  # type: ignore[assignment]
    agent.send(T.unicast, H1, goal_state(H1, subnet("sn-1")), gs_seq="1", gs_epoch="e")
    agent.consumer.run_once(0)
    agent.send(T.unicast, H1, goal_state(H1, subnet("sn-2")), gs_seq="2", gs_epoch="e")
    agent.consumer.run_once(0)
    assert events == [("send", 1), ("flush", 2), ("send", 2)]
    assert agent.committed(T.unicast, H1) == 1 and agent.applier.counters.replies_sent == 1
    agent.consumer.run_once(0)
    assert events[3:] == [("flush", 2)] and agent.committed(T.unicast, H1) == 2
    assert [ack.unicast_seq for _, ack in agent.replies()] == [1, 2]


def test_stopping_commits_what_was_applied_and_acked(monkeypatch: pytest.MonkeyPatch) -> None:
    agent = Agent([H1])
    agent.consumer.commit_interval = 3600.0
    agent.drain()
    agent.send(T.unicast, H1, goal_state(H1, subnet("sn-1")))
    agent.consumer.run_once(0)
    last = agent.send(T.unicast, H1, goal_state(H1, subnet("sn-2")))
    stop, inner = threading.Event(), agent.source.poll_batch

    def poll_then_stop(max_messages: int, timeout: float) -> list[Envelope]:
        got = inner(max_messages, timeout)
        if got:
            stop.set()  # the batch in hand is applied and acked, then the loop ends
        return got

    monkeypatch.setattr(agent.source, "poll_batch", poll_then_stop)
    agent.consumer.run(stop, poll_timeout=0)
    assert len(agent.replies()) == 2 and agent.committed(T.unicast, H1) == last.offset + 1


def test_the_copies_of_a_vpc_message_pushed_together_are_decoded_once_and_each_host_acked(monkeypatch: pytest.MonkeyPatch) -> None:
    agent = Agent([H1, H2])
    mc = partition_for("vpc-1", 16)
    for host in (H1, H2):
        agent.send(T.unicast, host, goal_state(host, subnet(), port(rid=f"port-{host}")), gs_follow=f"vpc-1={mc}:1:1", gs_epoch="e")
    agent.drain()
    headers = {wire.VPC_ID: "vpc-1", wire.SEQ: "2", wire.EPOCH: "e", wire.REQUEST_ID: "m2"}
    message = wire.channel_message(goal_state(None, security_group(rev=2)).SerializeToString(), headers)
    copies = wire.channel_messages(wire.channel_batch([wire.addressed(message, H1), wire.addressed(message, H2)]))
    decode, decodes = gs.GoalStateV2.FromString, []

    def counted(raw: bytes) -> gs.GoalStateV2:
        decodes.append(raw)
        return decode(raw)

    monkeypatch.setattr(gs.GoalStateV2, "FromString", counted)
    acks = agent.consumer.apply_pushed(copies)
    assert len(decodes) == 1  # the first copy's; the second host's copy reads it
    assert sorted((a.host_id, [(v.vpc_id, v.seq) for v in a.vpcs]) for a in acks) == [(H1, [("vpc-1", 2)]), (H2, [("vpc-1", 2)])]
    for host in (H1, H2):
        assert agent.applier.table(host, common.SECURITYGROUP)["sg-1"].configuration.revision_number == 2


def test_a_pushed_messages_dead_letter_is_delivered_by_the_consume_loop_and_sent_again_when_it_fails() -> None:
    agent = Agent([H1], failures=1)  # the dead letter's first send
    agent.consumer.apply_pushed([(b"\xff\xff not a goal state", {wire.HOST_ID: H1, wire.SEQ: "1", wire.EPOCH: "e"})])
    assert not agent.bus.logs.get((T.dead_letter, 0))  # not sent from the gRPC stream's thread
    agent.consumer.run_once(0)  # nothing to consume: the loop still delivers it, again after the failure
    [dead] = agent.bus.logs[(T.dead_letter, 0)]
    assert dead.value == b"\xff\xff not a goal state" and "undecodable" in dead.headers[wire.ERROR]
    agent.consumer.run_once(0)
    assert len(agent.bus.logs[(T.dead_letter, 0)]) == 1  # once
