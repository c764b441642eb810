"""The project's own exceptions: what callers catch instead of confluent_kafka's or grpc's types."""

from __future__ import annotations


class TransportError(Exception):
    """A Kafka operation of the transport failed; the text says which and what librdkafka answered.

    `code` is librdkafka's error name (e.g. ``_TRANSPORT``, ``TOPIC_AUTHORIZATION_FAILED``),
    empty when there is none.
    """

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class BrokerUnavailableError(TransportError):
    """No broker answered in time (connection refused, timeout, leader unknown): worth retrying."""


class FatalTransportError(TransportError):
    """A Kafka client failed for good (librdkafka's fatal errors): it cannot be used again."""


class FencedError(FatalTransportError):
    """A newer producer with our transactional id took over (another incarnation of the daemon): stop writing."""


class UndeliveredError(Exception):
    """Messages were queued but not delivered: they failed or are still waiting for the broker."""


class DpmUnavailableError(Exception):
    """The DPM did not answer a gRPC call; the text has the status code (UNAVAILABLE, DEADLINE_EXCEEDED...)."""
