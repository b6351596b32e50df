"""The NYPD history: ``nypd-history`` batches from the CSV loader → ``lake/history/dt=…/``.

``python -m pipelines.history [--drain | --follow | --streaming] --output ./lake``

The whole graph is :func:`build_pipeline`: each batch of loader records becomes rows of
the lake's history; what is not a loader batch goes to the dead letter. A drain reads
its backlog in slices (``--slice_records`` loader batches at a time, so memory stays
flat), each reader's share of a slice one spool file (``transforms.history_spool``), then
merges the spool into its days, a few files each, one row per summons number: the latest
load's (``pipelines.compact.merge_spool``). Streaming, a bundle's rows go straight to
their days. A sibling of ``pipelines.stream``: same options, modes, offsets and dead letters.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineRunner

from pipelines import modes
from pipelines.cli import parse_pipeline_args
from pipelines.compact import IncompleteMerge, merge_spool
from pipelines.options import KafkaSourceOptions, RunModeOptions
from runners.presets import FlinkPresetOptions
from transforms.dead_letters import RouteDeadLetters
from transforms.history import WriteHistory
from transforms.kafka_settings import NYPD_HISTORY

PIPELINE_NAME = "history"
DEFAULT_GROUP_ID = "dronecop-history"
# Loader batches (50 records each by default) a drain reads at once: about 250,000 rows.
SLICE_RECORDS = 5_000
# Loader batches a drain's reader hands on at once (about 25,000 rows, 7.5 MB): the writer
# works on one while the consumer fetches the next, where a partition's whole share of a
# slice had been read before any of it was written.
BATCH_RECORDS = 500


def build_pipeline(options: PipelineOptions, reading: modes.Reading, runner: PipelineRunner | None = None) -> beam.Pipeline:
    """Source → WriteHistory → dead letters → offsets committed when landed."""
    source = options.view_as(KafkaSourceOptions)
    output = options.view_as(RunModeOptions).output

    spool_group = (source.group_id or DEFAULT_GROUP_ID) if reading.bounded else None  # a drain spools its slices

    pipeline = beam.Pipeline(runner=runner, options=options)
    batches = pipeline | "ReadKafka" >> reading.source
    history_landed, dead_letters = batches | "WriteHistory" >> WriteHistory(output, spool_group)
    dead_landed = dead_letters | "DeadLetters" >> RouteDeadLetters(source.kafka_settings(), source.dead_letter_topic, output)
    if reading.commit is not None:
        (history_landed, dead_landed) | "CommitLandedOffsets" >> reading.commit
    return pipeline


def merge_history(options: PipelineOptions, days: list[str] | None) -> dict[str, Any]:
    """The drain's merge: the spooled slices into ``days`` (None: every day), a few files each, one row per summons (the latest load's)."""
    started = time.monotonic()
    if days == []:
        return {}
    group = options.view_as(KafkaSourceOptions).group_id or DEFAULT_GROUP_ID
    try:
        merged = merge_spool(options.view_as(RunModeOptions).output, group, days)
    except IncompleteMerge as error:
        raise modes.IncompleteDrain(str(error)) from None
    return {"merge": {**merged, "seconds": round(time.monotonic() - started, 3)}}


def history_job(options: PipelineOptions) -> modes.KafkaJob:
    return modes.KafkaJob(
        name=PIPELINE_NAME,
        topic=modes.source_topic(options, NYPD_HISTORY),
        output_topics=(options.view_as(KafkaSourceOptions).dead_letter_topic,),
        default_group_id=DEFAULT_GROUP_ID,
        build=build_pipeline,
        slice_records=SLICE_RECORDS,
        batch_records=BATCH_RECORDS,
        after_drain=merge_history,
    )


def parse_options(argv: list[str]) -> PipelineOptions:
    """The flags as this pipeline reads them: each one known or refused, then the runner's preset filled in."""
    groups = [KafkaSourceOptions, RunModeOptions, FlinkPresetOptions]
    return parse_pipeline_args(argv, PIPELINE_NAME, __doc__, groups)


def main(argv: list[str] | None = None) -> int:
    arguments = argv if argv is not None else sys.argv[1:]
    return modes.main(PIPELINE_NAME, history_job, lambda: parse_options(arguments))


if __name__ == "__main__":
    sys.exit(main())
