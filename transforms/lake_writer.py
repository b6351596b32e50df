"""The drone lake's writer: event-time windows of validated messages → Parquet files.

Drains and the streaming job share it. Both window with Beam (``WindowInto`` with the
lake's ``FixedWindows``); the streaming job groups each window's rows per Kafka partition
and writes a file per pane as the watermark fires it, while a drain writes each batch's
window rows as they come, with no shuffle (Beam's ``multi_threading`` runner loses values
at a ``GroupByKey`` now and then, ``docs/repro/``, and a batch has no late data to wait for).
Every file reports which batches' records it landed, for the offsets' commit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystem import FileMetadata
from apache_beam.transforms import trigger
from apache_beam.utils.timestamp import Duration

from transforms import lake
from transforms.event_time import EventWindows
from transforms.landed_offsets import BatchSpan, Landed
from transforms.metrics import written_counter

# What a drone file is compared on with the other files of its window, and how many such
# rows one process keeps read (about 100 MB; a 5-minute window at 5,000 msg/s is 1.5 million).
COPY_COLUMNS = pa.schema([lake.DRONE_SCHEMA.field(name) for name in ("message_id", "kafka_partition", "kafka_offset")])
MAX_CACHED_ROWS = 2_000_000
BEYOND_EVERY_PLACE = (2**63, 2**63)


@dataclass(frozen=True)
class WindowRows:
    """The rows of one poll batch that fall in one event-time window, with the batch's span."""

    span: BatchSpan
    table: pa.Table


def unique_rows(table: pa.Table, key: str) -> pa.Table:
    """Rows in source order, keeping the first of each ``key``: replays never double a row."""
    seen: set[Any] = set()
    keep = []
    for index, value in enumerate(table.column(key).to_pylist()):
        if value not in seen:
            seen.add(value)
            keep.append(index)
    return table if len(keep) == table.num_rows else table.take(keep)


def without_earlier_copies(table: pa.Table, others: Sequence[pa.Table]) -> pa.Table:
    """``table`` without the rows whose message id one of ``others`` holds at the same or a smaller (partition, offset).

    A producer that sends again after a crash makes a second Kafka record of a message,
    usually drained after the first one's file is written; a streaming job restarted
    before its offsets were committed reads records again whose rows a closed window's
    file already holds. Only a copy at the same or a later place gives way, so the copy at
    the smallest (partition, offset) stays wherever it is: two writers that race can at
    worst both keep their copy, never both drop it. ``others`` are the message ids, Kafka
    partitions and offsets of the window's other files.
    """
    if not table.num_rows or not others:
        return table
    # One lookup over all files: the set of our ids is built once, not once per file.
    held = pa.concat_tables([other.select(COPY_COLUMNS.names) for other in others])
    copies = held.filter(pc.is_in(held.column("message_id"), value_set=table.column("message_id").combine_chunks()))
    earliest: dict[str, tuple[int, int]] = {}
    for message_id, place in zip(copies.column("message_id").to_pylist(), places(copies)):
        earliest[message_id] = min(place, earliest.get(message_id, place))
    if not earliest:
        return table
    ids = table.column("message_id").to_pylist()
    keep = [place < earliest.get(message_id, BEYOND_EVERY_PLACE) for message_id, place in zip(ids, places(table))]
    return table.filter(pa.array(keep, pa.bool_()))


def places(table: pa.Table) -> Iterator[tuple[int, int]]:
    """Each row's (Kafka partition, offset): the order in which copies of a message count."""
    return zip(table.column("kafka_partition").to_pylist(), table.column("kafka_offset").to_pylist())


class WindowCopies:
    """The message ids (with partitions and offsets) of a window's files, each file version read once per process.

    One per process, not per DoFn instance: ``--follow`` builds a new pipeline, so new
    DoFn instances, for every drain, and each drain compares its files with all earlier
    files of their windows (reading 1,200 of them afresh took a second). A file is
    known by path, size and modification time, so a rewritten file is read again. The
    least recently used windows go first once more than ``max_rows`` rows are held.
    """

    def __init__(self, max_rows: int):
        self._max_rows = max_rows
        self._rows = 0
        self._lock = threading.Lock()
        self._windows: OrderedDict[str, dict[str, tuple[tuple[int, float], pa.Table]]] = OrderedDict()

    def others(self, root: str, window_start: datetime, own_name: str) -> list[pa.Table]:
        """The ids of every file of the window but ``own_name`` (a rerun rewrites its own file: not a copy)."""
        window = lake.join(lake.drone_partition(root, window_start), lake.window_file_prefix(window_start))
        files = lake.window_files(root, window_start)
        return [self._ids(window, meta) for meta in files if meta.path.rsplit("/", 1)[-1] != own_name]

    def _ids(self, window: str, meta: FileMetadata) -> pa.Table:
        version = (meta.size_in_bytes, meta.last_updated_in_seconds)
        with self._lock:
            cached = self._windows.get(window, {}).get(meta.path)
            if cached is not None:
                self._windows.move_to_end(window)
        if cached is not None and cached[0] == version:
            return cached[1]
        table = lake.pin_types(lake.read_parquet(meta.path, COPY_COLUMNS.names), COPY_COLUMNS)
        with self._lock:
            self._keep(window, meta.path, version, table)
        return table

    def _keep(self, window: str, path: str, version: tuple[int, float], table: pa.Table) -> None:
        files = self._windows.setdefault(window, {})
        replaced = files.get(path)
        self._rows += table.num_rows - (replaced[1].num_rows if replaced else 0)
        files[path] = (version, table)
        self._windows.move_to_end(window)
        while self._rows > self._max_rows and len(self._windows) > 1:
            _, dropped = self._windows.popitem(last=False)
            self._rows -= sum(held.num_rows for _, held in dropped.values())


