"""Test helpers that put records on a real topic and read a whole topic back by assignment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from transforms.kafka_settings import KafkaSettings, ensure_topics

READ_DEADLINE_S = 60.0


@dataclass(frozen=True)
class ReadRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


def produce_all(settings: KafkaSettings, topic: str, records: Iterable[tuple]) -> int:
    """Produce every ``(key, value[, timestamp_ms[, partition]])``; wait until the broker acknowledged all.

    Without a timestamp the producer stamps the record with the wall clock, as a foreign
    producer would; a partition of None leaves the choice to the key.
    """
    ensure_topics(settings, [topic])
    producer = Producer(settings.producer_config(log_level=0))
    failures: list[str] = []
    count = 0
    for key, value, *placed in records:
        timestamp_ms, partition = (*placed, None, None)[:2]
        where = {"timestamp": timestamp_ms} if timestamp_ms is not None else {}
        if partition is not None:
            where["partition"] = partition
        producer.produce(topic, value=value, key=key, on_delivery=lambda error, _: error and failures.append(str(error)), **where)
        producer.poll(0)
        count += 1
    assert producer.flush(60) == 0 and not failures, failures[:3]
    return count


def read_all(settings: KafkaSettings, topic: str) -> list[ReadRecord]:
    """Every record of every partition, read by manual assignment up to fetch's partition EOF."""
    import time

    consumer = Consumer(settings.consumer_config("dronecop-tests-reader", log_level=0))
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = sorted(metadata.partitions)
        consumer.assign([TopicPartition(topic, partition, 0) for partition in partitions])
        waiting, records = set(partitions), []
        deadline = time.monotonic() + READ_DEADLINE_S
        while waiting:
            assert time.monotonic() < deadline, f"no partition EOF from {sorted(waiting)} of {topic}"
            for message in consumer.consume(num_messages=10_000, timeout=0.2):
                error = message.error()
                if error is None:
                    headers = {name: value for name, value in (message.headers() or [])}
                    records.append(ReadRecord(message.partition(), message.offset(), message.key(), message.value(), headers))
                elif error.code() == KafkaError._PARTITION_EOF:
                    waiting.discard(message.partition())
                else:
                    raise AssertionError(error.str())
        return records
    finally:
        consumer.close()
