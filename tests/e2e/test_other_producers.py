"""Producers of other languages and libraries: a host's unicast record must be on partition
murmur2(key) % partitions (Java's default partitioner, librdkafka's `murmur2_random`), the
one partition its agent reads. A real aca-agent process, fed by kafka-python (whose default
partitioner is Java's murmur2) with the headers the README documents; and by librdkafka's
default partitioner (consistent_random, CRC32: kcat's), whose record its agent never sees."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from alcor.schema import goalstate_pb2 as gs
from gs_bench.cluster import Daemon, agent_status, answers, host_state, wait_for
from gsmq import gsctl
from gsmq.broker import free_port
from gsmq.kafka import KafkaSettings
from gsmq.kafka_admin import ensure_topics
from gsmq.partition import partition_for
from gsmq.topics import Topics

# kafka-python 3 reads its protocol schemas with importlib.resources' legacy calls
pytestmark = [pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")]

ROOT = Path(__file__).resolve().parents[2]
GOAL_JSON = ROOT / "examples" / "goal_state.json"  # the README's: a subnet and a port for HOST
HOST = "192.168.0.11"


def goal_state() -> bytes:
    return gsctl.encode(GOAL_JSON.read_bytes(), gs.GoalStateV2, str(GOAL_JSON))


def headers(epoch: str, seq: int) -> list[tuple[str, str | bytes | None]]:
    """The headers the README lists for a unicast record from another producer."""
    return [("gs-type", b"GoalStateV2"), ("gs-host-id", HOST.encode()), ("gs-epoch", epoch.encode()),
            ("gs-seq", str(seq).encode()), ("gs-sent-ns", str(time.time_ns()).encode())]


@pytest.fixture
def agent(tmp_path: Path, bootstrap: str, topics: Topics, kafka: KafkaSettings) -> Iterator[Daemon]:
    """aca-agent for HOST, without a DPM (no resync: what it holds came from the records alone),
    on topics created first with the project's partition counts (16 unicast partitions), as a
    DPM would: a producer never creates them with the broker's default of one."""
    ensure_topics(AdminClient(kafka.admin()), topics.default_partitions())
    port = free_port()
    daemon = Daemon("aca", ["aca-agent", "--host-id", HOST, "--bootstrap", bootstrap, "--topic-prefix", topics.prefix,
                            "--status-port", str(port), "--log-json", "true"], tmp_path / "aca.log", port).start()
    try:
        wait_for(lambda: answers(lambda: agent_status(port)), "aca-agent to serve its status")
        yield daemon  # a fresh agent reads its partition from the beginning: no need to wait for more
    finally:
        daemon.stop()


def ports_held(agent: Daemon) -> set[str]:
    return set(host_state(agent.status_port, HOST).port_states)


def test_a_goal_state_from_kafka_python_is_applied_by_the_hosts_agent(agent: Daemon, bootstrap: str, topics: Topics) -> None:
    from kafka import KafkaProducer  # type: ignore[import-untyped]  # kafka-python ships no type information

    partitions = 16
    producer = KafkaProducer(bootstrap_servers=bootstrap)  # its default partitioner: murmur2, as Java's
    try:
        sent = producer.send(topics.unicast, key=HOST.encode(), value=goal_state(), headers=headers("kafka-python-1", 1))
        where = sent.get(timeout=30)
    finally:
        producer.close()
    assert where.partition == partition_for(HOST, partitions)
    wait_for(lambda: ports_held(agent) == {"port-2"}, "the agent to apply the record")
    state = host_state(agent.status_port, HOST)
    assert set(state.subnet_states) == {"subnet-2"}
    counters = agent_status(agent.status_port)
    assert (counters.messages_applied, counters.dead_lettered, counters.resources) == (1, 0, 2)


def test_a_record_on_librdkafkas_default_partition_never_reaches_the_agent(agent: Daemon, bootstrap: str, topics: Topics) -> None:
    partitions = 16
    crc32_partition = zlib.crc32(HOST.encode()) % partitions  # librdkafka's consistent_random for a key
    assert crc32_partition != partition_for(HOST, partitions)  # for this host they differ (4 and 8)
    delivered: list[int] = []

    def send(partitioner: str, epoch: str, value: bytes) -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "partitioner": partitioner})
        producer.produce(topics.unicast, value, HOST.encode(), headers=headers(epoch, 1),
                         on_delivery=lambda err, msg: delivered.append(msg.partition() or 0))
        assert producer.flush(10) == 0

    goal = gs.GoalStateV2.FromString(goal_state())
    stray = gs.GoalStateV2()
    stray.CopyFrom(goal)
    stray.port_states["port-2"].configuration.revision_number = 9  # tells it apart
    send("consistent_random", "crc-1", stray.SerializeToString())  # kcat's default: never read by HOST's agent
    send("murmur2_random", "murmur-1", goal.SerializeToString())
    assert delivered == [crc32_partition, partition_for(HOST, partitions)]
    wait_for(lambda: ports_held(agent) == {"port-2"}, "the agent to apply the murmur2 record")
    time.sleep(1)
    state = host_state(agent.status_port, HOST)
    assert state.port_states["port-2"].configuration.revision_number == 1  # the stray revision 9 never came
    counters = agent_status(agent.status_port)
    assert (counters.messages_applied, counters.messages_other_host) == (1, 0)


def readme_kcat_line() -> str:
    """The kcat command of the README's section on other producers."""
    text = (ROOT / "README.md").read_text()
    lines = re.findall(r"^(kcat -P (?:.*\\\n)*.*)$", text, flags=re.MULTILINE)
    assert len(lines) == 1, lines
    line: str = lines[0]
    return line.replace("\\\n", " ")


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_the_readmes_kcat_line_reaches_the_agent(agent: Daemon, bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    (tmp_path / "goal.bin").write_bytes(goal_state())
    line = readme_kcat_line().replace("127.0.0.1:9092", bootstrap).replace(" gs.unicast ", f" {topics.unicast} ")
    assert f" {topics.unicast} " in line and bootstrap in line, line
    done = subprocess.run(["bash", "-c", line], cwd=tmp_path, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: ports_held(agent) == {"port-2"}, "the agent to apply kcat's record")
    assert shlex.split(line)[0] == "kcat"
