"""gsctl on the command line: vectors, round trips, every kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from proto import goalstate_pb2 as gs


def gsctl(*args: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "gsmq.gsctl", *args], input=data, capture_output=True, timeout=60)


@pytest.mark.parametrize("name,kind", [("goalstatev2_small", "GoalStateV2"), ("goalstatev2_gateway", "goalstatev2"),
                                       ("reply_small", "alcor.schema.GoalStateOperationReply")])
def test_decode_prints_the_vectors_json(vectors_dir: Path, name: str, kind: str) -> None:
    done = gsctl("decode", "--type", kind, str(vectors_dir / f"{name}.bin"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads((vectors_dir / f"{name}.json").read_text())
    keys = list(json.loads(done.stdout))
    assert keys == sorted(keys)


def test_encode_reverses_decode(vectors_dir: Path) -> None:
    original = (vectors_dir / "goalstatev2_gateway.bin").read_bytes()
    text = gsctl("decode", "--type", "GoalStateV2", "-", data=original).stdout
    encoded = gsctl("encode", "--type", "GoalStateV2", "-", data=text)
    assert encoded.returncode == 0, encoded.stderr
    assert gs.GoalStateV2.FromString(encoded.stdout) == gs.GoalStateV2.FromString(original)


@pytest.mark.parametrize(
    "args,data,says",
    [
        (("decode", "--type", "GoalStateV2", "-"), b"\x0a\xff\xff\xff", "not a valid alcor.schema.GoalStateV2"),
        (("decode", "--type", "HostRequest", "-"), b"\x12\x05abc", "not a valid alcor.schema.HostRequest"),
        (("encode", "--type", "GoalStateV2", "-"), b'{"no_such_field": 1}', "no_such_field"),
        (("encode", "--type", "GoalStateV2", "-"), b'{"format_version": "seven"}', "format_version"),
        (("encode", "--type", "NodeSubscribeInfo", "-"), b"{not json", "not JSON"),
        (("decode", "--type", "NoSuchMessage", "-"), b"", "unknown type 'NoSuchMessage'"),
        (("decode", "--type", "GoalStateV2", "/no/such/file.bin"), b"", "/no/such/file.bin: No such file or directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], data: bytes, says: str) -> None:
    done = gsctl(*args, data=data)
    err = done.stderr.decode()
    assert done.returncode == 2
    assert err.count("\n") == 1 and err.startswith("gsctl: error: ")
    assert says in err
    assert "Traceback" not in err and done.stdout == b""
