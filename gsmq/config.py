"""Daemon configuration: flags, then environment, then an optional TOML file, then defaults.

Each option is declared once with `Settings.option`; `--help` shows its environment
variable and default. The result is a plain dict that each daemon turns into its own
frozen dataclass. Common Kafka options (--bootstrap, -X, --topic-prefix) are built in.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from gsmq.kafka import ENV_BOOTSTRAP, KafkaSettings, env_properties, parse_properties


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


@dataclass(frozen=True)
class _Option:
    dest: str
    env: str
    default: Any
    convert: Callable[[str], Any]
    choices: Sequence[str] | None = None


def boolean(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


class Settings:
    """An argparse parser whose options also read `<PREFIX>_<NAME>` and a TOML file."""

    def __init__(self, prog: str, description: str, env_prefix: str, kafka: bool = True) -> None:
        self.env_prefix = env_prefix
        self.parser = argparse.ArgumentParser(
            prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
        )

        def one_line(message: str) -> NoReturn:  # a bad flag: the error alone, not argparse's usage block
            self.parser.exit(2, f"{prog}: error: {message} (see --help)\n")

        self.parser.error = one_line  # type: ignore[method-assign]
        self._options: list[_Option] = []
        self.option("--config", default=None, help="TOML file with settings (keys are option names with _)")
        self.option("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="log level")
        self.option("--log-json", default=None, convert=boolean, help="JSON logs (default: when stderr is not a terminal)")
        if kafka:
            self.option(
                "--bootstrap",
                default=None,
                env=ENV_BOOTSTRAP,
                help="Kafka bootstrap servers host:port[,...]; unset: start the embedded broker",
            )
            self.parser.add_argument(
                "-X",
                dest="kafka_property",
                action="append",
                metavar="KEY=VALUE",
                help="librdkafka property passed through (repeatable), e.g. -X security.protocol=SASL_SSL; "
                "also KAFKA_PROP_<NAME> variables (dots as _)",
            )
            self.option("--topic-prefix", default="gs", help="prefix of the unicast/multicast/reply/deadletter topics")

    def option(
        self,
        flag: str,
        *,
        default: Any,
        help: str,
        convert: Callable[[str], Any] = str,
        env: str | None = None,
        choices: Sequence[str] | None = None,
    ) -> None:
        dest = flag.lstrip("-").replace("-", "_")
        env_name = env or f"{self.env_prefix}_{dest.upper()}"
        shown = "" if default is None else f" (default: {default})"
        self.parser.add_argument(
            flag, dest=dest, default=None, type=convert, choices=choices, help=f"{help}{shown} [env: {env_name}]"
        )
        self._options.append(_Option(dest, env_name, default, convert, choices))

    def parse(self, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Resolve every option; argparse errors exit 2, bad env/file values raise ConfigError."""
        env = os.environ if environ is None else environ
        args = vars(self.parser.parse_args(argv))
        path = args.get("config") or env.get(f"{self.env_prefix}_CONFIG")
        file_values: dict[str, Any] = {}
        if path:
            try:
                with open(path, "rb") as fh:
                    file_values = tomllib.load(fh)
            except OSError as exc:
                raise ConfigError(f"config file {path}: {exc.strerror}") from exc
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"config file {path}: {exc}") from exc
        out: dict[str, Any] = {}
        for opt in self._options:
            value = args.get(opt.dest)
            if value is None and opt.env in env:
                value = self._convert(opt, env[opt.env], f"${opt.env}")
            if value is None and opt.dest in file_values:
                raw = file_values[opt.dest]
                value = self._convert(opt, str(raw), f"{path}: {opt.dest}")  # numbers too: validated like text
            out[opt.dest] = opt.default if value is None else value
        if "kafka_property" in args:
            from_file = file_values.get("kafka", {})
            if not isinstance(from_file, dict):
                raise ConfigError(f"config file {path}: [kafka] must be a table of librdkafka properties")
            try:  # the same precedence as every option: flags, then environment, then file
                props = {**from_file, **env_properties(env), **parse_properties(args["kafka_property"])}
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
            out["kafka_properties"] = {k: str(v) for k, v in props.items()}
        return out

    @staticmethod
    def _convert(opt: _Option, raw: str, where: str) -> Any:
        try:
            value = opt.convert(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        if opt.choices is not None and value not in opt.choices:  # argparse checks flags only
            raise ConfigError(f"{where}: invalid choice {raw!r} (choose from {', '.join(opt.choices)})")
        return value


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {text}")
    return value


def kafka_settings(values: Mapping[str, Any], bootstrap: str) -> KafkaSettings:
    """KafkaSettings from parsed values and the bootstrap actually in use."""
    return KafkaSettings(bootstrap=bootstrap, properties=dict(values.get("kafka_properties") or {}))
