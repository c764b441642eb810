"""Shared pieces: Java-compatible murmur2, configuration precedence, the in-memory bus."""

from __future__ import annotations

from pathlib import Path

import pytest

from gsmq.config import ConfigError, Settings, positive_int
from gsmq.kafka import env_properties, parse_properties
from gsmq.partition import murmur2, partition_for
from gsmq.transport import Envelope, MemoryBus


@pytest.mark.parametrize(
    "key,java",
    [(b"21", -973932308), (b"foobar", -790332482), (b"a-little-bit-long-string", -985981536),
     (b"a-little-bit-longer-string", -1486304829), (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
     (b"abc", 479470107)],
)
def test_murmur2_matches_kafkas_java_test_vectors(key: bytes, java: int) -> None:
    assert murmur2(key) == java & 0xFFFFFFFF


def test_partition_for_is_positive_modulo() -> None:
    assert all(0 <= partition_for(f"host-{i}", 7) < 7 for i in range(200))
    with pytest.raises(ValueError):
        partition_for("x", 0)


def settings() -> Settings:
    s = Settings("t", "test", "T")
    s.option("--size", default=3, convert=positive_int, help="a size")
    return s


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('size = 5\n[kafka]\n"socket.timeout.ms" = "900"\n')
    assert settings().parse([], {})["size"] == 3
    assert settings().parse(["--config", str(toml)], {})["size"] == 5
    assert settings().parse(["--config", str(toml)], {"T_SIZE": "7"})["size"] == 7
    values = settings().parse(["--config", str(toml), "--size", "9", "-X", "acks=all"], {"T_SIZE": "7", "KAFKA_PROP_SECURITY_PROTOCOL": "SSL"})
    assert values["size"] == 9
    assert values["kafka_properties"] == {"acks": "all", "security.protocol": "SSL", "socket.timeout.ms": "900"}


def test_bad_values_name_their_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\$T_SIZE"):
        settings().parse([], {"T_SIZE": "-1"})
    with pytest.raises(ConfigError, match="key=value"):
        settings().parse(["-X", "novalue"], {})
    with pytest.raises(ConfigError, match="missing.toml"):
        settings().parse(["--config", str(tmp_path / "missing.toml")], {})
    with pytest.raises(SystemExit):
        settings().parse(["--size", "zero"], {})


def test_property_helpers() -> None:
    assert parse_properties(["a.b=1", "c= x"]) == {"a.b": "1", "c": " x"}
    assert env_properties({"KAFKA_PROP_SASL_MECHANISM": "PLAIN", "OTHER": "1"}) == {"sasl.mechanism": "PLAIN"}


def test_memory_bus_places_by_key_and_remembers_commits() -> None:
    bus = MemoryBus({"t": 4})
    sink, source = bus.sink(), bus.source("g")
    placed: list[Envelope] = []
    for i in range(6):
        sink.send(Envelope("t", "host-a", f"m{i}".encode()), lambda m, e: placed.append(m))
    sink.flush()
    part = partition_for("host-a", 4)
    assert [(m.partition, m.offset) for m in placed] == [(part, i) for i in range(6)]
    source.assign([("t", part, 2)])
    assert [m.value for m in source.poll_batch(10, 0)] == [b"m2", b"m3", b"m4", b"m5"]
    source.commit([("t", part, 6)])
    assert bus.source("g").committed([("t", part), ("t", (part + 1) % 4)]) == {("t", part): 6, ("t", (part + 1) % 4): -1}
