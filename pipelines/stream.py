"""The drone stream: Kafka → validate → alerts at once, every valid message into the lake.

``python -m pipelines.stream [--drain | --follow | --streaming] --output ./lake``

The whole graph is :func:`build_pipeline`: raw Kafka batches are validated; code-100
messages go to the alerts topic at once; refused records to the dead letter (topic and
lake); valid ones into event-time windows of Parquet. Streaming, what the writers landed
commits the offsets below it. ``pipelines.modes`` only drives it (drain, follow, stream).
"""

from __future__ import annotations

import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import modes
from pipelines.cli import parse_pipeline_args
from pipelines.options import DroneStreamOptions, KafkaSourceOptions, RunModeOptions
from runners.presets import FlinkPresetOptions
from transforms.dead_letters import RouteDeadLetters
from transforms.event_time import EventWindows
from transforms.kafka_publish import PublishToKafka
from transforms.kafka_settings import DRONE_MESSAGES
from transforms.lake_writer import WriteLakeWindows
from transforms.messages import ALERTS, DEAD_LETTERS, ValidateMessages

PIPELINE_NAME = "stream"
DEFAULT_GROUP_ID = "dronecop-stream"


def build_pipeline(options: PipelineOptions, reading: modes.Reading, runner: str | None = None) -> beam.Pipeline:
    """Source → ValidateMessages → (alerts topic, dead letters, lake windows) → offsets committed when landed."""
    source = options.view_as(KafkaSourceOptions)
    mode = options.view_as(RunModeOptions)
    settings = source.kafka_settings()
    windows = EventWindows(mode.window_minutes * 60_000)
    lateness_s = mode.allowed_lateness_minutes * 60

    pipeline = beam.Pipeline(runner=runner, options=options)
    batches = pipeline | "ReadKafka" >> reading.source
    routed = batches | "ValidateMessages" >> ValidateMessages(windows, lateness_s * 1000, mode.output)
    routed[ALERTS] | "PublishAlerts" >> beam.ParDo(
        PublishToKafka(settings, options.view_as(DroneStreamOptions).alerts_topic)
    )
    dead_landed = routed[DEAD_LETTERS] | "DeadLetters" >> RouteDeadLetters(
        settings, source.dead_letter_topic, mode.output
    )
    lake_landed = routed.valid | "WriteLake" >> WriteLakeWindows(mode.output, windows, lateness_s, reading.bounded)
    if reading.commit is not None:
        (dead_landed, lake_landed) | "CommitLandedOffsets" >> reading.commit
    return pipeline


def drone_job(options: PipelineOptions) -> modes.KafkaJob:
    source = options.view_as(KafkaSourceOptions)
    return modes.KafkaJob(
        name=PIPELINE_NAME,
        topic=modes.source_topic(options, DRONE_MESSAGES),
        output_topics=(options.view_as(DroneStreamOptions).alerts_topic, source.dead_letter_topic),
        default_group_id=DEFAULT_GROUP_ID,
        build=build_pipeline,
    )


def parse_options(argv: list[str]) -> PipelineOptions:
    """The flags as this pipeline reads them: each one known or refused, then the runner's preset filled in."""
    groups = [KafkaSourceOptions, RunModeOptions, DroneStreamOptions, FlinkPresetOptions]
    return parse_pipeline_args(argv, PIPELINE_NAME, __doc__, groups)


def main(argv: list[str] | None = None) -> int:
    arguments = argv if argv is not None else sys.argv[1:]
    return modes.main(PIPELINE_NAME, drone_job, lambda: parse_options(arguments))


if __name__ == "__main__":
    sys.exit(main())
