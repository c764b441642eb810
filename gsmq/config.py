"""Daemon configuration: flags, then environment, then an optional TOML file, then defaults.

Each option is declared once with `Settings.option`; `--help` shows its environment
variable and default. The result is a plain dict that each daemon turns into its own
frozen dataclass. Common Kafka options (--bootstrap, -X, --topic-prefix) are built in.
"""

from __future__ import annotations

import argparse
import difflib
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from gsmq.kafka import ENV_BOOTSTRAP, KafkaSettings, env_properties, parse_properties


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


# librdkafka properties the daemons set themselves and their guarantees rest on: the key
# partitioning agents read by (murmur2), acks=all with idempotence (no loss, no duplicate
# on retry), and offsets committed only once applied and acked.
# Each is refused at any other value than these unless --allow-unsafe-kafka-overrides.
SAFE_VALUES = {"partitioner": ("murmur2_random", "murmur2"), "acks": ("all", "-1"), "request.required.acks": ("all", "-1"),
               "enable.idempotence": ("true",), "enable.auto.commit": ("false",)}
UNSAFE_PROPERTIES = tuple(SAFE_VALUES)


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
        self.parser.add_argument("--version", action="store_true", help="print the version (and the Kafka client's) and exit")
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
            self.option("--allow-unsafe-kafka-overrides", default=False, convert=boolean, nargs="?", const="true",
                        help="accept -X (or KAFKA_PROP_*, or [kafka]) values for the properties the delivery guarantees rest on: "
                        + ", ".join(UNSAFE_PROPERTIES))

    def option(
        self,
        flag: str,
        *,
        default: Any,
        help: str,
        convert: Callable[[str], Any] = str,
        env: str | None = None,
        choices: Sequence[str] | None = None,
        **argparse_options: Any,
    ) -> None:
        dest = flag.lstrip("-").replace("-", "_")
        env_name = env or f"{self.env_prefix}_{dest.upper()}"
        shown = "" if default is None else f" (default: {default})"
        self.parser.add_argument(
            flag, dest=dest, default=None, type=convert, choices=choices, help=f"{help}{shown} [env: {env_name}]",
            **argparse_options,
        )
        self._options.append(_Option(dest, env_name, default, convert, choices))

    def parse(self, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Resolve every option; argparse errors exit 2, bad env/file values raise ConfigError."""
        env = os.environ if environ is None else environ
        args = vars(self.parser.parse_args(argv))
        args.pop("version", None)  # the console script answers --version before parsing
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
        self._refuse_unknown(env, file_values, path)
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
            unsafe = sorted(k for k, v in props.items() if k in SAFE_VALUES and str(v).strip().lower() not in SAFE_VALUES[k])
            if unsafe and not out["allow_unsafe_kafka_overrides"]:
                raise ConfigError(f"librdkafka property {', '.join(f'{k}={props[k]}' for k in unsafe)}: the delivery guarantees"
                                  f" rest on {'its' if len(unsafe) == 1 else 'their'} default (pass --allow-unsafe-kafka-overrides"
                                  " to set it anyway)")
        return out

    def _refuse_unknown(self, env: Mapping[str, str], file_values: Mapping[str, Any], path: str | None) -> None:
        """A key of the file or a `<PREFIX>_*` variable that names no option is a ConfigError (a
        misspelt setting would silently fall back to its default)."""
        keys = {opt.dest for opt in self._options} | ({"kafka"} if "kafka_property" in self._dests() else set())
        for key in file_values:
            if key not in keys:
                raise ConfigError(f"config file {path}: unknown key {key!r}{_did_you_mean(key, keys)}")
        names = {opt.env for opt in self._options}
        for name in env:
            if name.startswith(f"{self.env_prefix}_") and name not in names:
                raise ConfigError(f"${name}: unknown setting{_did_you_mean(name, names)}")

    def _dests(self) -> set[str]:
        return {action.dest for action in self.parser._actions}

    @staticmethod
    def _convert(opt: _Option, raw: str, where: str) -> Any:
        try:
            value = opt.convert(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        if opt.choices is not None and value not in opt.choices:  # argparse checks flags only
            raise ConfigError(f"{where}: invalid choice {raw!r} (choose from {', '.join(opt.choices)})")
        return value


def _did_you_mean(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_address(text: str) -> bool:
    """Whether `text` is host:port (a port 1..65535), as every gRPC address setting is."""
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"port must be 0..65535, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {text}")
    return value


def kafka_settings(values: Mapping[str, Any], bootstrap: str) -> KafkaSettings:
    """KafkaSettings from parsed values and the bootstrap actually in use."""
    return KafkaSettings(bootstrap=bootstrap, properties=dict(values.get("kafka_properties") or {}))
