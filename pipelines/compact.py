"""Compaction of the lake: each partition's many small files → a few large ones, one row per key.

``python -m pipelines.compact --input ./lake --dataset history|drone [--dt YYYY-MM-DD ...] [--target_file_mb 128] [--settle_minutes 10]``

Every partition of the dataset (of the ``--dt`` days only, each flag one day) is rewritten
into files of about ``--target_file_mb``, sorted by key: a history row per summons (the
latest load's), a drone row per message (its first Kafka record's). A drone hour written
to within ``--settle_minutes`` is skipped. A partition already compacted is left alone, so
a second run changes nothing; a run killed at any point is finished or rolled back by the
next. Prints one JSON line: partitions compacted, already compact and skipped, and the
files and rows of the compacted ones before and after. The history drain's merge is
:func:`merge_spool`: its spooled slices into their days, compacted the same way.

The graph is :func:`build_pipeline`: partition folders → ``Reshuffle`` → ``CompactPartition``
→ counters. On local disks each partition is swapped at once; on object stores readers may
briefly see old and new files together (``transforms.compaction`` says why).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.analysis import AnalysisOptions
from pipelines.cli import one_line, parse_pipeline_args
from pipelines.options import CompactOptions
from runners.presets import batch_runner, local_options
from transforms import lake
from transforms.compaction import (
    DAYS_MERGED,
    DEFAULT_SETTLE_MINUTES,
    DEFAULT_TARGET_FILE_MB,
    FILES_AFTER,
    FILES_BEFORE,
    MB,
    OUTCOMES,
    ROWS_AFTER,
    ROWS_BEFORE,
    RULES,
    CompactPartition,
    Settings,
)
from transforms.history import MergeSpooledDays
from transforms.history_spool import day_groups, remove_spool_files, spool_files, spooled_days
from transforms.metrics import counters
from transforms.partition_replace import recover_all

PIPELINE_NAME = "compact"
EXIT_USAGE, EXIT_FAILED = 2, 1
EXIT_CODES = {
    0: "done: the JSON line says what was compacted",
    EXIT_FAILED: "the pipeline failed (one line says why); a rerun finishes what it left",
    EXIT_USAGE: "bad flags: no such lake folder, an unknown dataset, a --dt that is not a day",
}
# --input is the analysis's flag (AnalysisOptions): here too the lake root.
SHARED_FLAGS = {"--input": "Lake root: a local folder, gs://… or s3://….", "--runner": None}


MAX_MERGE_ATTEMPTS = 3


class UsageError(Exception):
    """A wrong flag value: printed as one line, exit code 2."""


@dataclass(frozen=True)
class Plan:
    """What this run compacts, decided before the pipeline is built."""

    root: str
    dataset: str
    partitions: list[str]
    settings: Settings


def plan_compaction(root: str, dataset: str | None, days: Iterable[str], target_file_mb: float, settle_minutes: float) -> Plan:
    """Check the request and list the partitions of ``dataset`` (of ``days``, when any) under the lake ``root``."""
    if dataset not in RULES:
        raise UsageError(f"--dataset must be one of {', '.join(sorted(RULES))}")
    if target_file_mb <= 0 or settle_minutes < 0:
        raise UsageError("--target_file_mb must be more than 0 and --settle_minutes at least 0")
    if lake.is_local(root):
        if not os.path.isdir(root):
            raise UsageError(f"no such folder: {root}")
        root = os.path.abspath(root)
    chosen = [checked_day(day) for day in days]
    settings = Settings(int(target_file_mb * MB), settle_minutes * 60)
    return Plan(root, dataset, lake.partition_folders(root, dataset, chosen), settings)


def checked_day(text: str) -> str:
    """``text`` if it is a day as the lake's ``dt=`` folders write it (YYYY-MM-DD)."""
    try:
        if date.fromisoformat(text).isoformat() == text:
            return text
    except ValueError:
        pass
    raise UsageError(f"--dt {text} is not a day (YYYY-MM-DD)")


def build_pipeline(pipeline: beam.Pipeline, plan: Plan) -> None:
    """Partition folders, spread over the workers, each compacted by one ``CompactPartition``."""
    (
        pipeline
        | "Partitions" >> beam.Create(plan.partitions, reshuffle=False)
        | "SpreadPartitions" >> beam.Reshuffle()
        | "Compact" >> beam.ParDo(CompactPartition(plan.root, plan.dataset, plan.settings))
    )


