"""The one producer every sender uses, against the real embedded broker."""

from __future__ import annotations

import random

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.kafka_io import read_all
from transforms.kafka_producer import AcknowledgedProducer, DeliveryFailed
from transforms.kafka_settings import KafkaSettings, ensure_topics

SMALL_RECORD_LIMIT = 2_000
TOO_BIG = random.Random(7).randbytes(SMALL_RECORD_LIMIT * 2)  # random: no compression shrinks it


def small_records_topic(broker: KafkaSettings, name: str) -> str:
    """A topic whose broker refuses records over SMALL_RECORD_LIMIT bytes (the producer would send them)."""
    admin = AdminClient(broker.admin_config())
    config = {"max.message.bytes": str(SMALL_RECORD_LIMIT)}
    for future in admin.create_topics([NewTopic(name, 1, 1, config=config)]).values():
        future.result(30)
    return name


def test_a_full_queue_is_waited_on_and_every_record_is_acknowledged(broker: KafkaSettings, topic_name: str) -> None:
    ensure_topics(broker, [topic_name])
    producer = AcknowledgedProducer(broker, topic_name, log_level=0, **{"queue.buffering.max.messages": 5})
    for number in range(500):
        assert producer.send(f"k{number % 7}".encode(), f"record-{number}".encode(), timestamp=1_700_000_000_000 + number)
    producer.acknowledge_all(60)
    records = read_all(broker, topic_name)
    assert sorted(record.value for record in records) == sorted(f"record-{number}".encode() for number in range(500))


def test_one_record_waited_for_says_where_it_landed(broker: KafkaSettings, topic_name: str) -> None:
    ensure_topics(broker, [topic_name])
    producer = AcknowledgedProducer(broker, topic_name, log_level=0)
    partition, offset = producer.send_and_wait(b"drone-1", b"the correction", 10, "the correction")
    assert [(record.partition, record.offset, record.value) for record in read_all(broker, topic_name)] == [
        (partition, offset, b"the correction")
    ]


def test_a_record_the_broker_refuses_is_one_line_and_the_next_batch_starts_clean(broker: KafkaSettings, topic_name: str) -> None:
    topic = small_records_topic(broker, topic_name)
    producer = AcknowledgedProducer(broker, topic, log_level=0, **{"message.timeout.ms": 20_000})
    heard: list[object] = []
    producer.send(b"k", TOO_BIG, on_delivery=lambda error, _message: heard.append(error))
    with pytest.raises(DeliveryFailed) as refused:
        producer.acknowledge_all(30)
    assert str(refused.value) == f"{topic}: 0 records unacknowledged, 1 refused (first: Broker: Message size too large)"
    assert len(heard) == 1 and heard[0] is not None, "the sender's own callback hears its record's fate"
    assert producer.dead is None, "a refused record does not kill the producer"
    producer.send(b"k", b"fits", on_delivery=lambda error, _message: heard.append(error))
    producer.acknowledge_all(30)
    assert heard[1] is None and [record.value for record in read_all(broker, topic)] == [b"fits"]
    with pytest.raises(DeliveryFailed, match=r"^the broker refused the big one: "):
        producer.send_and_wait(b"k", TOO_BIG, 10, "the big one")