WINDOW_COPIES = WindowCopies(MAX_CACHED_ROWS)


class WriteWindowFiles(beam.DoFn):
    """One Parquet file per window, pane and Kafka partition (and, bounded, per batch).

    The window is Beam's (``WindowParam``). Streaming files are named by a digest of the
    message ids they hold. A bounded drain's files hold one window's rows of one
    chunk-aligned batch and are named by its first offset: a re-run of the same plan
    rewrites exactly the same names.

    A message id is kept once per file, and once per window as far as the window's other
    files already say (:func:`without_earlier_copies`); a file all of whose rows are
    elsewhere is not written. Names come from the rows before that comparison, so a rerun
    finds its own earlier file by name and leaves it out. What is left can only double,
    never lose, a message: two copies stay when the one at the smaller (partition,
    offset) is written last, which a copy sent again to a *different* Kafka partition
    can be, as can copies in files of one window written at the same moment (they
    cannot see each other). The analysis counts each message id once on read.
    """

    def __init__(self, root: str, name_by_offset: bool):
        self._root = root
        self._name_by_offset = name_by_offset
        self._copies: WindowCopies | None = None

    def setup(self) -> None:
        self._copies = WINDOW_COPIES

    def process(
        self,
        partition_rows: tuple[int, Iterable[WindowRows]],
        window: Any = beam.DoFn.WindowParam,
        pane: Any = beam.DoFn.PaneInfoParam,
    ) -> Iterator[Landed]:
        kafka_partition, parts = partition_rows
        parts = list(parts)
        table = pa.concat_tables([part.table for part in parts]).sort_by([("kafka_offset", "ascending")])
        table = unique_rows(table, "message_id")
        window_start = datetime.fromtimestamp(window.start.micros / 1e6, tz=timezone.utc)
        name = lake.window_file_name(window_start, pane.index, kafka_partition, self._tag(table))
        table = without_earlier_copies(table, self._copies.others(self._root, window_start, name))
        if table.num_rows:
            lake.write_table(self._root, lake.drone_partition(self._root, window_start), name, table)
        # Every incoming row is in the lake now, here or as an earlier copy elsewhere: routed and written agree.
        for part in parts:
            written_counter().inc(part.table.num_rows)
            yield Landed(part.span, part.table.num_rows)

    def _tag(self, table: pa.Table) -> str:
        if self._name_by_offset:
            return f"o{table.column('kafka_offset')[0].as_py()}"
        return lake.content_digest(table.column("message_id").to_pylist())


class WriteLakeWindows(beam.PTransform):
    """``(Kafka partition, WindowRows)``, timestamped by event time → Hive-partitioned Parquet files.

    Streaming: the watermark trigger fires each window once when it closes and again for
    every late element within ``allowed_lateness_s`` (a further pane, a further file).
    Bounded drains write each batch's rows of a window as they come (lateness between
    drains is judged upstream, against the previous drains' watermark). Emits
    :class:`Landed` reports.
    """

    def __init__(self, root: str, windows: EventWindows, allowed_lateness_s: int, bounded: bool = False):
        super().__init__()
        self._root = root
        self._windows = windows
        self._allowed_lateness_s = allowed_lateness_s
        self._bounded = bounded

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        windowed = rows | "EventTimeWindows" >> beam.WindowInto(
            self._windows.window_fn(),
            trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
            allowed_lateness=Duration(seconds=self._allowed_lateness_s),
            accumulation_mode=trigger.AccumulationMode.DISCARDING,
        )
        if self._bounded:
            grouped = windowed | "OneBatchPerFile" >> beam.MapTuple(lambda partition, part: (partition, [part]))
        else:
            grouped = windowed | "GroupByPartition" >> beam.GroupByKey()
        return grouped | "WriteParquet" >> beam.ParDo(WriteWindowFiles(self._root, name_by_offset=self._bounded))
