"""gsmq.native: which modules run compiled, stale extensions, and a build that cannot compile."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

import dpm_server.acks
from gsmq import native

SUFFIX = ".cpython-311-x86_64-linux-gnu.so"


def tree(root: Path, module: str, built: float | None, source: float = 1000.0) -> None:
    """`module`'s source under `root` (mtime `source`) and, unless `built` is None, its extension."""
    path = root.joinpath(*module.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    os.utime(path, (source, source))
    if built is not None:
        ext = path.with_name(path.stem + SUFFIX)
        ext.write_bytes(b"")
        os.utime(ext, (built, built))


def shared(root: Path, built: float) -> Path:
    path = root / "gsmq" / f"native__mypyc{SUFFIX}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    os.utime(path, (built, built))
    return path


def test_an_extension_older_than_its_source_is_stale_and_a_missing_one_is_not(tmp_path: Path) -> None:
    tree(tmp_path, "dpm_server.acks", built=500.0)  # built before the source changed
    tree(tmp_path, "dpm_server.engine", built=2000.0)
    tree(tmp_path, "aca_agent.applier", built=None)  # never built: the source runs
    shared(tmp_path, 2000.0)
    assert native.stale(tmp_path) == ["dpm_server.acks"]


def test_an_old_shared_library_makes_every_built_module_stale(tmp_path: Path) -> None:
    tree(tmp_path, "dpm_server.acks", built=2000.0)
    tree(tmp_path, "aca_agent.acks", built=2000.0)
    shared(tmp_path, 500.0)
    assert native.stale(tmp_path) == ["dpm_server.acks", "aca_agent.acks"]


def test_clean_removes_every_extension_and_nothing_else(tmp_path: Path) -> None:
    tree(tmp_path, "dpm_server.acks", built=2000.0)
    tree(tmp_path, "gsmq.wire", built=2000.0)
    library = shared(tmp_path, 2000.0)
    assert native.clean(tmp_path) == 3
    assert not library.exists() and sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["acks.py", "wire.py"]


def test_a_build_that_cannot_compile_leaves_the_sources_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    tree(tmp_path, "dpm_server.acks", built=2000.0)  # an older build's extension goes too
    fake = types.ModuleType("mypyc.build")

    def mypycify(*args: object, **kwargs: object) -> list[object]:
        raise RuntimeError("no C compiler")

    fake.mypycify = mypycify  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mypyc.build", fake)
    assert native.build(tmp_path) is False
    assert not list(tmp_path.rglob("*.so"))
    assert "native: not compiled, the sources run as they are (RuntimeError: no C compiler)" in capsys.readouterr().err


def test_where_the_modules_are_built_every_listed_one_runs_compiled_unless_the_sources_are_asked_for() -> None:
    acks = dpm_server.acks.__file__ or ""
    if os.environ.get("GSMQ_SOURCES") == "1":
        assert native.compiled() == [] and acks.endswith(".py")
        return
    if not list(native.ROOT.joinpath("gsmq").glob("native__mypyc.*.so")):
        pytest.skip("not built here (no C compiler): the sources run")
    assert native.compiled() == list(native.MODULES) and acks.endswith(".so")


def test_sources_are_refused_once_a_listed_module_is_imported() -> None:
    assert "dpm_server.acks" in sys.modules
    finders = list(sys.meta_path)
    with pytest.raises(RuntimeError, match=r"imported already: .*dpm_server\.acks"):
        native.use_sources()
    assert sys.meta_path == finders
