"""Through the real broker over TCP with plain confluent-kafka clients, and gsctl's
broker, topics and tail commands as processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp
from gs_bench import baselines
from gsmq import wire
from gsmq.kafka import KafkaSettings
from gsmq.kafka_admin import ensure_topics
from gsmq.partition import partition_for
from gsmq.topics import Topics
from gsmq.v1 import ack_pb2

GSCTL = [sys.executable, "-m", "gsmq.gsctl"]


def consume(bootstrap: str, topic: str, partition: int, count: int, patience: float = 60.0) -> list[Message]:
    """The first `count` messages of one partition (fewer if the broker has no more within `patience`)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "raw", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, partition, 0)])
    got: list[Message] = []
    deadline = time.monotonic() + patience
    try:
        while len(got) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg)
    finally:
        consumer.close()
    return got


def test_goal_state_from_a_plain_producer_arrives_equal(bootstrap: str, topics: Topics, vectors_dir: Path) -> None:
    payload = (vectors_dir / "goalstatev2_small.bin").read_bytes()
    ensure_topics(AdminClient({"bootstrap.servers": bootstrap}), {topics.unicast: 1})
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    producer.produce(topics.unicast, payload, b"192.168.0.11", headers=[("gs-type", b"GoalStateV2")])
    assert producer.flush(30) == 0
    [msg] = consume(bootstrap, topics.unicast, 0, 1)
    assert msg.key() == b"192.168.0.11" and dict(msg.headers() or [])["gs-type"] == b"GoalStateV2"
    value = msg.value() or b""
    assert value == payload
    expected = gs.GoalStateV2.FromString(payload)
    assert gs.GoalStateV2.FromString(value) == expected and len(expected.port_states) == 4


def test_librdkafka_places_keys_where_partition_for_says(bootstrap: str, topics: Topics) -> None:
    """The ACA computes its unicast partition with gsmq.partition; the producer's
    murmur2_random partitioner must agree for every key."""
    ensure_topics(AdminClient({"bootstrap.servers": bootstrap}), {topics.unicast: 16})
    producer = Producer(KafkaSettings(bootstrap).producer())
    placed: dict[str, int | None] = {}

    def delivered(err: object, msg: Message) -> None:
        assert err is None, err
        placed[(msg.key() or b"").decode()] = msg.partition()

    keys = [f"10.{i // 250}.{i % 250}.1" for i in range(300)] + ["21", "foobar", "abc", "host-\u00e9"]
    for key in keys:
        producer.produce(topics.unicast, b"x", key.encode(), on_delivery=delivered)
    assert producer.flush(30) == 0
    assert placed == {key: partition_for(key, 16) for key in keys}
    assert len(set(placed.values())) == 16


@pytest.mark.parametrize("rate", [400.0, None], ids=["paced", "unpaced"])
def test_raw_baseline_measures_its_own_records_not_the_warm_up(bootstrap: str, topic_prefix: str, rate: float | None) -> None:
    """The raw baseline sends warm-up traffic first; the reader measures the records after it, each once."""
    result = baselines.raw_kafka(bootstrap, f"{topic_prefix}.raw", ["10.1.0.1", "10.1.0.2", "10.1.0.3"], 40, 120,
                                 partitions=2, rate=rate)
    assert (result["messages"], result["bytes"], result["message_bytes"]) == (40, 40 * 120, 120)
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["max"]


def test_raw_baseline_reads_its_result_whatever_librdkafka_says(bootstrap: str, topic_prefix: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A producer property from the environment (KAFKA_PROP_*) reaches the reader's consumer
    too, where librdkafka warns that it ignores it: the warning goes to stderr, never into
    the result the reader prints."""
    monkeypatch.setenv("KAFKA_PROP_LINGER_MS", "0")
    result = baselines.raw_kafka(bootstrap, f"{topic_prefix}.raw-env", ["10.1.0.1"], 20, 64, partitions=1)
    assert (result["messages"], result["bytes"]) == (20, 20 * 64)


def test_gsctl_topics_and_tail_decode_what_travels(bootstrap: str, topics: Topics, vectors_dir: Path) -> None:
    ensure_topics(AdminClient({"bootstrap.servers": bootstrap}), {topics.reply: 2, topics.dead_letter: 1})
    reply = (vectors_dir / "reply_small.bin").read_bytes()
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topics.reply, reply, b"h1", partition=1, headers=[("gs-type", b"GoalStateOperationReply"),
                                                                        ("gs-seq", b"7")])
    producer.produce(topics.reply, b"\xff\xff", b"h2", partition=1, headers=[("gs-type", b"GoalStateV2")])
    ack = ack_pb2.Ack(host_id="h3", epoch="e", unicast_seq=9)
    producer.produce(topics.reply, ack.SerializeToString(), b"h3", partition=1)  # an agent's ack: no headers
    producer.produce(topics.dead_letter, ack.SerializeToString(), b"h3",  # refused by a DPM: its source says what it is
                     headers=[(wire.SOURCE_TOPIC, topics.reply.encode()), (wire.ERROR, b"why")])
    assert producer.flush(30) == 0
    listed = subprocess.run([*GSCTL, "topics", "--bootstrap", bootstrap], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert f"{topics.reply}\t2" in listed.stdout.splitlines()
    tail = subprocess.run([*GSCTL, "tail", "--bootstrap", bootstrap, "--topic", topics.reply, "--count", "3",
                           "--idle", "30"], capture_output=True, text=True, timeout=90)
    assert tail.returncode == 0, tail.stderr
    first, second, third = (json.loads(line) for line in tail.stdout.splitlines())
    assert (first["key"], first["partition"], first["offset"], first["headers"]["gs-seq"]) == ("h1", 1, 0, "7")
    assert first["message"] == json.loads((vectors_dir / "reply_small.json").read_text())
    assert gsp.GoalStateOperationReply.FromString(reply).format_version == first["message"]["format_version"]
    assert "not a valid alcor.schema.GoalStateV2" in second["message"]["error"]
    assert (third["type"], third["headers"], third["message"]) == ("Ack", {}, {"host_id": "h3", "epoch": "e", "unicast_seq": "9"})
    dead = subprocess.run([*GSCTL, "tail", "--bootstrap", bootstrap, "--topic", topics.dead_letter, "--count", "1",
                           "--idle", "30"], capture_output=True, text=True, timeout=90)
    assert dead.returncode == 0, dead.stderr
    assert (json.loads(dead.stdout)["type"], json.loads(dead.stdout)["message"]["host_id"]) == ("Ack", "h3")
    missing = subprocess.run([*GSCTL, "tail", "--bootstrap", bootstrap, "--topic", f"{topics.prefix}.nope"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no topic" in missing.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_gsctl_broker_serves_until_signalled(sig: signal.Signals) -> None:
    proc = subprocess.Popen([*GSCTL, "broker"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    children: list[psutil.Process] = []
    try:
        address = proc.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), proc.stderr.read() if proc.poll() is not None else address
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "no broker child process"
        admin = AdminClient({"bootstrap.servers": address})
        ensure_topics(admin, {"gsctl.probe": 3})
        assert len(admin.list_topics(timeout=10).topics["gsctl.probe"].partitions) == 3
        del admin  # its open connections would hold up Tansu's graceful stop
    finally:
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
    assert code == 0, proc.stderr.read()
    assert proc.stderr.read() == ""
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"broker left running: {alive}"
