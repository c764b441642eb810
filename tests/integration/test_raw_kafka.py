"""Through the real broker with plain confluent-kafka clients, and `gsctl broker` itself."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from gsmq.topics import Topics, ensure_topics
from proto import goalstate_pb2 as gs


def test_goal_state_from_a_plain_producer_arrives_equal(bootstrap: str, topics: Topics, vectors_dir: Path) -> None:
    payload = (vectors_dir / "goalstatev2_small.bin").read_bytes()
    ensure_topics(AdminClient({"bootstrap.servers": bootstrap}), {topics.unicast: 1})
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    producer.produce(topics.unicast, payload, b"192.168.0.11", headers=[("gs-type", b"GoalStateV2")])
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "raw", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topics.unicast, 0, 0)])
    deadline = time.monotonic() + 60
    msg = None
    while msg is None and time.monotonic() < deadline:
        got = consumer.poll(0.5)
        msg = got if got is not None and got.error() is None else None
    consumer.close()
    assert msg is not None, "nothing consumed"
    assert msg.key() == b"192.168.0.11" and dict(msg.headers())["gs-type"] == b"GoalStateV2"
    expected = gs.GoalStateV2.FromString(payload)
    assert gs.GoalStateV2.FromString(msg.value()) == expected and len(expected.port_states) == 4


def test_gsctl_broker_serves_until_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "gsmq.gsctl", "broker"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    try:
        assert address.startswith("127.0.0.1:")
        assert AdminClient({"bootstrap.servers": address}).list_topics(timeout=10) is not None
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert children, "no broker child"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
