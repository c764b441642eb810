"""The Apache Kafka download: every jar is checked against its pinned sha256; the fallback says why in one line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gsmq import kafka_dist
from gsmq.kafka_jars import ARTIFACTS, JARS, KAFKA_VERSION


def test_the_pin_names_the_broker_and_every_jar_has_a_sha256() -> None:
    assert ARTIFACTS[0] == f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION}"
    assert f"kafka_2.13-{KAFKA_VERSION}.jar" in JARS
    assert all(len(sha) == 64 and int(sha, 16) >= 0 for sha in JARS.values())


def test_a_jar_that_differs_missing_or_unpinned_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good, bad = b"good jar", b"tampered"
    monkeypatch.setattr(kafka_dist, "JARS", {"a.jar": hashlib.sha256(good).hexdigest(), "b.jar": hashlib.sha256(good).hexdigest(),
                                             "c.jar": "0" * 64})
    (tmp_path / "a.jar").write_bytes(good)
    (tmp_path / "b.jar").write_bytes(bad)
    (tmp_path / "extra.jar").write_bytes(good)
    assert kafka_dist._verified(tmp_path) == ["b.jar has the wrong sha256", "c.jar missing", "extra.jar is not pinned"]
    (tmp_path / "b.jar").write_bytes(good)
    (tmp_path / "c.jar").unlink(missing_ok=True)
    (tmp_path / "extra.jar").unlink()
    monkeypatch.setattr(kafka_dist, "JARS", {"a.jar": hashlib.sha256(good).hexdigest(), "b.jar": hashlib.sha256(good).hexdigest()})
    assert kafka_dist._verified(tmp_path) == []


def test_without_java_the_set_up_says_so_in_one_line_and_falls_back(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(kafka_dist, "java_binary", lambda: None)
    monkeypatch.delenv(kafka_dist.ENV_REQUIRE, raising=False)
    assert kafka_dist.main() == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no java" in err and "Tansu" in err
    monkeypatch.setenv(kafka_dist.ENV_REQUIRE, "1")
    assert kafka_dist.main() == 1


def test_the_cache_folder_is_per_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(kafka_dist.ENV_CACHE, str(tmp_path))
    assert kafka_dist.cache_dir() == tmp_path / f"kafka-{KAFKA_VERSION}"
    assert kafka_dist.installed() is None  # nothing downloaded there
