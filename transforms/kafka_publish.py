"""Publishing from a pipeline to a Kafka topic: a bundle ends only once the broker acknowledged it.

That is what lets a drain commit its offsets after a run without losing an alert or a
dead letter: a bundle whose records were not all acknowledged fails, and is retried.
"""

from __future__ import annotations

import apache_beam as beam

from transforms.kafka_producer import AcknowledgedProducer
from transforms.kafka_settings import KafkaSettings

FLUSH_TIMEOUT_S = 120.0


class PublishToKafka(beam.DoFn):
    """Produce ``(key, value)`` or ``(key, value, headers)`` to a topic; a bundle ends acknowledged."""

    def __init__(self, settings: KafkaSettings, topic: str):
        self._settings = settings
        self._topic = topic
        self._producer: AcknowledgedProducer | None = None

    def setup(self) -> None:
        self._producer = AcknowledgedProducer(self._settings, self._topic, **{"linger.ms": 5, "log_level": 0})

    def process(self, record: tuple) -> None:
        key, value, *headers = record
        self._producer.send(key, value, headers=headers[0] if headers else None)
        self._producer.poll(0)

    def finish_bundle(self) -> None:
        self._producer.acknowledge_all(FLUSH_TIMEOUT_S)

    def teardown(self) -> None:
        if self._producer is not None:
            self._producer.close(FLUSH_TIMEOUT_S)
