"""The lake as the questions see it: only the columns they need, each row once, annotated.

Reading takes an explicit list of data files, in groups, projected to the columns the
chosen questions use (Parquet's column projection: other columns are never read). Replays can leave
a row in several files, so rows are de-duplicated by id before anything is counted:
each table is split by a stable hash of the id, tables of one bucket meet in one
``GroupByKey`` (every copy of an id lands in the same bucket) and the bucket keeps the
first copy of each id. Whole tables move through the shuffle (as Arrow IPC bytes),
never single rows.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from transforms import lake
from transforms.analysis import arrow_ops
from transforms.analysis.tallies import AddTallies
from transforms.contract import HUMAN_REVIEW_CODE
from transforms.geo import borough_of
from transforms.object_store import prepare_for

DEFAULT_BUCKETS = 16
FILES_PER_GROUP = 64
# Columns the drone annotation adds: New York day and hour, borough from the position, alert flag, and
# (with the photo's place read) whether an alert's photo is missing from the store.
NY_DAY, NY_HOUR, BOROUGH, IS_ALERT, PHOTO_MISSING = "ny_day", "ny_hour", "borough", "is_alert", "photo_missing"
DRONE_DAYS = "drone_days"
COUNTS = "inputs"  # the row counts' key among the results: the report section they go to
ROWS_READ, DISTINCT_ROWS = "rows_read", "distinct_rows"


@dataclass(frozen=True)
class Dataset:
    """One dataset of the lake as the analysis reads it."""

    name: str
    id_column: str
    schema: pa.Schema
    always_read: tuple[str, ...]

    def columns(self, wanted: Iterable[str]) -> list[str]:
        """``always_read`` plus ``wanted``, in schema order: the projection to read."""
        chosen = set(self.always_read) | set(wanted)
        unknown = chosen - set(self.schema.names)
        if unknown:
            raise ValueError(f"{self.name} has no column(s) {', '.join(sorted(unknown))}")
        return [name for name in self.schema.names if name in chosen]

    def projected_schema(self, columns: Iterable[str]) -> pa.Schema:
        return pa.schema([self.schema.field(name) for name in columns])


HISTORY = Dataset(lake.HISTORY, "summons_number", lake.HISTORY_SCHEMA, ("summons_number",))
DRONE = Dataset(lake.DRONE, "message_id", lake.DRONE_SCHEMA, ("message_id", "timestamp", "violation_code"))
RISK = Dataset(lake.DRONE_RISK, "message_id", lake.RISK_SCHEMA, ("message_id", "drone_id", "timestamp", "failure_risk"))
FAULTS = "faults"  # the drones' fault messages, read beside the risk scores they are judged against
FAULT_SCHEMA = pa.schema([lake.DRONE_SCHEMA.field(name) for name in ("message_id", "drone_id", "timestamp", "kind")])


def data_files(root: str, dataset: Dataset) -> list[str]:
    """Every data file of ``dataset`` under the lake ``root`` (local, gs://, s3://), sorted."""
    folder = lake.join(root, dataset.name)
    prepare_for(folder)
    try:
        matched = FileSystems.match([lake.join(folder, "**")])[0].metadata_list
    except Exception:  # noqa: BLE001 — a missing folder or bucket reads as "no files"; callers say so
        return []
    return sorted(meta.path for meta in matched if lake.is_data_file(meta.path[len(folder) :].replace("\\", "/").lstrip("/")))


class ReadLakeTables(beam.PTransform):
    """Data files → Arrow tables of just ``columns``, typed as the lake schema says.

    Files are read in groups, one table per group: the lake holds many small files (one
    per day and Kafka partition), and a step's cost is per table, so a few large
    tables go much faster than thousands of small ones. Groups are spread over the
    workers by one ``Reshuffle`` (not a second one inside ``Create``).
    """

    def __init__(self, files: list[str], schema: pa.Schema, files_per_group: int = FILES_PER_GROUP):
        super().__init__()
        self._groups = [files[start : start + files_per_group] for start in range(0, len(files), files_per_group)]
        self._schema = schema

    def expand(self, begin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            begin
            | "FileGroups" >> beam.Create(self._groups, reshuffle=False)
            | "SpreadGroups" >> beam.Reshuffle()
            | "ReadParquet" >> beam.Map(read_file_group, self._schema)
        )


def read_file_group(paths: list[str], schema: pa.Schema) -> pa.Table:
    """The files' rows, only the schema's columns, in the schema's types (a file may store a time in s, not ms).

    The files are read on a thread per core: Arrow decodes with the GIL released, and
    the local runner's one worker would otherwise leave the other cores idle (on two
    cores the bench lake reads in 1.6 s instead of 2.4 s).
    """
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        tables = list(pool.map(lambda path: lake.pin_types(lake.read_parquet(path, schema.names), schema), paths))
    return pa.concat_tables(tables).combine_chunks()


class SplitByIdBucket(beam.DoFn):
    """A table → ``(bucket, rows of that bucket)``, the bucket a stable hash of the id."""

    def __init__(self, id_column: str, buckets: int):
        self._id_column = id_column
        self._buckets = buckets

    def process(self, table: pa.Table) -> Iterator[tuple[int, bytes]]:
        if table.num_rows:
            buckets = arrow_ops.stable_buckets(table.column(self._id_column), self._buckets)
            yield from arrow_ops.split_by_bucket(table, buckets, self._buckets)


class DistinctRows(beam.PTransform):
    """Tables → tables in which each id appears once in all of them (one output table per bucket)."""

    def __init__(self, id_column: str, buckets: int = DEFAULT_BUCKETS):
        super().__init__()
        self._id_column = id_column
        self._buckets = buckets

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        return (
            tables
            | "SplitByIdBucket" >> beam.ParDo(SplitByIdBucket(self._id_column, self._buckets))
            | "GroupBuckets" >> beam.GroupByKey()
            | "FirstOfEachId" >> beam.Map(distinct_in_bucket, self._id_column)
        )


def distinct_in_bucket(bucket: tuple[int, Iterable[bytes]], id_column: str) -> pa.Table:
    """One bucket's tables as one, each id once: every copy of an id is in this bucket."""
    _, parts = bucket
    return arrow_ops.first_of_each(arrow_ops.concat_ipc(parts), id_column)


class ReadHistory(beam.PTransform):
    """The history lake's files → ``{"history": tables of distinct summonses, "counts": rows read and kept}``."""

    def __init__(self, files: list[str], columns: Iterable[str], buckets: int = DEFAULT_BUCKETS):
        super().__init__()
        self._files = files
        self._schema = HISTORY.projected_schema(HISTORY.columns(columns))
        self._buckets = buckets

    def expand(self, begin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        tables = begin | "Read" >> ReadLakeTables(self._files, self._schema)
        distinct = tables | "Distinct" >> DistinctRows(HISTORY.id_column, self._buckets)
        return {HISTORY.name: distinct, "counts": tables | "Counts" >> RowCounts(HISTORY.name, distinct)}


class ReadDrone(beam.PTransform):
    """The drone lake's files → ``{"drone": distinct sightings, annotated; "drone_days": New York days; "counts"}``.

    A sighting is a row with a violation code: a violation (a code the drone or an
    operator gave) or an alert (code 100, a human must look). Rows without a code only
    tell which days the fleet flew, which is all that is kept of them.
    """

    def __init__(self, files: list[str], columns: Iterable[str], buckets: int = DEFAULT_BUCKETS):
        super().__init__()
        self._files = files
        self._schema = DRONE.projected_schema(DRONE.columns(columns))
        self._buckets = buckets

    def expand(self, begin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        tables = begin | "Read" >> ReadLakeTables(self._files, self._schema)
        sightings = (
            tables
            | "Sightings" >> beam.Map(lambda table: table.filter(pc.is_valid(table.column("violation_code"))))
            | "Distinct" >> DistinctRows(DRONE.id_column, self._buckets)
            | "Annotate" >> beam.Map(annotate_sightings)
        )
        days = tables | "DaysFlown" >> beam.FlatMap(ny_days) | "DistinctDays" >> beam.Distinct()
        return {DRONE.name: sightings, DRONE_DAYS: days, "counts": tables | "Counts" >> RowCounts(DRONE.name, sightings)}


class ReadRisk(beam.PTransform):
    """The stream's risk scores and the drones' faults → ``{"drone_risk": distinct scores, "faults": distinct fault
    rows, "counts"}``. The faults come from the drone files, read again for just four columns: the sightings
    :class:`ReadDrone` keeps have none."""

    def __init__(self, risk_files: list[str], drone_files: list[str], buckets: int = DEFAULT_BUCKETS):
        super().__init__()
        self._risk_files = risk_files
        self._drone_files = drone_files
        self._buckets = buckets

    def expand(self, begin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        tables = begin | "Read" >> ReadLakeTables(self._risk_files, RISK.schema)
        distinct = tables | "Distinct" >> DistinctRows(RISK.id_column, self._buckets)
        faults = (
            begin
            | "ReadFaults" >> ReadLakeTables(self._drone_files, FAULT_SCHEMA)
            | "OnlyFaults" >> beam.Map(lambda table: table.filter(pc.equal(table.column("kind"), "fault")))
            | "DistinctFaults" >> DistinctRows(DRONE.id_column, self._buckets)
        )
        return {RISK.name: distinct, FAULTS: faults, "counts": tables | "Counts" >> RowCounts(RISK.name, distinct)}


class RowCounts(beam.PTransform):
    """Tables read, plus the tables kept from them → ``((COUNTS, dataset), {"rows_read": n, "distinct_rows": m})``.

    Both counts are added up in one combine of ``{name: rows}`` dicts: a combine is a
    stage of its own on the local runner. :func:`row_counts` reads the result.
    """

    def __init__(self, dataset: str, kept: beam.PCollection):
        super().__init__()
        self._dataset = dataset
        self._kept = kept

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        read = tables | "ReadRows" >> beam.Map(rows_as, ROWS_READ)
        kept = self._kept | "KeptRows" >> beam.Map(rows_as, DISTINCT_ROWS)
        return (
            (read, kept)
            | "AllRows" >> beam.Flatten()
            | "AddUp" >> beam.CombineGlobally(AddTallies()).without_defaults()
            | "Key" >> beam.WithKeys((COUNTS, self._dataset))
        )


def rows_as(table: pa.Table, name: str) -> dict[str, int]:
    return {name: table.num_rows}


def row_counts(added: dict[str, int]) -> dict[str, int]:
    """Both counts, zero where no table was added (files without rows leave nothing to keep)."""
    return {ROWS_READ: added.get(ROWS_READ, 0), DISTINCT_ROWS: added.get(DISTINCT_ROWS, 0)}


def ny_days(table: pa.Table) -> list[str]:
    """The New York calendar days (ISO text) a table's rows fall on."""
    return pc.unique(arrow_ops.ny_local(table.column("timestamp")).cast(pa.date32())).cast(pa.string()).to_pylist()


def annotate_sightings(table: pa.Table) -> pa.Table:
    """Adds the New York day and hour, the alert flag, (with a position) the borough the drone was over and
    (with the photo's place) whether an alert's photo is missing."""
    local = arrow_ops.ny_local(table.column("timestamp"))
    table = (
        table.append_column(NY_DAY, local.cast(pa.date32()))
        .append_column(NY_HOUR, pc.hour(local).cast(pa.int8()))
        .append_column(IS_ALERT, pc.equal(table.column("violation_code"), HUMAN_REVIEW_CODE))
    )
    if "latitude" in table.column_names and "longitude" in table.column_names:
        table = table.append_column(BOROUGH, pa.array(boroughs_of(table), pa.string()))
    if "image_uri" in table.column_names:
        table = table.append_column(PHOTO_MISSING, pa.array(alert_photos_missing(table), pa.bool_()))
    return table


def alert_photos_missing(table: pa.Table) -> list[bool]:
    """For each alert, whether the store lacks its photo (a row written before photos were recorded names none);
    False for the other rows. Only alerts are looked up: a human must see their photo, and they are few."""
    alerts, places = table.column(IS_ALERT).to_pylist(), table.column("image_uri").to_pylist()
    return [bool(alert) and (place is None or not lake.file_exists(place)) for alert, place in zip(alerts, places)]


def boroughs_of(table: pa.Table) -> list[str | None]:
    """The borough under each position, as the alert desk files alerts (the same outlines, the same shore rule)."""

    return [
        borough_of(latitude, longitude)
        for latitude, longitude in zip(table.column("latitude").to_pylist(), table.column("longitude").to_pylist())
    ]
