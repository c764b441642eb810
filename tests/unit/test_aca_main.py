"""aca-agent's configuration (flags > ACA_* environment > TOML) and its in-memory data plane."""

from __future__ import annotations

from pathlib import Path

import pytest

from aca_agent.applier import Applier
from aca_agent.dataplane import MemoryDataPlane
from aca_agent.main import main, parse_config
from aca_agent.testing import goal_state, port, security_group, subnet
from alcor.schema import common_pb2 as common
from alcor.schema import goalstate_pb2 as gs
from gsmq.config import ConfigError


def test_single_host_config_from_flags_environment_and_file(tmp_path: Path) -> None:
    toml = tmp_path / "aca.toml"
    toml.write_text('max_batch = 50\nchannel = "unicast"\n[kafka]\n"security.protocol" = "PLAINTEXT"\n')
    env = {"ACA_DPM_ADDRESS": "dpm:9000", "ACA_STATUS_PORT": "7001", "ACA_MAX_BATCH": "70"}
    config = parse_config(["--host-id", "10.0.0.5", "--config", str(toml), "--status-port", "7002", "-X", "linger.ms=1"], env)
    assert config.hosts == ("10.0.0.5",) and config.group == "aca.10.0.0.5"
    assert config.status_port == 7002  # flag over environment
    assert config.dpm_address == "dpm:9000"  # environment
    assert config.max_batch == 70  # environment over file
    assert config.channel == "unicast"  # file over default
    assert config.kafka_properties == {"security.protocol": "PLAINTEXT", "linger.ms": "1"}
    assert config.bootstrap is None and config.grpc_port == 0


def test_sim_config_names_consecutive_hosts_and_its_group() -> None:
    config = parse_config(["sim", "--hosts", "3", "--first-host", "10.1.0.254", "--name", "lab"], {})
    assert config.hosts == ("10.1.0.254", "10.1.0.255", "10.1.1.0")
    assert config.group == "aca-sim.lab"
    assert not config.stream_per_host  # one fast-path stream for all its hosts unless asked
    assert parse_config(["sim", "--hosts", "3"], {"ACA_STREAM_PER_HOST": "true"}).stream_per_host


@pytest.mark.parametrize(
    "argv",
    [
        [],  # no host id
        ["sim"],  # no host count
        ["sim", "--hosts", "2", "--first-host", "10.1.0"],
        ["sim", "--hosts", "2", "--first-host", "255.255.255.255"],  # runs past the address space
        ["--host-id", "10.0.0.5", "--advertise-address", "10.0.0.5"],  # no port
        ["--host-id", "10.0.0.5", "--dpm-address", "dpm:http"],
    ],
)
def test_unusable_configuration_is_a_config_error(argv: list[str]) -> None:
    with pytest.raises(ConfigError):
        parse_config(argv, {})


def test_stream_per_host_takes_a_boolean_and_is_the_simulators_alone(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="STREAM_PER_HOST"):
        parse_config(["sim", "--hosts", "2"], {"ACA_STREAM_PER_HOST": "perhaps"})
    for argv in (["sim", "--hosts", "2", "--stream-per-host", "perhaps"], ["--host-id", "10.0.0.5", "--stream-per-host", "true"]):
        with pytest.raises(SystemExit) as exited:  # argparse: one line on stderr, exit 2
            parse_config(argv, {})
        assert exited.value.code == 2 and "--stream-per-host" in capsys.readouterr().err


def test_main_exits_2_with_one_line_on_bad_config(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACA_PROGRAM_COST_US", "-5")
    assert main(["--host-id", "10.0.0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("aca-agent: error: $ACA_PROGRAM_COST_US")


def test_data_plane_counts_flows_as_tables_change() -> None:
    plane = MemoryDataPlane()
    applier = Applier(plane, ["h"])
    applier.apply_unicast("h", goal_state("h", subnet(), port("p-1"), port("p-2"), security_group(rules=4)), {})
    assert plane.flows("h") == 1 + 2 + 4 and plane.resources() == 4
    applier.apply_unicast("h", goal_state("h", security_group(rules=1, rev=2)), {})
    assert plane.flows("h") == 1 + 2 + 1 and plane.flows() == 4
    applier.apply_unicast("h", goal_state("h", port("p-1", rev=2, op=common.DELETE)), {})
    assert plane.flows("h") == 3 and plane.resources() == 3
    applier.apply_unicast("h", goal_state("h", port("p-2", rev=2, op=common.DELETE)), {})  # last port: VPC dropped
    assert plane.flows() == 0 and plane.resources() == 0


def test_hosts_programming_an_equal_state_share_one_object_until_the_last_lets_go() -> None:
    plane = MemoryDataPlane()
    message = goal_state("a", subnet(), port("p-1")).SerializeToString()
    for host in ("a", "b"):  # each host parses its own copy, as from its own unicast message
        parsed = gs.GoalStateV2.FromString(message)
        for rid, state in parsed.port_states.items():
            plane.program(host, common.PORT, rid, state)
    assert plane.table("a", common.PORT)["p-1"] is plane.table("b", common.PORT)["p-1"]
    other = gs.GoalStateV2.FromString(message).port_states["p-1"]
    other.configuration.name = "changed"  # same id and revision, other content: not shared
    plane.program("c", common.PORT, "p-1", other)
    assert plane.table("c", common.PORT)["p-1"].configuration.name == "changed"
    assert plane.table("a", common.PORT)["p-1"].configuration.name != "changed"
    newer = gs.GoalStateV2.FromString(goal_state("a", port("p-1", rev=2)).SerializeToString()).port_states["p-1"]
    plane.program("a", common.PORT, "p-1", newer)
    assert plane.table("a", common.PORT)["p-1"].configuration.revision_number == 2
    assert plane.table("b", common.PORT)["p-1"].configuration.revision_number == 1
    for host in ("a", "b", "c"):
        plane.remove(host, common.PORT, "p-1")
    assert plane._shared == {}  # nothing kept for hosts that let go


def test_programming_cost_is_spent_and_reported() -> None:
    applier = Applier(MemoryDataPlane(cost_us=2000), ["h"])
    result = applier.apply_unicast("h", goal_state("h", subnet(), port()), {})
    assert result is not None
    assert all(s.dataplane_us >= 2000 for s in result.statuses)  # a busy-wait spends at least its cost
    assert result.total_us >= 4000
