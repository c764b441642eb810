"""librdkafka settings shared by every Kafka client of the project.

Bootstrap servers and any librdkafka property (TLS, SASL, tuning) come from the user
and are passed through untouched; the project only adds what its guarantees need
(idempotent producer, acks=all, Java-compatible partitioning, manual commits).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gsmq import logs

ENV_BOOTSTRAP = "KAFKA_BOOTSTRAP_SERVERS"
ENV_PROPERTY_PREFIX = "KAFKA_PROP_"  # KAFKA_PROP_SECURITY_PROTOCOL=SSL -> security.protocol=SSL


@dataclass(frozen=True)
class KafkaSettings:
    """Where the cluster is and how to talk to it."""

    bootstrap: str
    properties: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, bootstrap: str) -> KafkaSettings:
        """`bootstrap` with the librdkafka properties of the KAFKA_PROP_* variables (TLS, SASL...)."""
        return cls(bootstrap, env_properties())

    def common(self) -> dict[str, Any]:
        # Idle connections closed by the broker are normal; librdkafka logs each one otherwise.
        # librdkafka's lines go through structlog (gsmq.logs.LibrdkafkaLog), not raw to stderr.
        return {"bootstrap.servers": self.bootstrap, "log.connection.close": False, "logger": logs.LIBRDKAFKA, **self.properties}

    def producer(self, **overrides: Any) -> dict[str, Any]:
        """An idempotent, acks=all producer with Java-compatible key partitioning."""
        conf: dict[str, Any] = {
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": 2,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 1000000,
            "compression.type": "none",
        }
        conf.update(self.common())
        conf.update(overrides)
        return conf

    def consumer(self, group_id: str, **overrides: Any) -> dict[str, Any]:
        """A consumer that commits only when told to (after apply and reply)."""
        conf: dict[str, Any] = {
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,
            "fetch.min.bytes": 1,
            "enable.partition.eof": False,
        }
        conf.update(self.common())
        conf.update(overrides)
        return conf

    def admin(self) -> dict[str, Any]:
        return self.common()


def parse_properties(items: list[str] | None) -> dict[str, str]:
    """`key=value` strings (from repeated `-X key=value` flags) as a dict; bad ones raise ValueError."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"librdkafka property must be key=value, got {item!r}")
        out[key.strip()] = value
    return out


def env_properties(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """librdkafka properties from KAFKA_PROP_* variables (`_` becomes `.`, lower case)."""
    env = os.environ if environ is None else environ
    return {
        name[len(ENV_PROPERTY_PREFIX) :].lower().replace("_", "."): value
        for name, value in env.items()
        if name.startswith(ENV_PROPERTY_PREFIX)
    }