def run_compaction(plan: Plan, options: PipelineOptions) -> dict[str, Any]:
    """Finish what killed runs left (local disks), compact the plan's partitions; the summary."""
    finished = recover_all(plan.root, plan.dataset) if lake.is_local(plan.root) else 0
    totals: dict[str, int] = {}
    if plan.partitions:
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, plan)
        result = pipeline.run()
        result.wait_until_finish()
        totals = counters(result)
    return summary(plan, totals, finished)


def summary(plan: Plan, totals: dict[str, int], finished: int) -> dict[str, Any]:
    """The JSON line: partitions by outcome, files and rows of the compacted ones, interrupted runs finished."""
    return {
        "dataset": plan.dataset,
        "partitions": {outcome: totals.get(outcome, 0) for outcome in OUTCOMES},
        "files": {"before": totals.get(FILES_BEFORE, 0), "after": totals.get(FILES_AFTER, 0)},
        "rows": {"before": totals.get(ROWS_BEFORE, 0), "after": totals.get(ROWS_AFTER, 0)},
        "interrupted_runs_finished": finished,
    }


def compact_partitions(
    lake_root: str,
    dataset: str,
    days: Iterable[str],
    target_file_mb: float = DEFAULT_TARGET_FILE_MB,
    settle_minutes: float = DEFAULT_SETTLE_MINUTES,
) -> dict[str, Any]:
    """Compact the partitions of ``days`` in-process on the local runner; the summary.

    Raises :class:`UsageError` for a request the command line would refuse.
    """
    plan = plan_compaction(lake_root, dataset, days, target_file_mb, settle_minutes)
    return run_compaction(plan, local_options([], shuffles=True))


class IncompleteMerge(RuntimeError):
    """Days of a drain's merge kept going unmerged: its spool is kept for the next drain."""


def merge_spool(lake_root: str, group_id: str, days: list[str] | None) -> dict[str, Any]:
    """The history drain's merge: ``group_id``'s spooled slices into their days, with what the lake holds of them.

    ``days``: those the drains wrote since the last merge (None: not known, so every day
    of the lake) — merged with the spool's own days. Each run of days (as many spooled
    rows as the largest spool file: what one reader held) is a ``MergeSpooledDays``,
    spread over the local runner's threads by ``Create``'s reshuffle; the spool is deleted
    only once every day is counted merged, and the run repeated (it is idempotent) while
    some are not (Beam's ``multi_threading`` runner can lose a grouped element:
    ``docs/repro/``). Returns the compaction summary, with the days merged.
    """
    root = os.path.abspath(lake_root) if lake.is_local(lake_root) else lake_root
    finished = recover_all(root, lake.HISTORY) if lake.is_local(root) else 0
    spooled = spool_files(root, group_id)
    known = [folder.rsplit("dt=", 1)[-1] for folder in lake.partition_folders(root, lake.HISTORY)] if days is None else days
    counts, largest_file_rows = spooled_days(spooled)
    runs = day_groups(counts, known, max_rows=largest_file_rows)
    wanted = sum(len(run) for run in runs)
    plan = Plan(root, lake.HISTORY, [], Settings())
    totals: dict[str, int] = {}
    for _ in range(MAX_MERGE_ATTEMPTS):
        if not runs:
            break
        options = local_options([])
        pipeline = beam.Pipeline(runner=batch_runner(options), options=options)
        pipeline | "DayRuns" >> beam.Create(runs) | "Merge" >> beam.ParDo(MergeSpooledDays(root, plan.settings, spooled))
        result = pipeline.run()
        result.wait_until_finish()
        totals = counters(result)
        if totals.get(DAYS_MERGED, 0) == wanted:
            break
    else:
        raise IncompleteMerge(f"{totals.get(DAYS_MERGED, 0)} of {wanted} days merged; the spool is kept for the next drain")
    remove_spool_files(spooled)
    return {**summary(plan, totals, finished), "days": wanted, "spool_files": len(spooled)}


def main(argv: list[str] | None = None) -> int:
    flags = argv if argv is not None else sys.argv[1:]
    options = parse_pipeline_args(flags, PIPELINE_NAME, __doc__, [CompactOptions], SHARED_FLAGS, EXIT_CODES, shuffles=True)
    compact = options.view_as(CompactOptions)
    try:
        plan = plan_compaction(
            options.view_as(AnalysisOptions).input, compact.dataset, compact.dt or [], compact.target_file_mb, compact.settle_minutes
        )
    except UsageError as error:
        print(f"{PIPELINE_NAME}: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = run_compaction(plan, options)
    except Exception as error:  # noqa: BLE001 — the user gets one line; Beam has already logged the details
        print(f"{PIPELINE_NAME}: failed: {one_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
