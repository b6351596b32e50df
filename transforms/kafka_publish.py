"""Publishing from a pipeline to a Kafka topic: a bundle ends only once the broker acknowledged it.

That is what lets a drain commit its offsets after a run without losing an alert or a
dead letter: a bundle whose records were not all acknowledged fails, and is retried.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam

from transforms.kafka_settings import KafkaSettings

FLUSH_TIMEOUT_S = 120.0


class KafkaDeliveryError(RuntimeError):
    """The broker did not acknowledge every record of a bundle."""


class PublishToKafka(beam.DoFn):
    """Produce ``(key, value)`` or ``(key, value, headers)`` to a topic; a bundle ends acknowledged."""

    def __init__(self, settings: KafkaSettings, topic: str):
        self._settings = settings
        self._topic = topic
        self._producer: Any = None
        self._failures: list[str] = []

    def setup(self) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(self._settings.producer_config(**{"linger.ms": 5, "log_level": 0}))

    def start_bundle(self) -> None:
        self._failures = []

    def process(self, record: tuple) -> None:
        key, value, *headers = record
        self._producer.produce(
            self._topic, value=value, key=key, headers=headers[0] if headers else None, on_delivery=self._delivered
        )
        self._producer.poll(0)

    def finish_bundle(self) -> None:
        remaining = self._producer.flush(FLUSH_TIMEOUT_S)
        if remaining or self._failures:
            raise KafkaDeliveryError(
                f"{self._topic}: {remaining} records unacknowledged, {len(self._failures)} failed"
                + (f" (first: {self._failures[0]})" if self._failures else "")
            )

    def teardown(self) -> None:
        if self._producer is not None:
            self._producer.flush(FLUSH_TIMEOUT_S)

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self._failures.append(str(error))
