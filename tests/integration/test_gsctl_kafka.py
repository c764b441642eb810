"""gsctl against a real broker and real daemons: tail (--from, --key, --follow) and status."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from gs_bench.cluster import Daemon
from gsmq import gsctl


def gsctl_run(*args: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "gsmq.gsctl", *args], input=data, capture_output=True, timeout=60)


PARTITIONS = 4


def new_topic(bootstrap: str, topic_prefix: str) -> str:
    from confluent_kafka.admin import AdminClient

    from gsmq.kafka_admin import ensure_topics

    topic = f"{topic_prefix}.unicast"
    ensure_topics(AdminClient({"bootstrap.servers": bootstrap}), {topic: PARTITIONS})
    return topic


def produce(bootstrap: str, topic: str, key: str, request_id: str, partition: int | None = None) -> tuple[int, int]:
    """One GoalStateV2 record keyed `key` (murmur2, as the DPM; or on `partition`); its (partition, offset)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 0})
    where: list[tuple[int, int]] = []
    headers: list[tuple[str, str | bytes | None]] = [("gs-request-id", request_id), ("gs-type", "GoalStateV2")]
    producer.produce(topic, gs.GoalStateV2(format_version=7).SerializeToString(), key.encode(), headers=headers,
                     partition=-1 if partition is None else partition,  # -1: where the partitioner puts the key
                     on_delivery=lambda err, msg: where.append((msg.partition() or 0, msg.offset() or 0)))
    assert producer.flush(10) == 0 and len(where) == 1
    return where[0]


def tail(bootstrap: str, topic: str, *args: str) -> list[dict[str, Any]]:
    done = gsctl_run("tail", "--bootstrap", bootstrap, "--topic", topic, "--idle", "1", *args)
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def request_ids(lines: list[dict[str, Any]]) -> list[str]:
    return [line["headers"]["gs-request-id"] for line in lines]


