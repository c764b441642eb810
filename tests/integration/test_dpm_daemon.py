"""dpm-server through the real broker: invalid input, silent hosts, resync, routability, bad config."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from confluent_kafka import Consumer, TopicPartition

from bench.cluster import Daemon, start_dpm
from bench.topology import Port, port_message, subnet_message
from gsmq.topics import Topics
from proto import common_pb2 as common
from proto import goalstate_pb2 as gs
from proto import goalstateprovisioner_pb2 as gsp
from proto import goalstateprovisioner_pb2_grpc as gsp_grpc

HOST = "192.168.9.1"
PORT = Port("port-1", "vpc-x", HOST, "10.0.0.5", "fa:16:3e:00:00:05")


@pytest.fixture
def dpm(tmp_path: Path, bootstrap: str, topics: Topics) -> Iterator[Daemon]:
    daemon = start_dpm(tmp_path, bootstrap, topics.prefix, "vpc-multicast", "--reply-timeout", "2", "--retry-after", "1")
    yield daemon
    daemon.stop()


def stub(daemon: Daemon) -> gsp_grpc.GoalStateProvisionerStub:
    return gsp_grpc.GoalStateProvisionerStub(grpc.insecure_channel(f"127.0.0.1:{daemon.status_port}"))


def read_all(bootstrap: str, topic: str, partitions: int = 16) -> list[tuple[dict[str, bytes], bytes]]:
    """(headers, value) of every goal state on `topic`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "dpm-test", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, idle = [], 0
    while idle < 6:
        batch = consumer.consume(500, 0.25)
        idle = idle + 1 if not batch else 0
        out += [(dict(m.headers() or []), m.value()) for m in batch if m.error() is None]
    consumer.close()
    return [(h, v) for h, v in out if h.get("gs-type") == b"GoalStateV2"]


def test_invalid_input_gets_invalid_arg_and_nothing_is_published(dpm: Daemon, bootstrap: str, topics: Topics) -> None:
    goal = port_message(PORT, [HOST])
    goal.host_resources[HOST].resources.add(type=common.PORT, id="port-not-in-message")
    goal.port_states["port-empty"].operation_type = common.CREATE  # no configuration
    (reply,) = stub(dpm).PushGoalStatesStream(iter([goal]), timeout=30)
    bad = {(s.resource_id, s.operation_status) for s in reply.operation_statuses}
    assert bad == {("port-not-in-message", common.INVALID_ARG), ("port-empty", common.INVALID_ARG)}
    assert read_all(bootstrap, topics.unicast) == [] and read_all(bootstrap, topics.multicast) == []


def test_a_silent_host_is_retried_then_failed(dpm: Daemon, bootstrap: str, topics: Topics) -> None:
    replies = list(stub(dpm).PushGoalStatesStream(iter([subnet_message("vpc-x", [HOST]), port_message(PORT, [HOST])]), timeout=60))
    last = replies[-1]
    statuses = {s.resource_id: s.operation_status for s in last.operation_statuses}
    assert statuses[f"host:{HOST}"] == common.FAILURE
    assert statuses["port-1"] == statuses["dhcp-port-1"] == common.FAILURE
    seqs = [h["gs-seq"] for h, _ in read_all(bootstrap, topics.unicast) if h.get("gs-host-id") == HOST.encode()]
    assert len(seqs) == len(set(seqs)) >= 4  # two messages, each retried once, every one with its own sequence


def test_agent_restarted_publishes_the_full_state_and_on_demand_answers_routability(dpm: Daemon, bootstrap: str, topics: Topics) -> None:
    list(stub(dpm).PushGoalStatesStream(iter([subnet_message("vpc-x", [HOST]), port_message(PORT, [HOST])]), timeout=60))
    request = gsp.HostRequest(format_version=1)
    request.state_requests.add(request_type=common.AGENT_RESTARTED, request_id="r1", source_ip=HOST)
    request.state_requests.add(request_type=common.ON_DEMAND, request_id="r2", source_ip=HOST, destination_ip="10.0.0.5")
    request.state_requests.add(request_type=common.ON_DEMAND, request_id="r3", source_ip=HOST, destination_ip="10.9.9.9")
    request.state_requests.add(request_type=common.AGENT_RESTARTED, request_id="r4", source_ip="")
    answer = stub(dpm).RequestGoalStates(request, timeout=30)
    assert [(s.request_id, s.operation_status) for s in answer.operation_statuses] == [
        ("r1", common.SUCCESS), ("r2", common.SUCCESS), ("r3", common.FAILURE), ("r4", common.INVALID_ARG)]
    deadline = time.monotonic() + 30
    full: list[gs.GoalStateV2] = []
    while not full and time.monotonic() < deadline:
        full = [gs.GoalStateV2.FromString(v) for h, v in read_all(bootstrap, topics.unicast) if h.get("gs-full") == b"1"]
    assert len(full) == 1
    assert set(full[0].port_states) == {"port-1"} and set(full[0].dhcp_states) == {"dhcp-port-1"}
    assert set(full[0].subnet_states) == {"subnet-vpc-x"}


def test_v1_goal_states_are_unimplemented(dpm: Daemon) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub(dpm).PushNetworkResourceStates(gs.GoalState(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize(
    "args,says",
    [(["--reply-timeout", "-1"], "--reply-timeout"), (["--grpc-address", "nonsense"], "--grpc-address"),
     (["--strategy", "bogus"], "invalid choice"), (["--config", "/no/such.toml"], "/no/such.toml"),
     (["--retry-after", "20", "--reply-timeout", "10"], "--retry-after")],
)
def test_bad_configuration_is_one_line_and_exit_2(args: list[str], says: str) -> None:
    done = subprocess.run([sys.executable, "-m", "dpm_server", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert says in done.stderr and "Traceback" not in done.stderr
