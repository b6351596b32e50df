"""Compaction of the lake: one partition's many small files → a few large ones, one row per key.

A partition (``history/dt=…`` or ``drone/dt=…/hour=…``) is read whole, reduced to one row
per key by :func:`latest_per_key`, sorted by key and cut into files of about the target
size (128 MB of Arrow memory by default; Parquet on disk is several times smaller),
the whole partition in one file when it is smaller. A partition is compacted in one
worker's memory.

- Upsert: a history row per summons number, the latest load's (greatest ``loaded_at``,
  then ``source_line``), so a later load corrects earlier values; a drone row per
  message id, its first Kafka record's (lowest partition, then offset).
- Idempotent: a file's name comes from its content (``compacted-<digest>-<i>-of-<n>.parquet``),
  and a partition that is exactly one compaction's files is left untouched.
- Atomic on a local disk: the new files are staged outside the dataset and the partition
  folder is swapped with them at once (``transforms.partition_replace``); readers see the
  old files or the new ones (one that listed the old just before the swap finds them gone
  when it opens them, and lists again). Files a writer adds meanwhile are kept.
- Not atomic on ``gs://`` and ``s3://``: object stores cannot replace many objects at once,
  so the new files are written, then the inputs deleted, and a reader in between sees
  both. Our analysis de-duplicates on read; other readers may briefly count rows twice.
- One at a time per partition: a compaction holds the partition's lock from listing its
  inputs until its old folder is emptied, so a second (another drain's merge) waits and
  then lists what the first left (``partition_replace.partition_lock``; local disks only).
- Crash-safe: a run killed at any point leaves each partition old or new to readers
  (on object stores, old and new); the next run finishes or rolls back what it left.
- Settling: a drone partition whose newest file is younger than the settle time may
  still be written by a running stream, and is skipped.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from transforms import lake
from transforms.analysis.reading import read_file_group
from transforms.metrics import counter
from transforms.partition_replace import (
    FileVersion,
    NewFile,
    Swapped,
    finish_all,
    list_versions,
    partition_lock,
    replace_partition,
)

DEFAULT_TARGET_FILE_MB = 128.0
DEFAULT_SETTLE_MINUTES = 10.0
MB = 1 << 20
COMPACTED, ALREADY_COMPACT, SKIPPED = "compacted", "already_compact", "skipped"
OUTCOMES = (COMPACTED, ALREADY_COMPACT, SKIPPED)
# Swaps a bundle finishes together (one reader grace for all), each holding its partition's lock (a file) until then.
MAX_SWAPS_HELD = 256
DAYS_MERGED = "days_merged"
# Counters of the files and rows of the partitions compacted.
FILES_BEFORE, FILES_AFTER, ROWS_BEFORE, ROWS_AFTER = "files_before", "files_after", "rows_before", "rows_after"


@dataclass(frozen=True)
class DatasetRule:
    """What one row per key means for a dataset: the key, and the order whose first row is kept."""

    schema: pa.Schema
    key: str
    keep_first_by: tuple[tuple[str, str], ...]
    streamed: bool  # a running stream may still add files to its partitions


RULES = {
    lake.HISTORY: DatasetRule(
        lake.HISTORY_SCHEMA, "summons_number", (("loaded_at", "descending"), ("source_line", "descending")), streamed=False
    ),
    lake.DRONE: DatasetRule(
        lake.DRONE_SCHEMA, "message_id", (("kafka_partition", "ascending"), ("kafka_offset", "ascending")), streamed=True
    ),
}


@dataclass(frozen=True)
class Settings:
    """How large the compacted files are, and how long a streamed partition must be left alone first."""

    target_file_bytes: int = int(DEFAULT_TARGET_FILE_MB * MB)
    settle_seconds: float = DEFAULT_SETTLE_MINUTES * 60


@dataclass(frozen=True)
class Outcome:
    """What happened to one partition; the counts are of a compacted one."""

    status: str
    files_before: int = 0
    files_after: int = 0
    rows_before: int = 0
    rows_after: int = 0


def latest_per_key(table: pa.Table, dataset: str) -> pa.Table:
    """One row per key of ``dataset``, the one its rule keeps, sorted by key.

    History keeps a summons' latest load (greatest ``loaded_at``, then ``source_line``):
    a later load corrects earlier values. Drone keeps a message's first Kafka record
    (lowest partition, then offset): replays copy it whole.
    """
    if table.num_rows == 0:
        return table
    return table.take(latest_per_key_rows(table, dataset))


def latest_per_key_rows(table: pa.Table, dataset: str) -> pa.Array:
    """The indices of the rows :func:`latest_per_key` keeps, in key order: which rows, without copying any."""
    rule = RULES[dataset]
    order = pc.sort_indices(table, sort_keys=[(rule.key, "ascending"), *rule.keep_first_by])
    keys = table.column(rule.key).take(order)
    starts_a_key = pc.not_equal(keys.slice(1), keys.slice(0, len(keys) - 1))
    return order.filter(pa.concat_arrays([pa.array([True]), *starts_a_key.chunks]))


def rows_per_file(table: pa.Table, target_file_bytes: int) -> int:
    """How many of ``table``'s rows make about ``target_file_bytes`` of Arrow memory (at least one)."""
    return max(1, target_file_bytes * table.num_rows // max(1, table.nbytes))


def compacted_files(table: pa.Table, target_file_bytes: int) -> list[NewFile]:
    """``table`` cut into Parquet files of about the target size, named by a digest of them all."""
    per_file = rows_per_file(table, target_file_bytes)
    payloads = [lake.table_to_parquet_bytes(table.slice(start, per_file)) for start in range(0, table.num_rows, per_file)]
    digest = lake.bytes_digest(payloads)
    return [NewFile(lake.compacted_file_name(digest, index, len(payloads)), payload) for index, payload in enumerate(payloads)]


def left_as_is(dataset: str, inputs: Sequence[FileVersion], settings: Settings, now: float) -> str | None:
    """Why a partition of ``inputs`` is not compacted now (already compact, or still settling), or None."""
    if not inputs or lake.is_compacted_set(version.name for version in inputs):
        return ALREADY_COMPACT
    if RULES[dataset].streamed and now - max(version.mtime for version in inputs) < settings.settle_seconds:
        return SKIPPED
    return None


def compact_partition(
    root: str, dataset: str, folder: str, settings: Settings, now: float, arriving: pa.Table | None = None
) -> tuple[Outcome, Swapped | None]:
    """Compact the partition ``folder`` of ``dataset`` unless it is compact already or still settling.

    ``arriving``: rows not yet in the partition (a drain's spooled rows of that day) to
    merge with what it holds; then the partition is rewritten whatever it held.
    Returns what happened and, after a swap, the swap whose old folder is still to empty
    (``partition_replace.finish_all``).
    """
    if arriving is not None and arriving.num_rows and lake.is_local(root):
        os.makedirs(folder, exist_ok=True)  # a day the lake has not seen yet: an empty folder to swap with
    inputs = list_versions(folder)
    status = left_as_is(dataset, inputs, settings, now) if arriving is None or arriving.num_rows == 0 else None
    if status is not None:
        return Outcome(status), None
    held = [read_file_group([lake.join(folder, version.name) for version in inputs], RULES[dataset].schema)] if inputs else []
    table = pa.concat_tables([*held, *([arriving] if arriving is not None else [])])
    kept = latest_per_key(table, dataset)
    files = compacted_files(kept, settings.target_file_bytes)
    swapped = replace_partition(root, folder, files, inputs)
    return Outcome(COMPACTED, len(inputs), len(files), table.num_rows, kept.num_rows), swapped


class CompactPartition(beam.DoFn):
    """A partition folder → compacted, or left as is; each outcome and the compacted files and rows counted.

    Each partition is compacted under its lock (``partition_replace.partition_lock``), held
    until its old folder is emptied: when the bundle ends, or every :data:`MAX_SWAPS_HELD`
    swaps, once readers that listed the folders just before their swap are done
    (``partition_replace.READER_GRACE_S``).
    """

    def __init__(self, root: str, dataset: str, settings: Settings):
        self._root = root
        self._dataset = dataset
        self._settings = settings
        self._swaps: list[tuple[Swapped, contextlib.ExitStack]] = []

    def setup(self) -> None:
        lake.allocate_arrow_from_the_system()

    def start_bundle(self) -> None:
        self._swaps = []

    def process(self, folder: str) -> None:
        self._compact(folder)

    def _compact(self, folder: str, arriving: pa.Table | None = None) -> None:
        lock = contextlib.ExitStack()
        lock.enter_context(partition_lock(self._root, folder))
        try:
            outcome, swapped = compact_partition(self._root, self._dataset, folder, self._settings, time.time(), arriving)
        except BaseException:
            lock.close()
            raise
        if swapped is None:
            lock.close()
        else:
            self._swaps.append((swapped, lock))
        counter(outcome.status).inc()
        counter(FILES_BEFORE).inc(outcome.files_before)
        counter(FILES_AFTER).inc(outcome.files_after)
        counter(ROWS_BEFORE).inc(outcome.rows_before)
        counter(ROWS_AFTER).inc(outcome.rows_after)
        if len(self._swaps) >= MAX_SWAPS_HELD:
            self._finish_swaps()

    def finish_bundle(self) -> None:
        self._finish_swaps()

    def _finish_swaps(self) -> None:
        swaps, self._swaps = self._swaps, []
        try:
            finish_all([swapped for swapped, _ in swaps])
        finally:
            for _, lock in swaps:
                lock.close()
