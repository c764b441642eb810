"""The Apache Kafka broker's jars: fetched once from Maven Central into a cache folder, checksums checked.

`python -m gsmq.kafka_dist` is the set-up step of `make`: it downloads the pinned release
with Maven (which checks Central's checksums, `--strict-checksums`), then checks every
jar against the sha256 pinned in `gsmq.kafka_jars`. Where Java 17+ or Maven is missing
it prints one line and exits 0: the embedded broker is then Tansu.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from gsmq.kafka_jars import ARTIFACTS, JARS, KAFKA_VERSION

ENV_CACHE = "GSMQ_CACHE_DIR"
# Set to 1 (CI does) to fail the set-up instead of falling back to Tansu.
ENV_REQUIRE = "GSMQ_REQUIRE_KAFKA"
MIN_JAVA = 17


class KafkaDistError(RuntimeError):
    """The Kafka jars could not be fetched."""


class ChecksumError(KafkaDistError):
    """A fetched jar differs from its pinned sha256 (never used)."""


def cache_dir() -> Path:
    """Where this release's jars live: $GSMQ_CACHE_DIR, else ~/.cache/gsmq, then kafka-<version>/."""
    root = os.environ.get(ENV_CACHE) or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "gsmq")
    return Path(root) / f"kafka-{KAFKA_VERSION}"


def java_binary() -> str | None:
    """The `java` to run the broker with ($JAVA_HOME first), or None when absent."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


def java_major(java: str) -> int:
    """The major version `java -version` reports (0 when it cannot be read)."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False).stderr
    except (OSError, subprocess.TimeoutExpired):
        return 0
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def missing_requirement() -> str | None:
    """Why Apache Kafka cannot run here (Java 17+ for the broker), or None."""
    java = java_binary()
    if java is None:
        return "no java on PATH (Apache Kafka needs Java 17+)"
    major = java_major(java)
    if major < MIN_JAVA:
        return f"{java} is Java {major or '?'}, Apache Kafka needs Java {MIN_JAVA}+"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(libs: Path) -> list[str]:
    """What is wrong with the jars in `libs` against the pinned sha256 (empty: all good)."""
    problems = []
    present = {p.name for p in libs.glob("*.jar")} if libs.is_dir() else set()
    for name, sha in JARS.items():
        if name not in present:
            problems.append(f"{name} missing")
        elif _sha256(libs / name) != sha:
            problems.append(f"{name} has the wrong sha256")
    problems += [f"{name} is not pinned" for name in sorted(present - JARS.keys())]
    return problems


def installed() -> Path | None:
    """The folder of verified jars when the download is complete, else None."""
    libs = cache_dir() / "libs"
    return libs if (cache_dir() / "complete").is_file() and libs.is_dir() else None


def _pom() -> str:
    deps = "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
        for g, a, v in (coord.split(":") for coord in ARTIFACTS)
    )
    return ('<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
            "<groupId>gsmq</groupId><artifactId>kafka-dist</artifactId><version>1</version><packaging>pom</packaging>"
            f"<dependencies>{deps}</dependencies></project>")


def fetch() -> Path:
    """Download the pinned jars with Maven into the cache (once) and check them; the jars' folder."""
    done = installed()
    if done is not None:
        return done
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaDistError("no mvn on PATH (Maven fetches Apache Kafka from Maven Central)")
    target = cache_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kafka-dist-", dir=target.parent) as scratch:
        work = Path(scratch)
        (work / "pom.xml").write_text(_pom())
        libs = work / "libs"
        cmd = [mvn, "-B", "-q", "--strict-checksums", "-f", str(work / "pom.xml"),
               "dependency:copy-dependencies", f"-DoutputDirectory={libs}", "-DincludeScope=runtime"]
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            tail = (run.stdout + run.stderr).strip().splitlines()[-5:]
            raise KafkaDistError(f"mvn failed (exit {run.returncode}): {' / '.join(tail)}")
        problems = _verified(libs)
        if problems:
            raise ChecksumError("checksums: " + "; ".join(problems))
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        libs.rename(target / "libs")
    (target / "complete").write_text(f"Apache Kafka {KAFKA_VERSION}: {len(JARS)} jars, sha256 checked\n")
    return target / "libs"


def main() -> int:
    """Set-up step: fetch the jars, or say in one line why the fallback (Tansu) is used."""
    why = missing_requirement()
    if why is None and shutil.which("mvn") is None and installed() is None:
        why = "no mvn on PATH (Maven fetches Apache Kafka from Maven Central)"
    if why is not None:
        print(f"gsmq: embedded broker: {why}; falling back to Tansu", file=sys.stderr)
        return 1 if os.environ.get(ENV_REQUIRE) == "1" else 0
    try:
        libs = fetch()
    except ChecksumError as exc:
        print(f"gsmq: embedded broker: Apache Kafka {KAFKA_VERSION} refused: {exc}", file=sys.stderr)
        return 1
    except KafkaDistError as exc:
        print(f"gsmq: embedded broker: Apache Kafka {KAFKA_VERSION} not fetched ({exc}); falling back to Tansu", file=sys.stderr)
        return 1 if os.environ.get(ENV_REQUIRE) == "1" else 0
    print(f"gsmq: embedded broker: Apache Kafka {KAFKA_VERSION} ({libs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
