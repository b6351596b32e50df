"""A history drain's spool: each slice's rows in one file per reader, until the merge puts them in their days.

Writing a slice's rows straight into ``history/dt=…/`` made one small file per issue date
per reader per slice (3,530 for a million rows), and the merge then read them all back:
small Parquet files cost more to write and to read than their rows do. So a drain writes
what a reader read in a slice as one spool file under ``_spool/history/<group>/``, sorted
by issue date with a record batch per week of issue dates (:func:`week_of`), named by the
offsets it holds (the same offsets read again make the same file). The drain's merge then
reads the spool a few weeks at a time — only those weeks' batches — together with what the lake
already holds for them, writes each day as a few files (one row per summons, the latest
load's) and, once every day is merged, deletes the spool files it read. Readers of the lake
see a slice's rows when its days are merged; a drain killed before that leaves its spool,
and the next drain's merge takes it in.
"""

from __future__ import annotations

import io
from collections import Counter
from datetime import date
from pathlib import PurePosixPath
from typing import Any, Iterable

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from transforms import lake

DAYS_PER_BATCH = 7  # a spool file's record batch holds one week of issue dates: what a merge run takes or skips
# A spool file is read once, by the merge, on the machine that wrote it: written fast rather than
# small, as Arrow's own file format, which the merge maps into memory instead of decoding.
# Measured per million rows in 53 weeks: Parquet with zstd and dictionaries 2.34 s to write
# and 1.26 s to read (55 MB), Parquet with LZ4 1.44 s and 0.79 s (116 MB), Arrow with LZ4
# 1.22 s and 0.45 s (184 MB).
SPOOL_SUFFIX = ".arrow"
SPOOL_WRITING = pa.ipc.IpcWriteOptions(compression="lz4")
# The file's own metadata: the week of each record batch, in order, and the rows of each issue date.
CONTENTS_KEY = b"dronecop.spool"


EPOCH = date(1970, 1, 1)  # what Arrow's date32 counts days from


def week_of(day: str | date) -> int:
    """Which week of issue dates a day belongs to: days since 1970-01-01, in sevens, as :func:`write_spool_file` cuts."""
    return ((date.fromisoformat(day) if isinstance(day, str) else day) - EPOCH).days // DAYS_PER_BATCH


def write_spool_file(root: str, group_id: str, name: str, ordered: pa.Table) -> str:
    """``ordered`` (sorted by issue date) as one spool file named after ``name``, a record batch per week, written atomically; its path."""
    weeks = ordered.column("issue_date").cast(pa.int32()).to_numpy() // DAYS_PER_BATCH
    starts = [0, *(np.flatnonzero(weeks[1:] != weeks[:-1]) + 1).tolist(), len(weeks)]
    batches = [ordered.slice(begin, end - begin).combine_chunks().to_batches()[0] for begin, end in zip(starts, starts[1:])]
    days, counts = _value_counts(ordered.column("issue_date"))
    contents = {"weeks": [int(weeks[begin]) for begin in starts[:-1]], "days": dict(zip(days, counts))}
    schema = ordered.schema.with_metadata({CONTENTS_KEY: orjson.dumps(contents)})
    buffer = io.BytesIO()
    with pa.ipc.new_file(buffer, schema, options=SPOOL_WRITING) as writer:
        for batch in batches:
            writer.write_batch(batch)
    path = lake.join(lake.spool_folder(root, lake.HISTORY, group_id), PurePosixPath(name).stem + SPOOL_SUFFIX)
    return lake.write_file_atomically(root, path, buffer.getvalue())


def spool_files(root: str, group_id: str) -> list[str]:
    """The spool files of ``group_id``'s drains, sorted."""
    from apache_beam.io.filesystems import FileSystems

    pattern = lake.join(lake.spool_folder(root, lake.HISTORY, group_id), f"*{SPOOL_SUFFIX}")
    return sorted(meta.path for meta in FileSystems.match([pattern])[0].metadata_list)


def spooled_days(paths: Iterable[str]) -> tuple[Counter[str], int]:
    """How many spooled rows each issue date has (from what each file says it holds), and the rows of the largest file.

    A file is what one reader held of a slice, so a merge that holds no more than that
    per worker stays within the memory the slices needed.
    """
    counts: Counter[str] = Counter()
    largest = 0
    for path in paths:
        days = _contents(_opened(path))["days"]
        largest = max(largest, sum(days.values()))
        counts.update(days)
    return counts, largest


def _value_counts(days: pa.ChunkedArray) -> tuple[list[str], list[int]]:
    counted = pc.value_counts(days.combine_chunks())
    return [day.isoformat() for day in counted.field("values").to_pylist()], counted.field("counts").to_pylist()


def day_groups(counts: Counter[str], other_days: Iterable[str], max_rows: int) -> list[list[str]]:
    """Every day of ``counts`` and ``other_days``, in order, cut into runs of whole weeks of at most ``max_rows`` spooled rows.

    A week with more rows than that is a run of its own: a week (a record batch) is never split.
    """
    weeks: dict[int, list[str]] = {}
    for day in sorted({*counts, *other_days}):
        weeks.setdefault(week_of(day), []).append(day)
    groups: list[list[str]] = []
    rows = 0
    for days in weeks.values():
        week_rows = sum(counts.get(day, 0) for day in days)
        if groups and rows + week_rows <= max_rows:
            groups[-1].extend(days)
            rows += week_rows
        else:
            groups.append(list(days))
            rows = week_rows
    return groups


def read_spooled_days(paths: Iterable[str], days: Iterable[str]) -> pa.Table:
    """The spooled rows of ``days``, reading only the record batches of their weeks."""
    wanted = sorted(date.fromisoformat(day) for day in days)
    weeks = {week_of(day) for day in wanted}
    tables = []
    for path in paths:
        spool = _opened(path)
        batches = [spool.get_batch(index) for index, week in enumerate(_contents(spool)["weeks"]) if week in weeks]
        if batches:
            table = pa.Table.from_batches(batches, spool.schema.remove_metadata())
            wanted_rows = pc.is_in(table.column("issue_date"), value_set=pa.array(wanted, pa.date32()))
            tables.append(table if pc.all(wanted_rows).as_py() else table.filter(wanted_rows))  # a run is whole weeks: mostly all
    if not tables:
        return lake.HISTORY_SCHEMA.empty_table()
    return lake.pin_types(pa.concat_tables(tables), lake.HISTORY_SCHEMA)


def _contents(spool: pa.ipc.RecordBatchFileReader) -> dict[str, Any]:
    """What :func:`write_spool_file` says the file holds: ``weeks`` (of each batch) and ``days`` (rows of each)."""
    return orjson.loads(spool.schema.metadata[CONTENTS_KEY])


def _opened(path: str) -> pa.ipc.RecordBatchFileReader:
    """A spool file: a local one mapped into memory, one in an object store read whole."""
    from apache_beam.io.filesystems import FileSystems

    if lake.is_local(path):
        return pa.ipc.open_file(pa.memory_map(path))
    with FileSystems.open(path) as handle:
        return pa.ipc.open_file(pa.BufferReader(handle.read()))


def remove_spool_files(paths: list[str]) -> None:
    """Delete spool files the merge has put in their days (once every day is merged)."""
    from apache_beam.io.filesystems import FileSystems

    if paths:
        FileSystems.delete(paths)
