"""The built wheel installs beside other libraries: no generic top-level name (proto-plus
owns `proto`), namespaced descriptors, and .proto files that protoc finds in site-packages."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True)
    (found,) = out.glob("gsmq-*.whl")
    return found


def test_the_wheel_installs_no_generic_top_level_name(wheel: Path) -> None:
    names = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist() if not n.split("/")[0].endswith(".dist-info")}
    assert names == {"alcor", "gsmq", "dpm_server", "aca_agent", "gs_bench"}
    files = set(zipfile.ZipFile(wheel).namelist())
    assert {"alcor/schema/goalstate.proto", "gsmq/v1/status.proto", "alcor/schema/goalstate_pb2.pyi"} <= files
    assert not {f for f in files if f.endswith((".so", "native_sources.json"))}  # `make native`'s build stays in the checkout


def test_the_wheel_imports_beside_proto_plus(wheel: Path, tmp_path: Path) -> None:
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)  # filled by this pip (--python)
    py = str(env / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", py, "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "proto-plus"], check=True, capture_output=True)  # first, as in a google-cloud environment
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, capture_output=True)
    probe = (
        "import proto; assert proto.Message and proto.Field\n"
        "from alcor.schema import goalstate_pb2\n"
        "from gsmq.v1 import status_pb2\n"
        "print(goalstate_pb2.DESCRIPTOR.name, status_pb2.DESCRIPTOR.name)\n"
    )
    out = subprocess.run([py, "-c", probe], check=True, capture_output=True, text=True).stdout.split()
    assert out == ["alcor/schema/goalstate.proto", "gsmq/v1/status.proto"]
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    generated = tmp_path / "generated"
    generated.mkdir()
    protoc = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{site}", f"--python_out={generated}", "gsmq/v1/status.proto"],
                            capture_output=True, text=True)
    assert protoc.returncode == 0, protoc.stderr
    assert (generated / "gsmq" / "v1" / "status_pb2.py").is_file()
