"""What operators and their tools see of the daemons: --version, gRPC health and reflection."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from gs_bench.cluster import Daemon, dpm_status, start_agent, start_dpm, start_sim, wait_for
from gs_bench.runner import push
from gs_bench.topology import port_message, ports_of, subnet_message
from gsmq.broker import free_port
from gsmq.topics import Topics

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("command", [["dpm-server"], ["aca-agent"], ["aca-agent", "sim"], ["gs-bench"], ["gsctl"]])
def test_every_daemon_answers_version_with_its_kafka_client(command: list[str]) -> None:
    done = subprocess.run([str(BIN / command[0]), *command[1:], "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith(f"{command[0]} ") and "librdkafka" in done.stdout and "Apache Kafka" in done.stdout


def health(address: str, service: str = "") -> str:
    with grpc.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs' types lag the generated code
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))


def services(address: str) -> set[str]:
    with grpc.insecure_channel(address) as channel:
        stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
        [answer] = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
        return {s.name for s in answer.list_services_response.service}


@pytest.fixture
def dpm(tmp_path: Path, bootstrap: str, topics: Topics) -> Iterator[Daemon]:
    daemon = start_dpm(tmp_path, bootstrap, topics.prefix)
    yield daemon
    daemon.stop()


def test_the_dpm_serves_health_and_reflection(dpm: Daemon) -> None:
    address = f"127.0.0.1:{dpm.status_port}"
    wait_for(lambda: health(address) == "SERVING", "the DPM's health to be SERVING")
    assert health(address, "alcor.schema.GoalStateProvisioner") == "SERVING"
    assert services(address) >= {"alcor.schema.GoalStateProvisioner", "gsmq.v1.DpmStatusService", "gsmq.v1.AgentRegistry",
                                 "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


async def until_health(address: str, status: str, seconds: float = 60.0) -> bool:
    """Whether the server's health reads `status` within `seconds` (not answering yet counts as not)."""
    for _ in range(int(seconds * 10)):
        try:
            if await asyncio.to_thread(health, address) == status:
                return True
        except grpc.RpcError:
            pass
        await asyncio.sleep(0.1)
    return False


async def _forward(listen_port: int, target: str) -> asyncio.Server:
    """A TCP forwarder from 127.0.0.1:listen_port to `target` (the broker appears there)."""
    host, _, port = target.rpartition(":")

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return await asyncio.start_server(handle, "127.0.0.1", listen_port)


