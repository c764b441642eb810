"""The project's own exceptions: what callers catch instead of confluent_kafka's or grpc's types."""

from __future__ import annotations


class KafkaFailure(Exception):
    """A Kafka operation failed; the text says which and what librdkafka answered.

    `code` is librdkafka's error name (e.g. ``_TRANSPORT``, ``TOPIC_AUTHORIZATION_FAILED``),
    empty when there is none.
    """

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class BrokerUnavailable(KafkaFailure):
    """No broker answered in time (connection refused, timeout, leader unknown): worth retrying."""


class Undelivered(Exception):
    """Messages were queued but not delivered: they failed or are still waiting for the broker."""


class DpmUnavailable(Exception):
    """The DPM did not answer a gRPC call; the text has the status code (UNAVAILABLE, DEADLINE_EXCEEDED...)."""
