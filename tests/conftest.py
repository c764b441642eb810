"""Shared fixtures: one real broker per test session (the embedded Apache Kafka over TCP,
Tansu where Java is missing, or $KAFKA_BOOTSTRAP_SERVERS), and a unique topic prefix per test."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gsmq import native
from gsmq.broker import describe_default, embedded_or_external
from gsmq.kafka import KafkaSettings
from gsmq.kraft import ENV_TMP
from gsmq.topics import Topics

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"

# The brokers the tests start keep their data in memory where a tmpfs has room: Kafka fsyncs
# every new partition's files (~6 ms a partition on this disk) before the broker takes its
# next metadata change, and the suite creates thousands; behind a burst of them a DPM's new
# topics were not listed within the 30 s its test waited.
SHM = Path("/dev/shm")
if SHM.is_dir() and shutil.disk_usage(SHM).free >= 2 << 30:
    os.environ.setdefault(ENV_TMP, str(SHM))


# `make test` runs the unit tests again on the sources of the modules `make native` compiles,
# as they run where there is no C compiler, and for the tests that count calls inside them.
if os.environ.get("GSMQ_SOURCES") == "1":
    native.use_sources()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "source(module): counts calls inside `module`; skipped where it runs compiled")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A compiled module calls its own functions directly: a test that counts those calls
    runs on the sources (`GSMQ_SOURCES=1`, make test's second pass)."""
    for mark in item.iter_markers("source"):
        if mark.args[0] in native.compiled():
            pytest.skip(f"counts calls inside {mark.args[0]}, which is compiled here; runs with GSMQ_SOURCES=1")


def pytest_sessionstart(session: pytest.Session) -> None:
    """The session header names the broker the tests run on and how many modules run compiled
    (also under -q, which hides report headers). Modules compiled from other sources would
    test old code: the session stops."""
    refused = None if os.environ.get("GSMQ_SOURCES") == "1" else native.refusal()
    if refused:
        raise pytest.UsageError(refused)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"broker: {describe_default()}; {native.summary()}")


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    """Bootstrap address of the session's broker."""
    with embedded_or_external() as address:
        yield address


@pytest.fixture
def kafka(bootstrap: str) -> KafkaSettings:
    return KafkaSettings(bootstrap=bootstrap)


@pytest.fixture
def topic_prefix() -> str:
    """A prefix no other test uses, so tests never see each other's messages."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def topics(topic_prefix: str) -> Topics:
    return Topics(prefix=topic_prefix)


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """../shared/vectors (beside the repository, as in CI)."""
    if not VECTORS.is_dir():
        pytest.fail(f"shared vectors not found at {VECTORS}")
    return VECTORS
