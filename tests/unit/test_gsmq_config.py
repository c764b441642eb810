"""gsmq.config.Settings: flag > environment > TOML file > default, and errors that name their source."""

from __future__ import annotations

from pathlib import Path

import pytest

from gsmq.config import ConfigError, Settings, boolean, kafka_settings, positive_int
from gsmq.kafka import env_properties, parse_properties


def settings() -> Settings:
    s = Settings("t", "test", "T")
    s.option("--size", default=3, convert=positive_int, help="a size")
    s.option("--fast", default=False, convert=boolean, help="go fast")
    return s


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('size = 5\nfast = true\n[kafka]\n"socket.timeout.ms" = "900"\n')
    assert settings().parse([], {})["size"] == 3
    assert settings().parse(["--config", str(toml)], {})["size"] == 5
    assert settings().parse(["--config", str(toml)], {"T_SIZE": "7"})["size"] == 7
    values = settings().parse(["--config", str(toml), "--size", "9", "-X", "acks=all"],
                              {"T_SIZE": "7", "KAFKA_PROP_SECURITY_PROTOCOL": "SSL"})
    assert values["size"] == 9 and values["fast"] is True
    assert values["kafka_properties"] == {"acks": "all", "security.protocol": "SSL", "socket.timeout.ms": "900"}


def test_config_file_from_the_environment_and_typed_toml_values(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('size = "6"\ntopic_prefix = "lab"\nbootstrap = "k:9092"\n')
    values = settings().parse([], {"T_CONFIG": str(toml)})
    assert (values["size"], values["topic_prefix"], values["bootstrap"]) == (6, "lab", "k:9092")
    assert values["config"] == str(toml)


def test_defaults_and_common_options() -> None:
    values = settings().parse([], {})
    assert values == {"config": None, "log_level": "info", "log_json": None, "bootstrap": None, "topic_prefix": "gs",
                      "allow_unsafe_kafka_overrides": False, "size": 3, "fast": False, "kafka_properties": {}}
    assert settings().parse([], {"KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2"})["bootstrap"] == "a:1,b:2"
    assert settings().parse(["--bootstrap", "c:3"], {"KAFKA_BOOTSTRAP_SERVERS": "a:1"})["bootstrap"] == "c:3"
    values = settings().parse([], {"T_FAST": "yes", "T_LOG_JSON": "0"})
    assert values["fast"] is True and values["log_json"] is False


def test_help_shows_every_environment_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        settings().parse(["--help"], {})
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in ("[env: T_SIZE]", "[env: T_FAST]", "[env: T_CONFIG]", "[env: KAFKA_BOOTSTRAP_SERVERS]",
                 "[env: T_TOPIC_PREFIX]", "KAFKA_PROP_"):
        assert name in text
    assert "(default: 3)" in text


@pytest.mark.parametrize(
    ("argv", "env", "toml", "says"),
    [
        ([], {"T_SIZE": "-1"}, None, r"\$T_SIZE: must be a positive integer"),
        ([], {"T_SIZE": "many"}, None, r"\$T_SIZE"),
        ([], {"T_FAST": "perhaps"}, None, r"\$T_FAST: not a boolean"),
        ([], {}, 'size = "zero"\n', r"c\.toml: size"),
        ([], {}, "size = -4\n", r"c\.toml: size: must be a positive integer"),  # typed TOML values too
        ([], {}, 'log_level = "loud"\n', r"c\.toml: log_level: invalid choice 'loud'"),
        ([], {"T_LOG_LEVEL": "loud"}, None, r"\$T_LOG_LEVEL: invalid choice"),
        ([], {}, "size = \n", r"config file .*c\.toml"),
        (["-X", "novalue"], {}, None, "key=value"),
        (["-X", "=v"], {}, None, "key=value"),
    ],
)
def test_bad_values_name_their_source(tmp_path: Path, argv: list[str], env: dict[str, str], toml: str | None,
                                      says: str) -> None:
    if toml is not None:
        (tmp_path / "c.toml").write_text(toml)
        argv = [*argv, "--config", str(tmp_path / "c.toml")]
    with pytest.raises(ConfigError, match=says):
        settings().parse(argv, env)


def test_missing_config_file_and_bad_flags(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: No such file"):
        settings().parse(["--config", str(tmp_path / "missing.toml")], {})
    for argv in (["--size", "zero"], ["--size", "0"], ["--log-level", "loud"], ["--no-such-flag"]):
        with pytest.raises(SystemExit) as exited:
            settings().parse(argv, {})
        assert exited.value.code == 2


def test_property_helpers() -> None:
    assert parse_properties(["a.b=1", "c= x", "d=e=f"]) == {"a.b": "1", "c": " x", "d": "e=f"}
    assert parse_properties(None) == {}
    assert env_properties({"KAFKA_PROP_SASL_MECHANISM": "PLAIN", "OTHER": "1"}) == {"sasl.mechanism": "PLAIN"}
    assert kafka_settings({"kafka_properties": {"acks": "1"}}, "b:1").producer()["acks"] == "1"
    assert kafka_settings({}, "b:1").bootstrap == "b:1"


def test_kafka_properties_follow_the_same_precedence(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[kafka]\n"security.protocol" = "PLAINTEXT"\n')
    values = settings().parse(["--config", str(toml)], {"KAFKA_PROP_SECURITY_PROTOCOL": "SSL"})
    assert values["kafka_properties"]["security.protocol"] == "SSL"


def test_a_kafka_key_that_is_not_a_table_is_a_config_error(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('kafka = "x"\n')
    with pytest.raises(ConfigError, match=r"\[kafka\] must be a table"):
        settings().parse(["--config", str(toml)], {})


def test_unknown_file_keys_and_prefixed_variables_are_refused_with_a_suggestion(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('topic_prefx = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown key 'topic_prefx' \(did you mean 'topic_prefix'\?\)"):
        settings().parse(["--config", str(toml)], {})
    with pytest.raises(ConfigError, match=r"\$T_NOTHING_LIKE_IT: unknown setting$"):
        settings().parse([], {"T_NOTHING_LIKE_IT": "1"})
    assert settings().parse([], {"OTHER_THING": "1"})["topic_prefix"] == "gs"  # other prefixes are not ours


@pytest.mark.parametrize("source", ["flag", "env", "file"])
def test_properties_the_guarantees_rest_on_need_the_unsafe_flag(tmp_path: Path, source: str) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[kafka]\n"enable.idempotence" = "false"\n')
    argv, env = {"flag": (["-X", "enable.idempotence=false"], {}), "env": ([], {"KAFKA_PROP_ENABLE_IDEMPOTENCE": "false"}),
                 "file": (["--config", str(toml)], {})}[source]
    with pytest.raises(ConfigError, match=r"enable\.idempotence=false: .*--allow-unsafe-kafka-overrides"):
        settings().parse(argv, env)
    values = settings().parse([*argv, "--allow-unsafe-kafka-overrides"], env)
    assert values["kafka_properties"]["enable.idempotence"] == "false"
