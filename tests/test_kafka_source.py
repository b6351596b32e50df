"""The Kafka source's reading loop against a real broker."""

from __future__ import annotations

import threading
import time

import pytest

from tests.support.kafka_io import produce_all
from transforms import kafka_source
from transforms.kafka_settings import KafkaSettings
from transforms.kafka_source import PartitionSpan, _poll_batches, assigned_at, new_consumer


def test_time_spent_downstream_does_not_count_as_the_broker_making_no_progress(
    broker: KafkaSettings, topic_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 3,000,000-row history drain once failed with "no progress … for 60 s": the 60 s were the
    writer's, spent on the batch before, while the reader waited for nothing."""
    monkeypatch.setattr(kafka_source, "NO_PROGRESS_TIMEOUT_S", 2.0)
    produce_all(broker, topic_name, [(b"k", b"first %d" % i, None, 0) for i in range(10)])
    resumed = threading.Event()

    def the_rest_arrives_after_the_reader_resumes() -> None:
        resumed.wait(30)
        time.sleep(0.6)  # the broker's next records come a little after the reader asked again
        produce_all(broker, topic_name, [(b"k", b"rest %d" % i, None, 0) for i in range(10)])

    producer = threading.Thread(target=the_rest_arrives_after_the_reader_resumes)
    producer.start()
    consumer = new_consumer(broker, f"{topic_name}-group")
    try:
        with assigned_at(consumer, topic_name, 0, 0):
            batches = _poll_batches(consumer, PartitionSpan(topic_name, 0, 0, 20), stop_at_eof=False, aligned=True, chunk_records=10)
            first = next(batches)
            time.sleep(3.0)  # the downstream writer's work on the first batch, longer than the timeout
            resumed.set()
            second = next(batches)
    finally:
        consumer.close()
        producer.join()
    assert first.offsets == list(range(10)) and second.offsets == list(range(10, 20))
    assert second.values[0] == b"rest 0"
