"""The embedded broker itself: starts, answers, partitions like Java, stops without orphans."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Message, Producer
from confluent_kafka.admin import AdminClient

from gsmq import broker as broker_module
from gsmq import kraft
from gsmq.broker import embedded_or_external, start_embedded
from gsmq.errors import TransportError
from gsmq.kafka import ENV_BOOTSTRAP, KafkaSettings
from gsmq.kafka_admin import ensure_topics, partition_count
from gsmq.kafka_transport import KafkaSource
from gsmq.partition import partition_for
from gsmq.topics import Topics


def test_librdkafka_murmur2_random_agrees_with_our_partitioner(kafka: KafkaSettings, topics: Topics) -> None:
    admin = AdminClient(kafka.admin())
    ensure_topics(admin, {topics.unicast: 8})
    assert partition_count(admin, topics.unicast) == 8
    producer = Producer(kafka.producer())
    landed: dict[bytes, int] = {}
    keys = [f"10.0.{i // 256}.{i % 256}".encode() for i in range(64)] + [b"a", b"vpc-7"]
    def on_delivery(err: object, msg: Message) -> None:
        key, partition = msg.key(), msg.partition()
        assert isinstance(key, bytes) and partition is not None
        landed[key] = partition

    for key in keys:
        producer.produce(topics.unicast, key=key, value=b"x", on_delivery=on_delivery)
    assert producer.flush(10) == 0
    assert landed == {key: partition_for(key, 8) for key in keys}


def test_stop_ends_the_process_and_removes_its_data_from_the_folder_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kraft.ENV_TMP, str(tmp_path))
    broker = start_embedded()
    root = getattr(broker, "root", None)  # Apache Kafka's data folder (Tansu keeps its data in memory)
    assert root is None or (root.parent == tmp_path and root.is_dir())
    assert broker.process.poll() is None
    broker.stop()
    assert broker.process.poll() is not None
    assert root is None or not root.exists()
    broker.stop()  # idempotent


def test_no_orphan_after_owner_is_killed() -> None:
    code = ("from gsmq.broker import start_embedded; import sys, time; b = start_embedded(); "
            "print(b.process.pid, getattr(b, 'root', ''), flush=True); time.sleep(60)")
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    pid_text, _, root = owner.stdout.readline().strip().partition(" ")
    pid = int(pid_text)
    owner.kill()
    owner.wait()
    try:
        # The broker got SIGTERM through PR_SET_PDEATHSIG; wait for it to be gone.
        for _ in range(200):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split()[2] == "Z":
                    return
            subprocess.run(["sleep", "0.05"], check=True)
        raise AssertionError(f"broker {pid} still runs after its owner was killed")
    finally:
        if root:  # the killed owner could not remove its broker's data
            shutil.rmtree(root, ignore_errors=True)


def test_kafka_bootstrap_servers_is_used_and_nothing_started(bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[object] = []
    monkeypatch.setattr(broker_module, "start_embedded", lambda: started.append(1))
    monkeypatch.setenv(ENV_BOOTSTRAP, bootstrap)
    with embedded_or_external() as address:
        assert address == bootstrap
        assert AdminClient({"bootstrap.servers": address}).list_topics(timeout=10).brokers  # the named cluster answers
    with embedded_or_external("elsewhere:9092") as address:  # an explicit address wins over the variable
        assert address == "elsewhere:9092"
    assert started == []


@pytest.mark.skipif(broker_module.kafka_unavailable() is not None, reason="needs Apache Kafka")
def test_a_cluster_id_that_starts_with_a_dash_still_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    # One id in 64 starts with "-" in base64url; kafka-storage must not read it as an option.
    dashed = "-" + kraft.random_cluster_id()[1:]
    monkeypatch.setattr(kraft, "random_cluster_id", lambda: dashed)
    cluster = kraft.start_kafka()
    try:
        assert cluster.cluster_id.startswith("-")
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        ensure_topics(admin, {"dash.probe": 2})
        assert partition_count(admin, "dash.probe") == 2
    finally:
        cluster.stop()


def test_a_fresh_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(bytes=b"\x04" + b"\x00" * 15)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(drawn))
    assert kraft.random_cluster_id() == "BAAAAAAAAAAAAAAAAAAAAA"  # the first draw, "-AAA...", was refused



def test_an_error_consumed_with_messages_loses_none_of_them(kafka: KafkaSettings, topic_prefix: str) -> None:
    # librdkafka hands back the error of one partition in the same batch as another's messages.
    real, other = f"{topic_prefix}.real", f"{topic_prefix}.other"
    ensure_topics(AdminClient({"bootstrap.servers": kafka.bootstrap}), {real: 1, other: 1})
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    for i in range(3):
        producer.produce(real, f"r{i}".encode())
        producer.produce(other, b"o")
    assert producer.flush(10) == 0
    source = KafkaSource(kafka, f"{topic_prefix}.g", **{"auto.offset.reset": "error"})
    try:
        source.assign([(real, 0, 0), (other, 0, 100)])  # offset 100 of `other` is out of range
        got: list[bytes] = []
        errors: list[TransportError] = []
        for _ in range(40):
            try:
                got += [env.value for env in source.poll_batch(100, 0.25)]
            except TransportError as exc:
                errors.append(exc)
            if len(got) == 3 and errors:
                break
        assert got == [b"r0", b"r1", b"r2"]
        assert errors and "out of range" in str(errors[0]).lower()
    finally:
        source.close()
