"""The durable desired state through the real broker: a `dpm-server` killed with SIGKILL
and started again rebuilds its snapshot from the changelog topic before it serves, so an
agent restarted afterwards gets back everything it was acknowledged for."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
from collections.abc import Callable

import grpc
import pytest
import test_dpm_daemon
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource
from test_aca_agent import running_agent
from test_dpm_daemon import Process
from test_dpm_service import statuses

from aca_agent.testing import goal_state, port, subnet
from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp
from alcor.schema import goalstateprovisioner_pb2_grpc as gsp_grpc
from dpm_server.testing import subnet_goal
from gs_bench.cluster import listening_pids, wait_for
from gsmq.broker import free_port
from gsmq.errors import TransportError
from gsmq.kafka import KafkaSettings
from gsmq.kafka_admin import admin_client, ensure_topics, partition_count
from gsmq.topics import CHANGELOG_PARTITIONS, Topics
from gsmq.v1 import status_pb2, status_pb2_grpc

H = "10.7.0.31"
PORTS = [f"port-{i}" for i in range(5)]


async def host_snapshot(address: str, host: str) -> gs.GoalStateV2:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = status_pb2_grpc.DpmStatusServiceStub(channel)
        held: gs.GoalStateV2 = await stub.GetHostSnapshot(status_pb2.HostId(host_id=host), timeout=10)
        return held


async def push(address: str, message: gs.GoalStateV2) -> dict[str, int]:
    async with grpc.aio.insecure_channel(address) as channel:
        [reply] = [r async for r in gsp_grpc.GoalStateProvisionerStub(channel).PushGoalStatesStream(iter([message]), timeout=60)]
        return statuses(reply)


spawn = test_dpm_daemon.spawn  # dpm-server console scripts, killed at the end (a fixture)


def start_dpm(spawn: Callable[..., Process], address: str, bootstrap: str, topics: Topics, *extra: str) -> Process:
    dpm = spawn("--grpc-address", address, "--bootstrap", bootstrap, "--topic-prefix", topics.prefix, *extra)
    dpm.wait_for(lambda: dpm.event("dpm_ready"), "dpm_ready", deadline=60)
    return dpm


# The DPM makes the changelog with one partition; one made with more (by an operator, or an
# earlier DPM) is replayed whole by a DPM at the default.
@pytest.mark.parametrize("partitions", [None, 3], ids=["default partitions", "3 partitions"])
async def test_a_dpm_killed_and_restarted_keeps_every_acknowledged_state_for_a_restarted_agent(
    spawn: Callable[..., Process], bootstrap: str, kafka: KafkaSettings, topics: Topics, partitions: int | None
) -> None:
    address = f"127.0.0.1:{free_port()}"
    extra = () if partitions is None else ("--changelog-partitions", str(partitions))
    first = start_dpm(spawn, address, bootstrap, topics, *extra)
    assert first.event("changelog_replayed") is not None and first.event("changelog_replayed")["resources"] == 0  # type: ignore[index]
    async with running_agent(bootstrap, topics, "--host-id", H, "--dpm-address", address):
        assert set((await push(address, goal_state(H, subnet(), *(port(rid=p) for p in PORTS)))).values()) == {common.SUCCESS}
        before = await host_snapshot(address, H)
        assert sorted(before.port_states) == PORTS
    first.proc.kill()  # SIGKILL: nothing flushed, nothing saved on the way out
    first.proc.wait()
    second = start_dpm(spawn, address, bootstrap, topics)  # at the default: the topic keeps the partitions it has
    replayed = second.event("changelog_replayed")
    assert replayed is not None and (replayed["resources"], replayed["hosts"], replayed["incarnation"]) == (6, 1, 2)
    assert await host_snapshot(address, H) == before
    async with running_agent(bootstrap, topics, "--host-id", H, "--dpm-address", address) as agent:  # an empty data plane
        held = await agent.host_state(H)
        for _ in range(600):
            held = await agent.host_state(H)
            if sorted(held.port_states) == PORTS:
                break
            await asyncio.sleep(0.05)
        assert sorted(held.port_states) == PORTS and list(held.subnet_states) == ["sn-1"]
    admin = AdminClient(kafka.admin())
    [config] = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topics.changelog)]).values()
    assert config.result()["cleanup.policy"].value == "compact"
    assert partition_count(admin, topics.changelog) == (partitions or CHANGELOG_PARTITIONS)


async def test_a_second_dpm_on_the_topics_fences_the_first_which_exits_with_one_line(
    spawn: Callable[..., Process], bootstrap: str, topics: Topics
) -> None:
    first_address, second_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    first = start_dpm(spawn, first_address, bootstrap, topics)
    async with running_agent(bootstrap, topics, "--host-id", H, "--dpm-address", first_address):
        assert set((await push(first_address, goal_state(H, subnet()))).values()) == {common.SUCCESS}
        second = start_dpm(spawn, second_address, bootstrap, topics)  # takes the changelog over
        replayed = second.event("changelog_replayed")
        assert replayed is not None and replayed["resources"] == 1
        with contextlib.suppress(grpc.aio.AioRpcError):  # the first may stop while the call is open
            await push(first_address, goal_state(H, port()))
        assert first.proc.wait(timeout=60) == 1
        fenced = first.event("dpm_fenced")
        assert fenced is not None and "another dpm-server" in str(fenced["why"])
    assert second.terminate() == 0
    third = start_dpm(spawn, second_address, bootstrap, topics)  # what the changelog holds: nothing the fenced one wrote
    replayed = third.event("changelog_replayed")
    assert replayed is not None and replayed["resources"] == 1
    assert "port-1" not in (await host_snapshot(second_address, H)).port_states


def test_a_second_dpm_on_the_same_grpc_address_fails_before_it_fences_the_first(
    spawn: Callable[..., Process], bootstrap: str, topics: Topics
) -> None:
    address = f"127.0.0.1:{free_port()}"
    first = start_dpm(spawn, address, bootstrap, topics)
    second = spawn("--grpc-address", address, "--bootstrap", bootstrap, "--topic-prefix", topics.prefix)
    assert second.proc.wait(timeout=60) != 0
    assert f"cannot listen on {address}" in second.log_path.read_text()
    assert second.event("changelog_replayed") is None  # it never took the changelog over
    assert first.proc.poll() is None and first.terminate() == 0


async def test_a_resource_listed_for_30000_hosts_survives_a_restart_through_chunk_records(
    spawn: Callable[..., Process], bootstrap: str, topics: Topics
) -> None:
    """Its hosts (about 420 KB of ids) are more than one record may hold: they go in chunk
    records, the input in slices; a DPM killed and started again has every one of them."""
    address = f"127.0.0.1:{free_port()}"
    hosts = [f"10.{50 + i // 65536}.{(i // 256) % 256}.{i % 256}" for i in range(30_000)]
    args = ("--grpc-address", address, "--bootstrap", bootstrap, "--topic-prefix", topics.prefix, "--reply-timeout", "3",
            "--retry-after", "2")
    first = spawn(*args)
    first.wait_for(lambda: first.event("dpm_ready"), "dpm_ready", deadline=60)
    reply = await push(address, subnet_goal("vpc-1", hosts))  # nobody applies it: every host is silent
    assert reply["subnet-vpc-1"] == common.FAILURE and first.event("input_sliced") is not None
    first.proc.kill()
    first.proc.wait()
    second = spawn(*args)
    second.wait_for(lambda: second.event("dpm_ready"), "dpm_ready", deadline=60)
    replayed = second.event("changelog_replayed")
    assert replayed is not None and (replayed["resources"], replayed["hosts"]) == (1, len(hosts))
    for host in (hosts[0], hosts[-1]):
        assert list((await host_snapshot(address, host)).subnet_states) == ["subnet-vpc-1"]


async def test_failures_are_warnings_naming_their_hosts_and_counted(spawn: Callable[..., Process], bootstrap: str, topics: Topics) -> None:
    """A producer whose message limit (1,000 bytes) is under the DPM's own split size: a
    request to a silent host, a publish and a resync that the producer refuses."""
    address = f"127.0.0.1:{free_port()}"
    dpm = spawn("--grpc-address", address, "--bootstrap", bootstrap, "--topic-prefix", topics.prefix, "--reply-timeout", "2",
                "--retry-after", "1", "--max-message-bytes", "100000", "-X", "message.max.bytes=1000")
    dpm.wait_for(lambda: dpm.event("dpm_ready"), "dpm_ready", deadline=60)
    assert (await push(address, goal_state(H, subnet())))["sn-1"] == common.FAILURE  # nobody serves H
    silent = dpm.event("request_failed")
    assert silent is not None and (silent["level"], silent["hosts"]) == ("warning", [H])
    many = await push(address, goal_state(H, *(port(rid=p) for p in [f"big-port-{i}" for i in range(10)])))  # over 1,000 bytes
    assert set(many.values()) == {common.FAILURE}
    assert dpm.event("publish_failed") is not None
    async with grpc.aio.insecure_channel(address) as channel:
        request = gsp.HostRequest(format_version=1)
        request.state_requests.add(request_type=common.AGENT_RESTARTED, request_id="r1", source_ip=H)
        answer = await gsp_grpc.GoalStateProvisionerStub(channel).RequestGoalStates(request, timeout=10)
        assert [s.operation_status for s in answer.operation_statuses] == [common.FAILURE]
        status = await status_pb2_grpc.DpmStatusServiceStub(channel).GetStatus(status_pb2.StatusRequest(), timeout=10)
    failed = dpm.event("resync_failed")
    assert failed is not None and (failed["level"], failed["host"]) == ("warning", H) and status.resync_failures >= 1


def serving_again(kafka: KafkaSettings, probe: str) -> None:
    """Wait until the shared broker, resumed after SIGSTOP, creates and leads a new topic: its
    controller may have fenced it while it was stopped, and the tests after this one expect
    a broker that takes their topics at once. Each attempt asks a new client for a new topic:
    `ensure_topics` returns at once for a topic that exists, led or not, and one client was
    seen failing every attempt for a minute while the tests after it found the broker serving."""
    attempts = itertools.count()

    def created() -> bool:
        try:  # returns once the new topic has its leader
            ensure_topics(admin_client(kafka), {f"{probe}-{next(attempts)}": 1})
        except (TransportError, KafkaException):  # not answering yet
            return False
        return True

    wait_for(created, "the broker to create and lead a topic after SIGCONT")


async def test_changes_the_broker_never_took_before_a_stop_are_a_warning(spawn: Callable[..., Process], bootstrap: str,
                                                                         kafka: KafkaSettings, topics: Topics) -> None:
    """The broker stopped (SIGSTOP) under an input: at the DPM's SIGTERM its changelog write
    is still unwritten, and `messages_dropped_at_stop` says so at WARNING."""
    address = f"127.0.0.1:{free_port()}"
    dpm = spawn("--grpc-address", address, "--bootstrap", bootstrap, "--topic-prefix", topics.prefix)
    dpm.wait_for(lambda: dpm.event("dpm_ready"), "dpm_ready", deadline=60)
    pids = listening_pids(int(bootstrap.rsplit(":", 1)[1]))
    assert pids, "the embedded broker runs on this machine"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        pushed = asyncio.ensure_future(push(address, goal_state(H, subnet())))
        await asyncio.sleep(1.0)  # the input is in; its transaction cannot commit
        assert not pushed.done()
        assert await asyncio.to_thread(dpm.terminate) in (0, 1)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        await asyncio.to_thread(serving_again, kafka, f"{topics.prefix}.resumed")
    with contextlib.suppress(grpc.aio.AioRpcError):
        await pushed
    dropped = dpm.event("messages_dropped_at_stop")
    assert dropped is not None and dropped["level"] == "warning"
    unwritten = dropped["changelog_writes_unwritten"]
    assert isinstance(unwritten, int) and unwritten >= 1