class Tail:
    """`gsctl tail ... --follow` as a process, its lines read as they come."""

    def __init__(self, bootstrap: str, topic: str, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "gsmq.gsctl", "tail", "--bootstrap", bootstrap, "--topic", topic,
                                      "--follow", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.notes: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_notes, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def _read_notes(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.notes.put(line.decode())

    def ready(self) -> str:
        """The note on stderr saying where it reads from: printed once it is positioned."""
        return self.notes.get(timeout=60)

    def next_line(self) -> dict[str, Any]:
        return self.lines.get(timeout=60)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def follow(bootstrap: str) -> Iterator[Callable[..., Tail]]:
    started: list[Tail] = []

    def start(topic: str, *args: str) -> Tail:
        started.append(Tail(bootstrap, topic, *args))
        return started[-1]

    yield start
    for one in started:
        one.stop()


def test_tail_reads_every_partition_from_the_beginning_by_default(bootstrap: str, topic_prefix: str) -> None:
    topic = new_topic(bootstrap, topic_prefix)
    sent = {f"r-{i}": produce(bootstrap, topic, f"10.0.0.{i}", f"r-{i}") for i in range(8)}
    lines = tail(bootstrap, topic)
    assert sorted(request_ids(lines)) == sorted(sent)
    assert len({line["partition"] for line in lines}) > 1
    for line in lines:  # the format of before: key, partition, offset, headers, type, bytes, decoded message
        assert set(line) == {"key", "partition", "offset", "headers", "type", "bytes", "message"}
        assert (line["partition"], line["offset"]) == sent[line["headers"]["gs-request-id"]]
        assert line["type"] == "GoalStateV2" and line["message"] == {"format_version": 7} and line["bytes"] == 2


def test_tail_from_end_shows_only_records_produced_after_it_started(bootstrap: str, topic_prefix: str, follow: Callable[..., Tail]) -> None:
    topic = new_topic(bootstrap, topic_prefix)
    ends = dict.fromkeys(range(PARTITIONS), 0)
    for i in range(PARTITIONS * 3):  # before: on every partition
        partition, offset = produce(bootstrap, topic, f"10.0.1.{i}", f"before-{i}")
        ends[partition] = max(ends[partition], offset + 1)
    assert tail(bootstrap, topic, "--from", "end") == []  # nothing new within --idle
    later = follow(topic, "--from", "end", "--count", "3")
    note = later.ready()
    assert note == f"gsctl: following {topic} {PARTITIONS} partitions from offsets {', '.join(map(str, ends.values()))} (Ctrl-C stops)\n"
    after = [produce(bootstrap, topic, f"10.0.2.{n}", f"after-{n}") for n in range(3)]
    lines = [later.next_line() for _ in after]
    assert later.proc.wait(timeout=30) == 0  # --count ends a --follow
    assert sorted(request_ids(lines)) == ["after-0", "after-1", "after-2"]
    assert sorted((line["partition"], line["offset"]) for line in lines) == sorted(after)


def test_tail_key_reads_the_keys_partition_and_its_records_only(bootstrap: str, topic_prefix: str) -> None:
    from gsmq.partition import partition_for

    topic = new_topic(bootstrap, topic_prefix)
    host = "192.168.9.1"
    home = partition_for(host, PARTITIONS)
    neighbours = [h for h in (f"192.168.9.{i}" for i in range(2, 60)) if partition_for(h, PARTITIONS) == home][:2]
    mine = [produce(bootstrap, topic, host, f"mine-{i}") for i in range(3)]
    for i, other in enumerate(neighbours):  # same partition, another key: left out
        produce(bootstrap, topic, other, f"other-{i}")
    # the host's key on another partition (a producer with another partitioner): its agent never reads it
    produce(bootstrap, topic, host, "stray-0", partition=(home + 1) % PARTITIONS)
    lines = tail(bootstrap, topic, "--key", host)
    assert request_ids(lines) == ["mine-0", "mine-1", "mine-2"]
    assert [(line["partition"], line["offset"]) for line in lines] == mine and {line["key"] for line in lines} == {host}


def test_tail_from_an_offset_or_the_last_n(bootstrap: str, topic_prefix: str) -> None:
    from gsmq.partition import partition_for

    topic = new_topic(bootstrap, topic_prefix)
    host = "192.168.9.7"
    other = next(h for h in (f"192.168.9.{i}" for i in range(8, 80)) if partition_for(h, PARTITIONS) == partition_for(host, PARTITIONS))
    mine: list[int] = []
    for i in range(5):  # the host's records, each followed by two of another key on the same partition
        mine.append(produce(bootstrap, topic, host, f"m-{i}")[1])
        produce(bootstrap, topic, other, f"o-{2 * i}")
        produce(bootstrap, topic, other, f"o-{2 * i + 1}")
    assert mine == [0, 3, 6, 9, 12]  # a fresh topic: the partition starts at 0
    assert request_ids(tail(bootstrap, topic, "--key", host, "--from", "6")) == ["m-2", "m-3", "m-4"]
    assert request_ids(tail(bootstrap, topic, "--key", host, "--from", "99")) == []  # past the end: from the end
    assert request_ids(tail(bootstrap, topic, "--key", host, "--from", "beginning")) == [f"m-{i}" for i in range(5)]
    # -N: the key's last N records, however many of other keys come between them
    assert request_ids(tail(bootstrap, topic, "--key", host, "--from=-2")) == ["m-3", "m-4"]
    assert request_ids(tail(bootstrap, topic, "--key", host, "--from=-99", "--count", "2")) == ["m-0", "m-1"]
    assert request_ids(tail(bootstrap, topic, "--key", other, "--from=-1")) == ["o-9"]
    # without --key: the last N of each partition
    assert request_ids(tail(bootstrap, topic, "--from=-2")) == ["o-8", "o-9"]


def test_tail_follow_from_the_keys_last_record_then_what_comes(bootstrap: str, topic_prefix: str, follow: Callable[..., Tail]) -> None:
    from gsmq.partition import partition_for

    topic = new_topic(bootstrap, topic_prefix)
    host = "192.168.9.8"
    for i in range(3):
        produce(bootstrap, topic, host, f"m-{i}")
    later = follow(topic, "--key", host, "--from=-1", "--count", "2")
    home = partition_for(host, PARTITIONS)
    assert later.ready() == f"gsctl: following {topic} partition {home} from the last 1 record of {host} (Ctrl-C stops)\n"
    assert request_ids([later.next_line()]) == ["m-2"]
    produce(bootstrap, topic, host, "m-3")
    assert request_ids([later.next_line()]) == ["m-3"]
    assert later.proc.wait(timeout=30) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_tail_follow_prints_records_produced_later_until_sigterm_or_sigint(
    bootstrap: str, topic_prefix: str, follow: Callable[..., Tail], sig: signal.Signals
) -> None:
    from gsmq.partition import partition_for

    topic = new_topic(bootstrap, topic_prefix)
    host = "192.168.9.9"
    produce(bootstrap, topic, host, "old-0")
    later = follow(topic, "--key", host, "--from", "end", "--idle", "1")
    assert later.ready() == f"gsctl: following {topic} partition {partition_for(host, PARTITIONS)} from offset 1 (Ctrl-C stops)\n"
    produce(bootstrap, topic, "192.168.9.10", "other-0")  # another key: not printed
    where = produce(bootstrap, topic, host, "new-0")
    first = later.next_line()
    assert first["key"] == host and request_ids([first]) == ["new-0"] and (first["partition"], first["offset"]) == where
    time.sleep(1.5)  # longer than --idle: --follow does not stop when the topic is quiet
    assert later.proc.poll() is None
    later.proc.send_signal(sig)
    assert later.proc.wait(timeout=30) == 0
    assert later.lines.empty() and later.notes.empty()  # the note alone on stderr


# ---------------------------------------------------------------- status through real daemons

HOST = "192.168.8.1"


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory, bootstrap: str) -> Iterator[tuple[Daemon, Daemon]]:
    """A dpm-server and an aca-agent for HOST, as processes, with a subnet and a port pushed for HOST."""
    import uuid

    from alcor.schema import goalstateprovisioner_pb2_grpc as gsp_grpc
    from gs_bench.cluster import start_agent, start_dpm
    from gs_bench.topology import Port, port_message, subnet_message

    prefix, logs = f"t{uuid.uuid4().hex[:10]}", tmp_path_factory.mktemp("daemons")
    dpm = start_dpm(logs, bootstrap, prefix)
    agent = start_agent(logs, bootstrap, prefix, dpm.status_port, HOST)
    try:
        goals = [subnet_message("vpc-s", [HOST]), port_message(Port("port-s", "vpc-s", HOST, "10.0.0.9", "fa:16:3e:00:00:09"), [HOST])]
        with grpc.insecure_channel(f"127.0.0.1:{dpm.status_port}") as channel:
            replies = list(gsp_grpc.GoalStateProvisionerStub(channel).PushGoalStatesStream(iter(goals), timeout=60))
        assert [s.operation_status for r in replies for s in r.operation_statuses] == [common.SUCCESS] * 4, replies
        yield dpm, agent
    finally:
        agent.stop()
        dpm.stop()


def status(*args: str) -> dict[str, Any]:
    done = gsctl_run("status", *args)
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    assert done.stdout.decode() == gsctl.to_json(document)  # sorted keys, as gsctl decode prints
    return document


def test_status_of_a_dpm_and_an_agent_with_a_hosts_snapshot_and_state(daemons: tuple[Daemon, Daemon]) -> None:
    from gs_bench.cluster import host_snapshot, host_state

    dpm, agent = daemons
    at_dpm = status("--dpm", f"127.0.0.1:{dpm.status_port}")
    assert set(at_dpm) == {"status"}
    assert at_dpm["status"]["strategy"] == "vpc-multicast" and at_dpm["status"]["hosts"] == "1"  # canonical JSON: uint64 as text
    assert at_dpm["status"]["requests_completed"] == "2" and "requests_failed" not in at_dpm["status"]  # 0: left out
    with_host = status("--dpm", f"127.0.0.1:{dpm.status_port}", "--host", HOST, "--host", "10.9.9.9")
    snapshot = json_format.MessageToDict(host_snapshot(dpm.status_port, HOST), preserving_proto_field_name=True)
    unknown = json_format.MessageToDict(host_snapshot(dpm.status_port, "10.9.9.9"), preserving_proto_field_name=True)
    assert with_host["host_snapshots"] == {HOST: snapshot, "10.9.9.9": unknown} and "port_states" not in unknown
    assert set(snapshot["port_states"]) == {"port-s"} and set(snapshot["subnet_states"]) == {"subnet-vpc-s"}

    at_agent = status("--agent", f"127.0.0.1:{agent.status_port}", "--host", HOST)
    assert set(at_agent) == {"status", "host_states"}
    assert at_agent["status"]["hosts"] == "1" and at_agent["status"]["messages_applied"] >= "1"
    state = json_format.MessageToDict(host_state(agent.status_port, HOST), preserving_proto_field_name=True)
    assert at_agent["host_states"] == {HOST: state} and set(state["port_states"]) == {"port-s"}


def test_status_of_the_wrong_service_or_no_service_is_one_line_and_exit_1(daemons: tuple[Daemon, Daemon]) -> None:
    from gsmq.broker import free_port

    dpm, agent = daemons
    cases = [
        (("--dpm", f"127.0.0.1:{agent.status_port}"), f"127.0.0.1:{agent.status_port} does not serve gsmq.v1.DpmStatusService"),
        (("--agent", f"127.0.0.1:{dpm.status_port}"), f"127.0.0.1:{dpm.status_port} does not serve gsmq.v1.AgentStatusService"),
        (("--agent", f"127.0.0.1:{free_port()}"), "no answer from 127.0.0.1:"),
        (("--dpm", "127.0.0.1:1", "--host", HOST), "no answer from 127.0.0.1:1 (UNAVAILABLE"),
    ]
    for args, says in cases:
        done = gsctl_run("status", *args)
        err = done.stderr.decode()
        assert done.returncode == 1 and done.stdout == b"", (args, err)
        assert err.count("\n") == 1 and err.startswith(f"gsctl: error: {says}"), (args, err)
