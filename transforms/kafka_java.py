"""Beam's own Java ReadFromKafka, for users who have Java (``--kafka_io=java``).

It is expanded by the Java expansion service :mod:`runners.java_kafka` runs for the job
(from Maven jars resolved once into the cache, so nothing is downloaded at run time), at
the address given. Its records are turned into our :class:`RawBatch` so everything
downstream is the same as with the Python source.

Offsets, unlike our Python source (which commits only what the lake holds):

- ``commit="finalize"`` (Flink, Dataflow): KafkaIO commits an offset when the runner
  finalizes the reading bundle's checkpoint, i.e. once the records are durably in the
  runner, not in the lake.
- ``commit="auto"`` (Prism, which refuses the stable-input requirement of KafkaIO's commit
  step): the Kafka consumer's own auto-commit, every ``auto.commit.interval.ms`` (5 s), of
  what it has polled. A killed job loses what was committed and not yet written.
"""

from __future__ import annotations

import apache_beam as beam

from transforms.kafka_settings import KafkaSettings
from transforms.kafka_source import RawBatch


def record_to_batch(record: beam.Row) -> RawBatch:
    return RawBatch(record.topic, record.partition, [record.offset], [record.value or b""], [record.timestamp])


class ReadKafkaWithJava(beam.PTransform):
    """Unbounded read of ``topic`` by Beam's Java KafkaIO, committing offsets on finalization.

    ``expansion_service``: the ``host:port`` of a running Java expansion service;
    ``commit``: ``"finalize"`` or ``"auto"`` (see the module's notes).
    """

    def __init__(self, settings: KafkaSettings, topic: str, group_id: str, expansion_service: str, commit: str = "finalize"):
        super().__init__()
        if commit not in ("finalize", "auto"):
            raise ValueError(f"commit must be 'finalize' or 'auto', not {commit!r}")
        self._consumer_config = {
            **{key: str(value) for key, value in settings.java_client_config().items()},
            "group.id": group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": str(commit == "auto").lower(),
        }
        self._commit_in_finalize = commit == "finalize"
        self._topic = topic
        self._expansion_service = expansion_service

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        from apache_beam.io.kafka import ReadFromKafka

        return (
            pbegin
            | "ReadFromKafkaJava"
            >> ReadFromKafka(
                consumer_config=self._consumer_config,
                topics=[self._topic],
                with_metadata=True,
                commit_offset_in_finalize=self._commit_in_finalize,
                # The watermark follows the records' times, which our producers stamp with
                # the message's event time, as the Python source's watermark does.
                timestamp_policy=ReadFromKafka.create_time_policy,
                expansion_service=self._expansion_service,
            )
            | "ToRawBatches" >> beam.Map(record_to_batch)
        )
