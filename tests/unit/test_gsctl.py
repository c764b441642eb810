"""gsctl on the command line: vectors, round trips, type names, every kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alcor.schema import goalstate_pb2 as gs
from alcor.schema import goalstateprovisioner_pb2 as gsp
from alcor.schema import subscribeinfoprovisioner_pb2 as sip
from gsmq import gsctl

VECTORS = [("goalstatev2_small", "GoalStateV2"), ("goalstatev2_gateway", "goalstatev2"),
           ("reply_small", "alcor.schema.GoalStateOperationReply")]


def gsctl_run(*args: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "gsmq.gsctl", *args], input=data, capture_output=True, timeout=60)


@pytest.mark.parametrize(("name", "kind"), VECTORS)
def test_decode_prints_the_vectors_json(vectors_dir: Path, name: str, kind: str) -> None:
    done = gsctl_run("decode", "--type", kind, str(vectors_dir / f"{name}.bin"))
    assert done.returncode == 0, done.stderr
    expected = json.loads((vectors_dir / f"{name}.json").read_text())
    assert json.loads(done.stdout) == expected
    assert done.stdout.decode() == json.dumps(expected, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    assert done.stderr == b""


@pytest.mark.parametrize(("name", "kind"), VECTORS)
def test_encode_of_decode_gives_the_vectors_bytes(vectors_dir: Path, name: str, kind: str) -> None:
    original = (vectors_dir / f"{name}.bin").read_bytes()
    text = gsctl_run("decode", "--type", kind, "-", data=original).stdout
    encoded = gsctl_run("encode", "--type", kind, "-", data=text)
    assert encoded.returncode == 0, encoded.stderr
    assert encoded.stdout == original  # the vectors are deterministic serializations


def test_encode_takes_the_vectors_json_file_and_json_names(vectors_dir: Path, tmp_path: Path) -> None:
    done = gsctl_run("encode", "--type", "GoalStateOperationReply", str(vectors_dir / "reply_small.json"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == (vectors_dir / "reply_small.bin").read_bytes()
    camel = gsctl_run("encode", "--type", "NodeSubscribeInfo", data=b'{"subscribeOperation": "Unsubscribe", "topic": "t"}')
    assert sip.NodeSubscribeInfo.FromString(camel.stdout) == sip.NodeSubscribeInfo(subscribe_operation=sip.Unsubscribe, topic="t")


@pytest.mark.parametrize("name", ["GoalStateV2", "GoalState", "GoalStateOperationReply", "HostRequest", "HostRequestReply",
                                  "NodeSubscribeInfo", "VpcState", "NeighborRulesRequest", "SubscribeOperationReply"])
def test_every_named_type_resolves_in_any_case_and_by_full_name(name: str) -> None:
    cls = gsctl.resolve(name)
    assert cls.DESCRIPTOR.full_name == f"alcor.schema.{name}"
    assert gsctl.resolve(name.upper()) is cls and gsctl.resolve(f"alcor.schema.{name.lower()}") is cls


def test_nested_types_need_their_outer_name() -> None:
    assert gsctl.resolve("SubnetConfiguration.Gateway").DESCRIPTOR.full_name == "alcor.schema.SubnetConfiguration.Gateway"
    with pytest.raises(gsctl.UsageError, match="unknown type 'FixedIp'"):
        gsctl.resolve("FixedIp")  # Port's and Neighbor's: ambiguous without the outer name


def test_types_lists_every_message_of_both_packages() -> None:
    done = gsctl_run("types")
    names = done.stdout.decode().split()
    assert done.returncode == 0 and names == sorted(names)
    assert {"alcor.schema.GoalStateV2", "alcor.schema.HostRequest.ResourceStateRequest", "alcor.schema.VpcConfiguration",
            "gsmq.v1.AgentStatus"} <= set(names)
    assert len(names) == len(set(names)) > 40


def test_help_names_every_command() -> None:
    done = gsctl_run("--help")
    assert done.returncode == 0
    for command in ("decode", "encode", "types", "broker", "topics", "tail", "status", "--version"):
        assert command in done.stdout.decode()


def test_unknown_fields_can_be_allowed() -> None:
    data = gs.GoalStateV2(format_version=5).SerializeToString() + b"\x58\x01"  # field 11, varint: not in the schema
    refused = gsctl_run("decode", "--type", "GoalStateV2", data=data)
    assert refused.returncode == 2 and b"field number 11" in refused.stderr
    allowed = gsctl_run("decode", "--type", "GoalStateV2", "--allow-unknown", data=data)
    assert allowed.returncode == 0 and json.loads(allowed.stdout) == {"format_version": 5}


def nested_unknown() -> bytes:
    """A GoalStateV2 whose host_resources["h"].resources[0] carries field 9, unknown to ResourceIdType."""
    rid = b"\x12\x01r" + b"\x48\x07"  # id "r", then field 9 varint 7
    host = b"\x0a" + bytes([len(rid)]) + rid
    entry = b"\x0a\x01h" + b"\x12" + bytes([len(host)]) + host
    return b"\x12" + bytes([len(entry)]) + entry


def test_unknown_fields_are_found_where_they_are() -> None:
    with pytest.raises(gsctl.UsageError, match=r"GoalStateV2\.host_resources\['h'\]\.resources\[0\]: field number 9"):
        gsctl.decode(nested_unknown(), gs.GoalStateV2, "x")
    assert gsctl.decode(nested_unknown(), gs.GoalStateV2, "x", allow_unknown=True) == {
        "host_resources": {"h": {"resources": [{"id": "r"}]}}}


BAD = [
    # bytes that are not the message
    (("decode", "--type", "GoalStateV2"), b"\x0a\xff\xff\xff", "<stdin>: not a valid alcor.schema.GoalStateV2"),
    (("decode", "--type", "HostRequest", "-"), b"\x12\x05abc", "not a valid alcor.schema.HostRequest"),
    (("decode", "--type", "GoalStateV2"), b"hello world\n", "not a valid alcor.schema.GoalStateV2"),
    (("decode", "--type", "HostRequestReply"), b"\x08\x01\x0f", "not a valid alcor.schema.HostRequestReply"),  # wire type 7
    (("decode", "--type", "HostRequestReply"), b"\x08\x01\x00", "not a valid alcor.schema.HostRequestReply"),  # field 0
    (("decode", "--type", "NodeSubscribeInfo"), b"\x12\x02\xff\xfe", "UTF-8"),  # topic with invalid UTF-8
    (("decode", "--type", "GoalStateOperationReply"), b"\x08\x01\x58\x01", "field number 11"),  # trailing unknown field
    (("decode", "--type", "GoalStateV2"), nested_unknown(), "resources[0]: field number 9"),
    (("decode", "--type", "GoalStateV2"), b"\x12\x05\x0a\x01h", "not a valid alcor.schema.GoalStateV2"),  # truncated
    # JSON that is not the message
    (("encode", "--type", "GoalStateV2", "-"), b'{"no_such_field": 1}', "no_such_field"),
    (("encode", "--type", "GoalStateV2"), b'{"format_version": "seven"}', "format_version"),
    (("encode", "--type", "GoalStateV2"), b'{"format_version": 4294967296}', "out of range"),
    (("encode", "--type", "GoalStateV2"), b'{"port_states": {"p": {"operation_type": "EXPLODE"}}}', "EXPLODE"),
    (("encode", "--type", "GoalStateV2"), b'{"port_states": {"p": {"configuration": {"fixed_ips": {}}}}}', "fixed_ips"),
    (("encode", "--type", "HostRequest"), b"[1, 2]", "expected a JSON object"),
    (("encode", "--type", "HostRequest"), b'{"format_version": 1, "format_version": 2}', "duplicate key"),
    (("encode", "--type", "NodeSubscribeInfo", "-"), b"{not json", "<stdin>: not JSON"),
    (("encode", "--type", "NodeSubscribeInfo"), b'{"topic": "\xff"}', "not JSON"),
    (("encode", "--type", "NodeSubscribeInfo"), b"", "not JSON"),
    # names and files
    (("decode", "--type", "NoSuchMessage", "-"), b"", "unknown type 'NoSuchMessage'"),
    (("encode", "--type", "alcor.schema.Nope"), b"{}", "unknown type 'alcor.schema.Nope'"),
    (("decode", "--type", "GoalStateV2", "/no/such/file.bin"), b"", "/no/such/file.bin: No such file or directory"),
    (("encode", "--type", "GoalStateV2", "/"), b"", "/: Is a directory"),
    # the command line itself
    (("decode",), b"", "--type"),
    (("frobnicate",), b"", "frobnicate"),
    ((), b"", "COMMAND"),
    (("tail", "--topic", "x"), b"", "--bootstrap"),
    (("tail", "--topic", "x", "--bootstrap", "127.0.0.1:1", "--from", "middle"), b"", "--from: beginning, end, an offset or -N"),
    (("status",), b"", "one of the arguments --dpm --agent is required"),
    (("status", "--dpm", "a:1", "--agent", "b:1"), b"", "not allowed with argument --dpm"),
]


@pytest.mark.parametrize(("args", "data", "says"), BAD, ids=[f"{i}-{b[2][:24]}" for i, b in enumerate(BAD)])
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], data: bytes, says: str) -> None:
    done = subprocess.run([sys.executable, "-m", "gsmq.gsctl", *args], input=data, capture_output=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})  # no KAFKA_BOOTSTRAP_SERVERS from the caller
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith("gsctl: error: "), err
    assert says in err
    assert "Traceback" not in err and done.stdout == b""


def test_topics_without_a_broker_answering_is_one_line() -> None:
    done = gsctl_run("topics", "--bootstrap", "127.0.0.1:1", "--timeout", "1")
    err = done.stderr.decode()
    assert done.returncode == 2 and err.count("\n") == 1 and "no answer from 127.0.0.1:1" in err, err


def test_library_functions_keep_the_source_in_errors() -> None:
    with pytest.raises(gsctl.UsageError, match=r"^f\.bin: not a valid alcor\.schema\.GoalStateOperationReply"):
        gsctl.decode(b"\xff", gsp.GoalStateOperationReply, "f.bin")
    with pytest.raises(gsctl.UsageError, match=r"^f\.json: not a valid alcor\.schema\.GoalStateV2 .*bogus"):
        gsctl.encode(b'{"bogus": true}', gs.GoalStateV2, "f.json")


def big_goal_state() -> bytes:
    goal = gs.GoalStateV2()
    for i in range(5000):
        goal.port_states[f"port-{i}"].configuration.id = f"port-{i}"
    return goal.SerializeToString()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_an_output_that_cannot_be_written_is_one_line_and_exit_1() -> None:
    with open("/dev/full", "wb") as full:
        done = subprocess.run([sys.executable, "-m", "gsmq.gsctl", "decode", "--type", "GoalStateV2"],
                              input=big_goal_state(), stdout=full, stderr=subprocess.PIPE, timeout=60)
    assert done.returncode == 1
    assert done.stderr.decode() == "gsctl: error: writing the output: No space left on device\n"


def test_a_reader_that_leaves_early_is_not_an_error() -> None:
    """`gsctl decode big.bin | head`: no traceback, no message."""
    proc = subprocess.Popen([sys.executable, "-m", "gsmq.gsctl", "decode", "--type", "GoalStateV2"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(big_goal_state())
    proc.stdin.close()
    assert proc.stdout.read(2) == b"{\n"
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""


# ---------------------------------------------------------------- --version


def test_version_is_the_line_the_daemons_print() -> None:
    from gsmq.version import version_line

    done = gsctl_run("--version")
    assert done.returncode == 0 and done.stderr == b""
    assert done.stdout.decode() == version_line("gsctl") + "\n"
    assert done.stdout.startswith(b"gsctl 0") and b"librdkafka" in done.stdout


# ---------------------------------------------------------------- tail through the real broker
