"""The drone stream: Kafka → validate → alerts at once, every valid message into the lake.

``python -m pipelines.stream [--drain | --follow | --streaming] --output ./lake``
This module only wires transforms from ``transforms/`` to the run modes in
``pipelines.modes``; the logic lives in those modules.
"""

from __future__ import annotations

import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import modes
from pipelines.options import DroneStreamOptions, KafkaSourceOptions, RunModeOptions
from runners.presets import apply_local_defaults
from transforms.kafka_settings import DRONE_MESSAGES
from transforms.messages import ALERTS, DEAD_LETTERS, Lateness, ValidateMessages
from transforms.sinks import PublishToKafka, RouteDeadLetters, WriteLakeWindows

PIPELINE_NAME = "stream"
DEFAULT_GROUP_ID = "dronecop-stream"


class ProcessDroneBatches(beam.PTransform):
    """Raw Kafka batches of drone messages → alerts topic, dead letters (topic and lake), lake."""

    def __init__(self, options: PipelineOptions, lateness: Lateness, bounded: bool):
        super().__init__()
        self._source = options.view_as(KafkaSourceOptions)
        self._mode = options.view_as(RunModeOptions)
        self._topics = options.view_as(DroneStreamOptions)
        self._lateness = lateness
        self._bounded = bounded

    def expand(self, batches: beam.PCollection) -> None:
        settings = self._source.kafka_settings()
        window_s = self._mode.window_minutes * 60
        routed = batches | "ValidateMessages" >> ValidateMessages(window_s * 1000, self._lateness, self._bounded)
        routed[ALERTS] | "PublishAlerts" >> beam.ParDo(PublishToKafka(settings, self._topics.alerts_topic))
        routed[DEAD_LETTERS] | "DeadLetters" >> RouteDeadLetters(
            settings, self._source.dead_letter_topic, self._mode.output
        )
        routed.valid | "WriteLake" >> WriteLakeWindows(
            self._mode.output, window_s, self._mode.allowed_lateness_minutes * 60, self._bounded
        )


def drone_job(options: PipelineOptions) -> modes.KafkaJob:
    source = options.view_as(KafkaSourceOptions)
    return modes.KafkaJob(
        name=PIPELINE_NAME,
        topic=modes.source_topic(options, DRONE_MESSAGES),
        output_topics=(options.view_as(DroneStreamOptions).alerts_topic, source.dead_letter_topic),
        default_group_id=DEFAULT_GROUP_ID,
        wire=lambda pipeline, batches, lateness, bounded: batches
        | "ProcessDroneBatches" >> ProcessDroneBatches(options, lateness, bounded),
    )


def main(argv: list[str] | None = None) -> int:
    options = apply_local_defaults(PipelineOptions(argv if argv is not None else sys.argv[1:]))
    return modes.main(drone_job(options), options)


if __name__ == "__main__":
    sys.exit(main())
