"""`gsctl broker --security sasl_ssl`: both daemons end to end with the properties it printed; who is refused."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient

from alcor.schema import common_pb2 as common
from alcor.schema import goalstateprovisioner_pb2_grpc as gsp_grpc
from gs_bench.cluster import host_state, start_agent, start_dpm, wait_for
from gs_bench.topology import (
    expected_tables,
    port_message,
    ports_of,
    subnet_message,
    tables_of,
)
from gsmq.broker import kafka_unavailable
from gsmq.kafka_admin import ensure_topics
from gsmq.topics import Topics

pytestmark = pytest.mark.skipif(kafka_unavailable() is not None, reason=f"needs Apache Kafka: {kafka_unavailable()}")

PREFIX = "sec"
HOSTS = ["192.168.9.1", "192.168.9.2"]


@dataclass
class Secured:
    """What `gsctl broker --security sasl_ssl` printed: the address, the DPM's properties, the agent's password."""

    bootstrap: str
    dpm: dict[str, str]
    agent_password: str

    @property
    def agent(self) -> dict[str, str]:
        return {**self.dpm, "sasl.username": "agent", "sasl.password": self.agent_password}


@pytest.fixture(scope="module")
def secured() -> Iterator[Secured]:
    proc = subprocess.Popen([sys.executable, "-m", "gsmq.gsctl", "broker", "--security", "sasl_ssl", "--topic-prefix", PREFIX],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        bootstrap = proc.stdout.readline().strip()
        assert bootstrap.startswith("127.0.0.1:"), proc.stderr.read() if proc.poll() is not None else bootstrap
        props: dict[str, str] = {}
        while not (line := proc.stdout.readline().strip()).startswith("# agent:"):
            key, _, value = line.partition("=")
            props[key] = value
        agent = dict(kv.split("=", 1) for kv in line.removeprefix("# agent:").split())
        assert set(props) == {"security.protocol", "ssl.ca.location", "sasl.mechanism", "sasl.username", "sasl.password"}
        assert agent["sasl.username"] == "agent"
        yield Secured(bootstrap, props, agent["sasl.password"])
    finally:
        proc.terminate()
        proc.wait(60)


def flags(props: dict[str, str]) -> list[str]:
    return [arg for key, value in props.items() for arg in ("-X", f"{key}={value}")]


def produce(bootstrap: str, props: dict[str, str], topic: str) -> KafkaError | None:
    """Produce one record; the delivery error (None: delivered)."""
    errors: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": bootstrap, **props, "message.timeout.ms": 15000})
    producer.produce(topic, key=b"k", value=b"v", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(30)
    assert len(errors) == 1
    return errors[0]


def connect_errors(bootstrap: str, props: dict[str, str], deadline: float = 5.0) -> list[KafkaError]:
    """The errors a client meets asking for metadata with `props` (empty: it was served): asked
    again every 0.25 s until it is served, or refused (error_cb names why), or `deadline` passed."""
    seen: list[KafkaError] = []
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, **props, "error_cb": seen.append, "log_level": 0}
    admin = AdminClient(conf)
    end = time.monotonic() + deadline
    while True:
        try:
            admin.list_topics(timeout=0.25)
            return seen
        except Exception as exc:  # noqa: BLE001 - the refusal is the point
            admin.poll(0.1)  # error_cb is served by poll(): why the connection was refused, if it was
            if seen or time.monotonic() >= end:
                return [exc.args[0], *seen]


def test_dpm_to_agent_end_to_end_over_sasl_ssl(secured: Secured, tmp_path: Path) -> None:
    dpm = start_dpm(tmp_path, secured.bootstrap, PREFIX, "vpc-multicast", "--reply-timeout", "60", *flags(secured.dpm))
    agents = {h: start_agent(tmp_path, secured.bootstrap, PREFIX, dpm.status_port, h, *flags(secured.agent)) for h in HOSTS}
    try:
        messages = [subnet_message("vpc-s", HOSTS)] + [port_message(p, HOSTS) for p in ports_of({"vpc-s": dict.fromkeys(HOSTS, 2)})]
        with grpc.insecure_channel(f"127.0.0.1:{dpm.status_port}") as channel:
            replies = list(gsp_grpc.GoalStateProvisionerStub(channel).PushGoalStatesStream(iter(messages), timeout=300))
        assert len(replies) == len(messages)
        assert all(r.operation_statuses and all(s.operation_status == common.SUCCESS for s in r.operation_statuses) for r in replies)
        for host, agent in agents.items():
            want = expected_tables(messages, host)
            wait_for(lambda a=agent, h=host, w=want: tables_of(host_state(a.status_port, h)) == w, f"{host} to apply")  # type: ignore[misc]
    finally:
        for daemon in [*agents.values(), dpm]:
            daemon.stop()


def test_a_wrong_password_is_refused(secured: Secured) -> None:
    errors = connect_errors(secured.bootstrap, {**secured.dpm, "sasl.password": "wrong"})
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors


def test_a_client_without_credentials_is_refused(secured: Secured) -> None:
    tls_only = {k: v for k, v in secured.dpm.items() if not k.startswith("sasl.")} | {"security.protocol": "SSL"}
    assert connect_errors(secured.bootstrap, tls_only)
    assert connect_errors(secured.bootstrap, {})  # plaintext on the TLS listener
    assert connect_errors(secured.bootstrap, secured.dpm) == []  # while the right credentials are served


def test_the_agent_principal_may_not_write_a_goal_state_topic(secured: Secured) -> None:
    topics = Topics(PREFIX)
    ensure_topics(AdminClient({"bootstrap.servers": secured.bootstrap, **secured.dpm}), {topics.unicast: 2, topics.reply: 2})
    refused = produce(secured.bootstrap, secured.agent, topics.unicast)
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, refused
    assert produce(secured.bootstrap, secured.agent, topics.reply) is None  # its own reply topic it may write
    assert produce(secured.bootstrap, secured.dpm, topics.unicast) is None  # the DPM may write goal states



def test_ssl_serves_tls_clients_with_the_generated_ca_and_refuses_plaintext() -> None:
    from gsmq.kraft import start_kafka

    broker = start_kafka(1, security="ssl")
    try:
        assert set(broker.properties) == {"security.protocol", "ssl.ca.location"}
        assert broker.properties["security.protocol"] == "SSL"
        assert connect_errors(broker.bootstrap, broker.properties) == []
        assert connect_errors(broker.bootstrap, {})  # plaintext on the TLS listener
    finally:
        broker.stop()
