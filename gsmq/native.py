"""The hot modules, compiled to C with mypyc (`make native`, run by `make test` and `make bench`).

Each module in `MODULES` is compiled from its source as it is (mypy --strict types it) into
one shared library, `gsmq/native__mypyc.*.so`, with a small extension beside each source
(`dpm_server/acks.cpython-311-*.so`); Python imports an extension before its source. A
compiled module behaves as its source does, except that:
- its classes take no attribute they do not declare, no weak reference and no subclass
  written in Python, and their methods cannot be replaced on an instance;
- the types its functions declare are checked when they are called;
- it calls its own functions, and the list and dict methods, directly: replacing one
  (on the module, or in a subclass) changes nothing for it.

A dataclass's generated methods run interpreted (`__init__` builds ~20x slower than a
compiled one): a class these modules build per message, resource or request is a
`@dataclass(init=False)` with its own `__init__`, its never-changed fields `Final`.

The build records a hash of every source of the three packages (`MANIFEST`): compiled code
depends on the types of whatever it imports. When one differs the build is stale: `make
native` builds again, the tests and the bench refuse to run on it, and a daemon's start-up
line names the changed sources. Without a C compiler (or Python's headers) `build` says so
and the sources run as they are; any other failure to build is an error."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the checkout: the packages' parent
PACKAGES = ("gsmq", "dpm_server", "aca_agent")
GROUP = "gsmq.native"  # the shared library's module: gsmq/native__mypyc.*.so
MANIFEST = "gsmq/native_sources.json"  # {source: sha256} as built
MODULES = (
    "gsmq.pbwire",
    "gsmq.partition",
    "gsmq.resources",
    "gsmq.wire",
    "dpm_server.ackwire",
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


def _built(root: Path = ROOT) -> list[Path]:
    """Every extension in the packages (beside a source, or the shared library) and the manifest."""
    out = [p for package in PACKAGES for p in sorted((root / package).glob("*.so"))]
    manifest = root / MANIFEST
    return [*out, manifest] if manifest.exists() else out


def _complete(root: Path = ROOT) -> bool:
    """Whether the library is there and every listed module has its extension beside its source."""
    built = set(_built(root))
    package, _, name = GROUP.rpartition(".")
    return any(p.name.startswith(f"{name}__mypyc.") and p.parent == root / package for p in built) and all(
        any(p.parent == _source(m, root).parent and p.name.startswith(_source(m, root).stem + ".") for p in built) for m in MODULES)


def _hashes(root: Path = ROOT) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for package in PACKAGES for p in sorted((root / package).glob("*.py"))}


def summary() -> str:
    """How many of the listed modules this interpreter imports from an extension."""
    return f"{len(compiled())} of {len(MODULES)} modules compiled"


def compiled() -> list[str]:
    """The listed modules that this interpreter imports from an extension."""
    out = []
    for module in MODULES:
        spec = importlib.util.find_spec(module)
        if spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            out.append(module)
    return out


def stale(root: Path = ROOT) -> list[str]:
    """The sources that differ from those the extensions were built from; [] when none is built."""
    if not any(p.suffix == ".so" for p in _built(root)):
        return []
    try:
        was = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return ["(no record of the sources built)"]
    now = _hashes(root)
    return sorted(name for name in was.keys() | now.keys() if was.get(name) != now.get(name))


def refusal() -> str | None:
    """The one line that refuses to run on a stale build (tests, bench, `check`); None when it is not."""
    changed = stale()
    return f"the compiled modules were built from other sources ({', '.join(changed)}); run 'make native'" if changed else None


def status() -> dict[str, Any]:
    """For a daemon's start-up line: how many modules run compiled, and the changed sources."""
    return {"native": summary(), "native_stale": stale()}


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


def clean(root: Path = ROOT) -> int:
    """Remove the extensions (any, of any build) and the manifest: the sources run. How many files."""
    files = _built(root)
    for path in files:
        path.unlink()
    return len(files)


def missing_tools() -> str | None:
    """What this machine lacks to compile: a C compiler or Python's headers; None when it has both."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.exists():
        return f"no Python headers ({headers})"
    return None


def build(root: Path = ROOT, force: bool = False) -> bool:
    """Compile `MODULES` unless the build is there and not stale (or `force`): in a scratch
    folder, then moved in place. False, with the sources left to run, where there are no
    tools to compile; a failure to compile with them raises."""
    if not force and _complete(root) and not stale(root):
        return True
    lacking = missing_tools()
    if lacking is not None:
        clean(root)
        print(f"native: not compiled, the sources run as they are: {lacking}", file=sys.stderr)
        return False
    from mypyc.build import mypycify
    from setuptools import setup  # type: ignore[import-untyped]

    hashes = _hashes(root)
    with tempfile.TemporaryDirectory(prefix="gsmq-native-") as lib, contextlib.chdir(root):
        paths = [str(_source(module, root).relative_to(root)) for module in MODULES]
        extensions = mypycify(paths, opt_level="3", group_name=GROUP, target_dir="build/native")
        setup(name="gsmq-native", ext_modules=extensions, script_args=["--quiet", "build_ext", "--build-lib", lib])
        made = sorted(Path(lib).rglob("*.so"), key=lambda p: p.stem.split(".")[0] != "native__mypyc")  # the library first
        clean(root)
        for path in made:
            shutil.move(path, root / path.relative_to(lib))
    (root / MANIFEST).write_text(json.dumps(hashes, indent=0, sort_keys=True) + "\n")
    importlib.invalidate_caches()  # the finders saw the folders without the extensions
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gsmq.native", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("build", "clean", "check"),
                        help="build: compile in place when stale or missing; clean: remove the extensions; check: fail when stale")
    parser.add_argument("--force", action="store_true", help="build even when the build is there and up to date")
    args = parser.parse_args(argv)
    if args.action == "build":
        if build(force=args.force):
            print(f"native: {summary()}")
        return 0
    if args.action == "clean":
        print(f"native: {clean()} files removed")
        return 0
    refused = refusal()
    if refused:
        print(f"native: {refused}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
