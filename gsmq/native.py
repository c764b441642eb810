"""The hot modules, compiled to C with mypyc (`make native`, run by `make test` and `make bench`).

Each module in `MODULES` is compiled from its source as it is (mypy --strict types it) into
one shared library, `gsmq/native__mypyc.*.so`, with a small extension beside each source
(`dpm_server/acks.cpython-311-*.so`); Python imports an extension before its source. A
compiled module behaves as its source does, except that its classes take no attributes
they do not declare and their methods cannot be replaced on an instance.

Without a C compiler `build` says so and the sources run as they are; the bench report
says which ran. An extension older than its source is stale: `make native` builds again
whenever a source changes, and the tests refuse to run on stale extensions."""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the checkout: the packages' parent
GROUP = "gsmq.native"  # the shared library's module: gsmq/native__mypyc.*.so
MODULES = (
    "gsmq.pbwire",
    "gsmq.partition",
    "gsmq.resources",
    "gsmq.wire",
    "dpm_server.acks",
    "dpm_server.engine",
    "dpm_server.inputs",
    "dpm_server.planner",
    "dpm_server.publisher",
    "dpm_server.snapshot",
    "aca_agent.acks",
    "aca_agent.applier",
    "aca_agent.consumer",
)


def _source(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def _extensions(module: str, root: Path = ROOT) -> list[Path]:
    """The module's extension files beside its source (any Python version's)."""
    source = _source(module, root)
    return sorted(source.parent.glob(f"{source.stem}.*.so"))


def _shared(root: Path = ROOT) -> list[Path]:
    package, _, name = GROUP.rpartition(".")
    return sorted(root.joinpath(*package.split(".")).glob(f"{name}__mypyc.*.so"))


def compiled() -> list[str]:
    """The listed modules that this interpreter imports from an extension."""
    out = []
    for module in MODULES:
        spec = importlib.util.find_spec(module)
        if spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            out.append(module)
    return out


class _Sources(importlib.abc.MetaPathFinder):
    """Finds the listed modules' sources ahead of their extensions."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_file_location(fullname, _source(fullname)) if fullname in MODULES else None


def use_sources() -> None:
    """Import the listed modules from their sources from now on, compiled or not (the tests'
    second pass: `GSMQ_SOURCES=1`); refused once one is imported, as the two would mix."""
    loaded = [module for module in MODULES if module in sys.modules]
    if loaded:
        raise RuntimeError(f"imported already: {', '.join(loaded)}")
    sys.meta_path.insert(0, _Sources())


def stale(root: Path = ROOT) -> list[str]:
    """The modules whose extension (or the shared library) is older than their source."""
    shared = _shared(root)
    out = []
    for module in MODULES:
        own, source = _extensions(module, root), _source(module, root)
        if own and source.exists() and min(p.stat().st_mtime for p in own + shared) < source.stat().st_mtime:
            out.append(module)
    return out


def status() -> dict[str, Any]:
    """For a daemon's start-up line: how many modules run compiled, and the stale ones."""
    return {"compiled_modules": len(compiled()), "stale_modules": stale()}


def clean(root: Path = ROOT) -> int:
    """Remove every extension `build` made: the sources run as they are. How many files."""
    files = [p for module in MODULES for p in _extensions(module, root)] + _shared(root)
    for path in files:
        path.unlink()
    return len(files)


def build(root: Path = ROOT) -> bool:
    """Compile `MODULES` in place (C sources under build/native); False, with the sources
    left to run as they are, when they cannot be compiled here."""
    clean(root)
    try:
        from mypyc.build import mypycify
        from setuptools import setup  # type: ignore[import-untyped]

        with contextlib.chdir(root):
            paths = [str(_source(module, root).relative_to(root)) for module in MODULES]
            extensions = mypycify(paths, opt_level="3", group_name=GROUP, target_dir="build/native")
            setup(name="gsmq-native", ext_modules=extensions, script_args=["--quiet", "build_ext", "--inplace"])
    except (SystemExit, Exception) as exc:  # noqa: BLE001 - whatever fails (no compiler, say), the sources run; said once
        clean(root)
        print(f"native: not compiled, the sources run as they are ({type(exc).__name__}: {exc})", file=sys.stderr)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gsmq.native", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("build", "clean", "check"),
                        help="build: compile in place; clean: remove the extensions; check: fail when one is stale")
    args = parser.parse_args(argv)
    if args.action == "build":
        built = build()
        if built:
            print(f"native: {len(MODULES)} modules compiled")
        return 0
    if args.action == "clean":
        print(f"native: {clean()} files removed")
        return 0
    old = stale()
    if old:
        print(f"native: extensions older than their sources: {', '.join(old)}; run 'make native'", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
