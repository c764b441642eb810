"""gsmq.native: which modules run compiled, a build made from other sources, and a machine that cannot compile."""

from __future__ import annotations

import json
import os
import sys
import sysconfig
from pathlib import Path

import pytest

import dpm_server.acks
from gsmq import native

SUFFIX = ".cpython-311-x86_64-linux-gnu.so"


def checkout(root: Path, built: bool = True) -> None:
    """A checkout under `root`: a source per listed module (and another module), and unless
    `built` is False, their extensions, the library and the manifest of what they were built from."""
    for module in (*native.MODULES, "gsmq.config"):
        path = root.joinpath(*module.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {module}\n")
        if built and module in native.MODULES:
            path.with_name(path.stem + SUFFIX).write_bytes(b"")
    if built:
        (root / "gsmq" / f"native__mypyc{SUFFIX}").write_bytes(b"")
        (root / native.MANIFEST).write_text(json.dumps(native._hashes(root)))


def test_a_build_is_stale_when_any_source_of_its_packages_changes(tmp_path: Path) -> None:
    checkout(tmp_path)
    assert native.stale(tmp_path) == []
    (tmp_path / "gsmq" / "config.py").write_text("# changed: compiled code depends on the types it imports\n")
    (tmp_path / "dpm_server" / "new.py").write_text("")
    assert native.stale(tmp_path) == ["dpm_server/new.py", "gsmq/config.py"]


def test_extensions_without_a_record_of_their_sources_are_stale_and_no_build_is_not(tmp_path: Path) -> None:
    checkout(tmp_path, built=False)
    assert native.stale(tmp_path) == []  # nothing compiled: the sources run
    checkout(tmp_path)
    (tmp_path / native.MANIFEST).unlink()
    assert native.stale(tmp_path) == ["(no record of the sources built)"]


def test_clean_removes_every_extension_and_the_record_and_nothing_else(tmp_path: Path) -> None:
    checkout(tmp_path)
    (tmp_path / "aca_agent" / f"gone{SUFFIX}").write_bytes(b"")  # a module listed once, no longer
    assert native.clean(tmp_path) == len(native.MODULES) + 3
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted(str(native._source(m, tmp_path).relative_to(tmp_path)) for m in (*native.MODULES, "gsmq.config"))


def test_without_a_compiler_the_build_says_so_and_leaves_the_sources_to_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    checkout(tmp_path)
    (tmp_path / "gsmq" / "config.py").write_text("# changed\n")  # stale: a build is due
    monkeypatch.setattr(sysconfig, "get_config_var", lambda name: "no-such-cc -pthread" if name == "CC" else None)
    assert native.build(tmp_path) is False
    assert not list(tmp_path.rglob("*.so")) and not (tmp_path / native.MANIFEST).exists()
    assert capsys.readouterr().err == "native: not compiled, the sources run as they are: no C compiler (no-such-cc)\n"


def test_an_up_to_date_build_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkout(tmp_path)
    monkeypatch.setattr(native, "missing_tools", lambda: pytest.fail("an up-to-date build was compiled again"))
    assert native.build(tmp_path) is True
    assert len(list(tmp_path.rglob("*.so"))) == len(native.MODULES) + 1


def test_where_the_modules_are_built_every_listed_one_runs_compiled_unless_the_sources_are_asked_for() -> None:
    acks = dpm_server.acks.__file__ or ""
    if os.environ.get("GSMQ_SOURCES") == "1":
        assert native.compiled() == [] and acks.endswith(".py")
        return
    if not list(native.ROOT.joinpath("gsmq").glob("native__mypyc.*.so")):
        pytest.skip("not built here: the sources run")
    assert native.compiled() == list(native.MODULES) and acks.endswith(".so")
    assert native.summary() == f"{len(native.MODULES)} of {len(native.MODULES)} modules compiled"


def test_sources_are_refused_once_a_listed_module_is_imported() -> None:
    assert "dpm_server.acks" in sys.modules
    finders = list(sys.meta_path)
    with pytest.raises(RuntimeError, match=r"imported already: .*dpm_server\.acks"):
        native.use_sources()
    assert sys.meta_path == finders
