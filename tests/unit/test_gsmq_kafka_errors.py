"""The Kafka boundary: confluent_kafka's errors leave as the project's own (gsmq.errors, ConfigError)."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import NewTopic

from gsmq import wire
from gsmq.config import ConfigError
from gsmq.errors import BrokerUnavailableError, TransportError
from gsmq.kafka import KafkaSettings
from gsmq.kafka_admin import admin_client, ensure_topics, topic_names
from gsmq.kafka_transport import KafkaSink, build_client, failure, kafka_errors
from gsmq.transport import Envelope


@pytest.mark.parametrize("code", [KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN,
                                  KafkaError.LEADER_NOT_AVAILABLE, KafkaError.REQUEST_TIMED_OUT])
def test_a_broker_that_does_not_answer_is_broker_unavailable(code: int) -> None:
    mapped = failure(KafkaError(code), "listing topics")
    assert isinstance(mapped, BrokerUnavailableError) and mapped.code == KafkaError(code).name()
    assert str(mapped).startswith("listing topics: ")


def test_other_errors_are_transport_errors_that_keep_librdkafkas_code() -> None:
    mapped = failure(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), "creating topics")
    assert type(mapped) is TransportError and mapped.code == "TOPIC_AUTHORIZATION_FAILED"


def test_the_block_raises_the_projects_exception_chained_to_librdkafkas() -> None:
    with pytest.raises(BrokerUnavailableError) as raised, kafka_errors("committing offsets"):
        raise KafkaException(KafkaError(KafkaError._TRANSPORT))
    assert isinstance(raised.value.__cause__, KafkaException)


def test_a_property_librdkafka_refuses_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r'No such configuration property: "no\.such\.property"'):
        build_client(lambda: Producer({"no.such.property": "1"}))
    with pytest.raises(ConfigError, match="Kafka client configuration"):
        KafkaSink(KafkaSettings("127.0.0.1:1", {"linger.ms": "soon"}))


def test_an_unreachable_broker_is_broker_unavailable_not_a_kafka_exception() -> None:
    admin = admin_client(KafkaSettings("127.0.0.1:1", {"log_level": "0"}))
    with pytest.raises(BrokerUnavailableError):
        topic_names(admin, timeout=0.5)


def test_messages_sent_together_that_fail_come_back_as_sent_headers_included() -> None:
    # A delivery report names no headers: the failed record is found among the messages sent.
    sink = KafkaSink(KafkaSettings("127.0.0.1:1", {"log_level": "0"}), **{"message.timeout.ms": 100, "delivery.report.only.error": True})
    twins = [Envelope("t", "h1", b"same", {wire.SOURCE_OFFSET: str(i)}) for i in range(2)]
    messages = [Envelope("t", "h0", b"ack", {wire.HOST_ID: "h0", wire.MSG_TYPE: "Ack"}), *twins]
    sending = sink.send_all(messages)
    assert sink.flush(10) == 0
    assert sorted(sending.failed, key=lambda m: (m.key, m.headers.get(wire.SOURCE_OFFSET, ""))) == messages  # twins: both


class _LeaderlessAdmin:
    """An AdminClient whose broker creates topics but never elects their leaders."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def create_topics(self, new: list[NewTopic], operation_timeout: float) -> dict[str, Future[None]]:
        futures: dict[str, Future[None]] = {}
        for topic in new:
            self.created.append(topic.topic)
            futures[topic.topic] = Future()
            futures[topic.topic].set_result(None)
        return futures

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> SimpleNamespace:
        leaderless = SimpleNamespace(error=None, partitions={0: SimpleNamespace(leader=-1)})
        return SimpleNamespace(topics=dict.fromkeys(self.created, leaderless))


def test_topics_created_without_leaders_in_time_are_broker_unavailable() -> None:
    admin = _LeaderlessAdmin()
    with pytest.raises(BrokerUnavailableError, match=r"without a leader .* \['t1'\]"):
        ensure_topics(admin, {"t1": 1}, timeout=0.2)  # type: ignore[arg-type]
    assert admin.created == ["t1"]
