"""What `--version` prints: the package version, and the Kafka client's where it matters."""

from __future__ import annotations

from importlib import metadata


def package_version() -> str:
    try:
        return metadata.version("gsmq")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def version_line(program: str, kafka: bool = True) -> str:
    """`<program> <version>`, plus, when `kafka`, the Kafka client's versions and the
    embedded broker's (the one started when no bootstrap server is given)."""
    line = f"{program} {package_version()}"
    if kafka:
        from importlib.metadata import version

        import confluent_kafka

        from gsmq.kafka_jars import KAFKA_VERSION

        client = version("confluent-kafka")
        line += (f" (librdkafka {confluent_kafka.libversion()[0]}, confluent-kafka {client},"
                 f" embedded broker Apache Kafka {KAFKA_VERSION})")
    return line
