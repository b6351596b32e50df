"""The NYPD history: ``nypd-history`` batches from the CSV loader → ``lake/history/dt=…/``.

``python -m pipelines.history [--drain | --follow | --streaming] --output ./lake``
A sibling of ``pipelines.stream``: same options, modes, offsets and dead letters.
"""

from __future__ import annotations

import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import modes
from pipelines.options import KafkaSourceOptions, RunModeOptions
from runners.presets import apply_local_defaults
from transforms.history import WriteHistory
from transforms.kafka_settings import NYPD_HISTORY

from transforms.sinks import RouteDeadLetters

PIPELINE_NAME = "history"
DEFAULT_GROUP_ID = "dronecop-history"


class ProcessHistoryBatches(beam.PTransform):
    """Raw loader batches → merged history files, and dead letters for what is not a batch."""

    def __init__(self, options: PipelineOptions):
        super().__init__()
        self._source = options.view_as(KafkaSourceOptions)
        self._mode = options.view_as(RunModeOptions)

    def expand(self, batches: beam.PCollection) -> None:
        _, dead_letters = batches | "WriteHistory" >> WriteHistory(self._mode.output)
        dead_letters | "DeadLetters" >> RouteDeadLetters(
            self._source.kafka_settings(), self._source.dead_letter_topic, self._mode.output
        )


def history_job(options: PipelineOptions) -> modes.KafkaJob:
    return modes.KafkaJob(
        name=PIPELINE_NAME,
        topic=modes.source_topic(options, NYPD_HISTORY),
        output_topics=(options.view_as(KafkaSourceOptions).dead_letter_topic,),
        default_group_id=DEFAULT_GROUP_ID,
        wire=lambda pipeline, batches, _lateness, _bounded: batches
        | "ProcessHistoryBatches" >> ProcessHistoryBatches(options),
    )


def main(argv: list[str] | None = None) -> int:
    options = apply_local_defaults(PipelineOptions(argv if argv is not None else sys.argv[1:]))
    return modes.main(history_job(options), options)


if __name__ == "__main__":
    sys.exit(main())
