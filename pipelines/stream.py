"""The drone stream: Kafka → validate → alerts at once, every valid message into the lake.

``python -m pipelines.stream [--drain | --follow | --streaming] --output ./lake``

The whole graph is :func:`build_pipeline`: raw Kafka batches are validated; code-100
messages go to the alerts topic at once; refused records to the dead letter (topic and
lake); valid ones into event-time windows of Parquet. Streaming, what the writers landed
commits the offsets below it. ``pipelines.modes`` only drives it (drain, follow, stream).

With a maintenance model (``--maintenance_model``, trained by ``pipelines.train_maintenance``)
and ``--streaming``, the valid rows are also scored (``transforms/maintenance/scoring.py``):
each drone's failure risk to the lake's ``drone_risk`` dataset, a maintenance alert to the
alerts topic when it crosses ``--maintenance_threshold``. Without one the graph is the same
as ever, and the job says so once.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import partial

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineRunner

from pipelines import modes
from pipelines.cli import parse_pipeline_args
from pipelines.options import DroneStreamOptions, KafkaSourceOptions, RunModeOptions
from runners.presets import FlinkPresetOptions
from transforms import lake
from transforms.dead_letters import RouteDeadLetters
from transforms.event_time import EventWindows
from transforms.kafka_publish import PublishToKafka
from transforms.kafka_settings import DRONE_MESSAGES
from transforms.lake_writer import WriteLakeWindows
from transforms.messages import ALERTS, DEAD_LETTERS, ValidateMessages

PIPELINE_NAME = "stream"
DEFAULT_GROUP_ID = "dronecop-stream"


@dataclass(frozen=True)
class Maintenance:
    """How the stream scores drones: the model file and, from it, the window and step it was trained with."""

    model_file: str
    window_ms: int
    step_ms: int
    threshold: float


def maintenance_of(options: PipelineOptions) -> Maintenance | None:
    """The scoring this run does, decided once and said once; None runs the stream as it always ran.

    Only a streaming job scores: a drain keeps no drone's history to the next, so one says nothing of models
    unless given one. A model file that is there but not a model this code can use is a usage error, not a
    silent skip.
    """
    stream = options.view_as(DroneStreamOptions)
    model_file = stream.maintenance_model
    if not 0 < stream.maintenance_threshold < 1:
        raise modes.UsageError("--maintenance_threshold must be between 0 and 1")
    if not options.view_as(StandardOptions).streaming:
        if model_file is not None:
            modes.tell(
                PIPELINE_NAME,
                "maintenance scoring runs with --streaming only (a drain keeps no drone's history to the next): drones are not scored",
            )
        return None
    if model_file is None or not lake.file_exists(model_file):
        where = "given (--maintenance_model)" if model_file is None else f"at {model_file}"
        modes.tell(
            PIPELINE_NAME,
            f"no maintenance model {where}: drones are not scored for maintenance (train one with python -m pipelines.train_maintenance)",
        )
        return None
    from transforms.maintenance.training import ModelFileError, load_model  # scikit-learn: only with a model

    try:
        document = load_model(model_file)
    except ModelFileError as error:
        raise modes.UsageError(str(error)) from None
    modes.tell(
        PIPELINE_NAME,
        f"scoring drones with {model_file} (trained on {' to '.join(document['training_range'])}, "
        f"ROC AUC {document['metrics']['roc_auc']}); maintenance alerts at risk {stream.maintenance_threshold}",
    )
    return Maintenance(model_file, document["window_minutes"] * 60_000, document["step_minutes"] * 60_000, stream.maintenance_threshold)


def build_pipeline(
    options: PipelineOptions, reading: modes.Reading, runner: PipelineRunner | None = None, maintenance: Maintenance | None = None
) -> beam.Pipeline:
    """Source → ValidateMessages → (alerts topic, dead letters, lake windows) → offsets committed when landed;
    with ``maintenance``, the valid rows scored too (risk to the lake, maintenance alerts to the alerts topic)."""
    source = options.view_as(KafkaSourceOptions)
    mode = options.view_as(RunModeOptions)
    settings = source.kafka_settings()
    windows = EventWindows(mode.window_minutes * 60_000)
    lateness_s = mode.allowed_lateness_minutes * 60

    pipeline = beam.Pipeline(runner=runner, options=options)
    batches = pipeline | "ReadKafka" >> reading.source
    routed = batches | "ValidateMessages" >> ValidateMessages(windows, lateness_s * 1000, mode.output)
    routed[ALERTS] | "PublishAlerts" >> beam.ParDo(PublishToKafka(settings, options.view_as(DroneStreamOptions).alerts_topic))
    dead_landed = routed[DEAD_LETTERS] | "DeadLetters" >> RouteDeadLetters(settings, source.dead_letter_topic, mode.output)
    lake_landed = routed.valid | "WriteLake" >> WriteLakeWindows(mode.output, windows, lateness_s, reading.bounded)
    if maintenance is not None:
        from transforms.maintenance.scoring import MaintenanceAlerts, ScoreDrones, WriteRiskWindows

        scores = routed.valid | "ScoreDrones" >> ScoreDrones(
            maintenance.model_file, maintenance.window_ms, maintenance.step_ms, windows, lateness_s
        )
        scores | "WriteRisk" >> WriteRiskWindows(mode.output)
        (
            scores
            | "MaintenanceAlerts" >> MaintenanceAlerts(maintenance.threshold)
            | "PublishMaintenanceAlerts" >> beam.ParDo(PublishToKafka(settings, options.view_as(DroneStreamOptions).alerts_topic))
        )
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
        build=partial(build_pipeline, maintenance=maintenance_of(options)),
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
