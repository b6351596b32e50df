"""Beam's own Java ReadFromKafka, for Flink and Dataflow users who have Java (``--kafka_io=java``).

It reads through Beam's IO expansion service, a Maven jar resolved once by ``mvn`` and
passed explicitly, so nothing is downloaded at run time. Its records are turned into our
:class:`RawBatch` so everything downstream is the same as with the Python source.
"""

from __future__ import annotations

import apache_beam as beam

from transforms.kafka_settings import KafkaSettings
from transforms.kafka_source import RawBatch


def expansion_service_coordinate() -> str:
    return f"org.apache.beam:beam-sdks-java-io-expansion-service:{beam.__version__}"


def record_to_batch(record: beam.Row) -> RawBatch:
    return RawBatch(record.topic, record.partition, [record.offset], [record.value or b""], [record.timestamp])


class ReadKafkaWithJava(beam.PTransform):
    """Unbounded read of ``topic`` by Beam's Java KafkaIO, committing offsets on finalization."""

    def __init__(self, settings: KafkaSettings, topic: str, group_id: str, expansion_jar: str):
        super().__init__()
        self._consumer_config = {
            **{key: str(value) for key, value in settings.java_client_config().items()},
            "group.id": group_id,
            "auto.offset.reset": "earliest",
        }
        self._topic = topic
        self._expansion_jar = expansion_jar

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        from apache_beam.io.kafka import ReadFromKafka
        from apache_beam.transforms.external import JavaJarExpansionService

        return (
            pbegin
            | "ReadFromKafkaJava"
            >> ReadFromKafka(
                consumer_config=self._consumer_config,
                topics=[self._topic],
                with_metadata=True,
                commit_offset_in_finalize=True,
                expansion_service=JavaJarExpansionService(self._expansion_jar),
            )
            | "ToRawBatches" >> beam.Map(record_to_batch)
        )