async def test_the_agent_is_not_serving_until_it_reaches_the_broker(tmp_path: Path, bootstrap: str, topics: Topics, dpm: Daemon) -> None:
    """Started with a bootstrap address where no broker is yet, the agent's status port answers
    NOT_SERVING; once the broker is reachable there it turns SERVING."""
    where = free_port()
    agent = start_agent(tmp_path, f"127.0.0.1:{where}", topics.prefix, dpm.status_port, "10.8.0.1")
    try:
        address = f"127.0.0.1:{agent.status_port}"
        for _ in range(5):
            assert await asyncio.to_thread(health, address) == "NOT_SERVING"
            assert await asyncio.to_thread(health, address, "gsmq.v1.AgentStatusService") == "NOT_SERVING"
            await asyncio.sleep(0.3)
        assert "gsmq.v1.AgentStatusService" in await asyncio.to_thread(services, address)
        forwarder = await _forward(where, bootstrap)
        try:
            assert await until_health(address, "SERVING"), agent.logs()[-2000:]
        finally:
            forwarder.close()
    finally:
        agent.stop()
    # While the broker was missing librdkafka complained: through structlog, never raw lines.
    events = [json.loads(line) for line in agent.logs().splitlines() if line.strip()]
    assert all(e["service"] == "aca-agent" and e["host_id"] == "10.8.0.1" and e["pid"] and e["version"] for e in events)
    assert any(e["event"] == "librdkafka" and e["level"] in ("error", "warning") for e in events)
    assert [e["serving"] for e in events if e["event"] == "agent_health"] == [True]


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """/metrics parsed by prometheus_client's own parser: sample name -> [(labels, value)]."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_after_a_storm_both_daemons_metrics_parse_and_count_it(tmp_path: Path, bootstrap: str, topics: Topics) -> None:
    dpm_port, sim_port = free_port(), free_port()
    dpm = start_dpm(tmp_path, bootstrap, topics.prefix, "vpc-multicast", "--metrics-port", str(dpm_port), "--path", "mq")
    hosts = [f"10.6.0.{i}" for i in range(1, 5)]
    sim = start_sim(tmp_path, bootstrap, topics.prefix, dpm.status_port, len(hosts), hosts[0], "metrics", "--metrics-port", str(sim_port))
    try:
        layout = {"vpc-m": dict.fromkeys(hosts, 2)}
        inputs = [subnet_message("vpc-m", hosts)] + [port_message(p, hosts) for p in ports_of(layout)]
        # two pushes: by the second the VPC has members, so its new neighbors go by multicast however the DPM batches
        done = [push(f"127.0.0.1:{dpm.status_port}", part) for part in (inputs[:5], inputs[5:])]
        assert sum(len(d.reply_ns) for d in done) == 9 and sum(d.failures for d in done) == 0
        dpm_metrics, sim_metrics = scrape(dpm_port), scrape(sim_port)
    finally:
        sim.stop()
        dpm.stop()

    def value(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
        return sum(v for got, v in metrics[name] if labels.items() <= got.items())

    assert value(dpm_metrics, "gsmq_dpm_goal_states_received_total") == 9 == value(dpm_metrics, "gsmq_dpm_goal_states_answered_total")
    assert value(dpm_metrics, "gsmq_dpm_messages_total", channel="multicast") > 0
    assert value(dpm_metrics, "gsmq_dpm_bytes_total", channel="unicast") > 0
    assert value(dpm_metrics, "gsmq_dpm_acks_total") > 0 and value(dpm_metrics, "gsmq_dpm_hosts") == len(hosts)
    assert value(dpm_metrics, "gsmq_dpm_request_seconds_count") == 9
    # every input answered: nothing in flight, and a storm this small leaves the bound at --max-in-flight-hosts
    assert value(dpm_metrics, "gsmq_dpm_host_deliveries_in_flight") == 0
    assert value(dpm_metrics, "gsmq_dpm_host_deliveries_bound") == 100_000
    for name in ("gsmq_dpm_retries_total", "gsmq_dpm_resyncs_total", "gsmq_dpm_dead_letters_total", "gsmq_dpm_requests_failed_total",
                 "gsmq_dpm_requests_in_flight", "gsmq_dpm_agents_registered", "gsmq_dpm_path_switches_total"):
        assert name in dpm_metrics
    assert value(sim_metrics, "gsmq_aca_messages_applied_total") > 0 and value(sim_metrics, "gsmq_aca_acks_sent_total") > 0
    assert value(sim_metrics, "gsmq_aca_bytes_total", channel="kafka") > 0 and value(sim_metrics, "gsmq_aca_hosts") == len(hosts)
    assert value(sim_metrics, "gsmq_aca_followed_vpcs") == len(hosts)
    assert value(sim_metrics, "gsmq_aca_publish_to_applied_seconds_count") > 0
    assert value(sim_metrics, "gsmq_aca_apply_seconds_count") >= value(sim_metrics, "gsmq_aca_publish_to_applied_seconds_count")
    assert "gsmq_aca_consumer_lag" in sim_metrics and all(v >= 0 for _, v in sim_metrics["gsmq_aca_consumer_lag"])


async def test_the_dpm_serves_health_and_reflection_before_it_reaches_the_broker(tmp_path: Path, bootstrap: str, topics: Topics) -> None:
    """Started with a bootstrap address where no broker is yet, the DPM's port answers health
    NOT_SERVING, reflection, and UNAVAILABLE for its API; once the broker is reachable
    there it loads its state and turns SERVING."""
    where, port = free_port(), free_port()
    dpm = Daemon("dpm", ["dpm-server", "--bootstrap", f"127.0.0.1:{where}", "--topic-prefix", topics.prefix,
                         "--grpc-address", f"127.0.0.1:{port}", "--log-json", "true"], tmp_path / "dpm.log", port).start()
    address = f"127.0.0.1:{port}"
    try:
        assert await until_health(address, "NOT_SERVING")  # the port answers before the broker does
        assert await asyncio.to_thread(health, address, "gsmq.v1.DpmStatusService") == "NOT_SERVING"
        assert "alcor.schema.GoalStateProvisioner" in await asyncio.to_thread(services, address)
        with pytest.raises(grpc.RpcError) as refused:
            await asyncio.to_thread(dpm_status, port)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        forwarder = await _forward(where, bootstrap)
        try:
            assert await until_health(address, "SERVING"), dpm.logs()[-2000:]
            assert (await asyncio.to_thread(dpm_status, port)).path == "auto"
        finally:
            forwarder.close()
    finally:
        dpm.stop()
