"""gs_bench.cluster: the daemons it starts run the code of the tree the bench runs from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gs_bench.cluster import CODE, daemon_env
from gsmq import native


def test_a_daemon_imports_the_benchs_tree_ahead_of_any_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoy `aca_agent` earlier on the caller's PYTHONPATH (another checkout, say) loses
    to the bench's own tree; the caller's path stays after it, and `extra` is kept."""
    decoy = tmp_path / "decoy" / "aca_agent"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(decoy.parent))
    env = daemon_env({"GSMQ_X": "1"})
    assert env["PYTHONPATH"].split(os.pathsep) == [*map(str, CODE), str(decoy.parent)] and env["GSMQ_X"] == "1"
    out = subprocess.run([sys.executable, "-c", "import aca_agent, alcor; print(aca_agent.__file__); print(alcor.__file__)"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert Path(out[0]) == native.ROOT / "aca_agent" / "__init__.py"
    assert Path(out[1]).resolve() == (native.ROOT / "proto" / "alcor" / "__init__.py").resolve()
