"""Where validated data goes: Kafka topics (alerts, dead letters) and the Parquet lake.

Both sinks only let a bundle finish once its data is safe (the broker acknowledged
every record, or the file was renamed into place), which is what allows offsets to be
committed after a run without losing anything.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystem import FileMetadata
from apache_beam.transforms import trigger
from apache_beam.transforms.window import FixedWindows
from apache_beam.utils.timestamp import Duration

from transforms import lake
from transforms.kafka_settings import KafkaSettings
from transforms.messages import DeadLetter, written_counter

FLUSH_TIMEOUT_S = 120.0
# What a drone file is compared on with the other files of its window, and how many such
# rows one process keeps read (about 100 MB; a 5-minute window at 5,000 msg/s is 1.5 million).
COPY_COLUMNS = pa.schema([lake.DRONE_SCHEMA.field(name) for name in ("message_id", "kafka_partition", "kafka_offset")])
MAX_CACHED_ROWS = 2_000_000


class KafkaDeliveryError(RuntimeError):
    """The broker did not acknowledge every record of a bundle."""


class PublishToKafka(beam.DoFn):
    """Produce ``(key, value)`` or ``(key, value, headers)`` to a topic; a bundle ends acknowledged."""

    def __init__(self, settings: KafkaSettings, topic: str):
        self._settings = settings
        self._topic = topic
        self._producer: Any = None
        self._failures: list[str] = []

    def setup(self) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(self._settings.producer_config(**{"linger.ms": 5, "log_level": 0}))

    def start_bundle(self) -> None:
        self._failures = []

    def process(self, record: tuple) -> None:
        key, value, *headers = record
        self._producer.produce(
            self._topic, value=value, key=key, headers=headers[0] if headers else None, on_delivery=self._delivered
        )
        self._producer.poll(0)

    def finish_bundle(self) -> None:
        remaining = self._producer.flush(FLUSH_TIMEOUT_S)
        if remaining or self._failures:
            raise KafkaDeliveryError(
                f"{self._topic}: {remaining} records unacknowledged, {len(self._failures)} failed"
                + (f" (first: {self._failures[0]})" if self._failures else "")
            )

    def teardown(self) -> None:
        if self._producer is not None:
            self._producer.flush(FLUSH_TIMEOUT_S)

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self._failures.append(str(error))


def dead_letter_record(letter: DeadLetter) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """The dead-letter topic keeps the original bytes; why and where travel in headers."""
    headers = [
        ("reason", letter.reason.encode()),
        ("detail", letter.detail.encode("utf-8", "replace")),
        ("source_topic", letter.topic.encode()),
        ("source_partition", str(letter.partition).encode()),
        ("source_offset", str(letter.offset).encode()),
    ]
    return dead_letter_key(letter).encode(), letter.raw, headers


def dead_letter_key(letter: DeadLetter) -> str:
    return f"{letter.topic}:{letter.partition}:{letter.offset}"


def dead_letters_to_table(rows: list[DeadLetter]) -> pa.Table:
    return pa.Table.from_pydict(
        {
            "raw": [letter.raw for letter in rows],
            "reason": [letter.reason for letter in rows],
            "detail": [letter.detail for letter in rows],
            "kafka_topic": [letter.topic for letter in rows],
            "kafka_partition": [letter.partition for letter in rows],
            "kafka_offset": [letter.offset for letter in rows],
            "received_at": [letter.received_at for letter in rows],
        },
        schema=lake.DEAD_LETTER_SCHEMA,
    )


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
    """``table`` without the rows whose message id one of ``others`` holds at a smaller (partition, offset).

    A producer that sends again after a crash makes a second Kafka record of a message,
    usually drained after the first one's file is written. Only the later copy gives way,
    so the copy at the smallest (partition, offset) stays wherever it is: two writers that
    race can at worst both keep their copy, never both drop it. ``others`` are the message
    ids, Kafka partitions and offsets of the window's other files.
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
    keep = [earliest.get(message_id, place) >= place for message_id, place in zip(ids, places(table))]
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

    Streaming files are named by a digest of the message ids they hold. A bounded drain's
    files hold one window's rows of one chunk-aligned batch and are named by its first
    offset: a re-run of the same plan rewrites exactly the same names.

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
        keyed_tables: tuple[tuple[int, int], Iterable[pa.Table]],
        pane: Any = beam.DoFn.PaneInfoParam,
    ) -> Iterator[tuple[str, int]]:
        (kafka_partition, window_ms), tables = keyed_tables
        table = pa.concat_tables(list(tables)).sort_by([("kafka_offset", "ascending")])
        incoming = table.num_rows
        table = unique_rows(table, "message_id")
        window_start = datetime.fromtimestamp(window_ms / 1000, tz=timezone.utc)
        name = lake.window_file_name(window_start, pane.index, kafka_partition, self._tag(table))
        table = without_earlier_copies(table, self._copies.others(self._root, window_start, name))
        if table.num_rows:
            yield lake.write_table(self._root, lake.drone_partition(self._root, window_start), name, table), table.num_rows
        # Every incoming row is in the lake now, here or as an earlier copy elsewhere: routed and written agree.
        written_counter().inc(incoming)

    def _tag(self, table: pa.Table) -> str:
        if self._name_by_offset:
            return f"o{table.column('kafka_offset')[0].as_py()}"
        return lake.content_digest(table.column("message_id").to_pylist())


class WriteLakeWindows(beam.PTransform):
    """Tables keyed by (Kafka partition, window start) → Hive-partitioned Parquet files.

    Streaming: event-time fixed windows whose watermark trigger fires each window once
    when it closes and again for every late element within ``allowed_lateness_s`` (a
    further pane, a further file). Bounded drains write each batch's window tables as
    they come, with no shuffle: Beam's Python batch runner was seen to lose whole groups
    at a GroupByKey under load, and a batch runner has no late data to judge anyway
    (lateness between drains is judged upstream, against the previous drains' watermark).
    """

    def __init__(self, root: str, window_s: int, allowed_lateness_s: int, bounded: bool = False):
        super().__init__()
        self._root = root
        self._window_s = window_s
        self._allowed_lateness_s = allowed_lateness_s
        self._bounded = bounded

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        if self._bounded:
            grouped = tables | "OneTablePerFile" >> beam.MapTuple(lambda key, table: (key, [table]))
        else:
            grouped = (
                tables
                | "EventTimeWindows"
                >> beam.WindowInto(
                    FixedWindows(self._window_s),
                    trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                    allowed_lateness=Duration(seconds=self._allowed_lateness_s),
                    accumulation_mode=trigger.AccumulationMode.DISCARDING,
                )
                | "GroupByPartitionAndWindow" >> beam.GroupByKey()
            )
        return grouped | "WriteParquet" >> beam.ParDo(WriteWindowFiles(self._root, name_by_offset=self._bounded))


class WriteDeadLetterFiles(beam.DoFn):
    """One batch's dead letters in one file under ``dead_letter/dt=<day the broker stored the first>/``.

    Named by source and first offset: a re-read batch rewrites its own file.
    """

    def __init__(self, root: str):
        self._root = root

    def process(self, letters: list[DeadLetter]) -> Iterator[tuple[str, int]]:
        first = letters[0]
        day = f"{first.received_at.astimezone(timezone.utc):%Y-%m-%d}"
        name = f"dead-{first.topic}-p{first.partition}-o{first.offset}.parquet"
        folder = lake.date_partition(self._root, lake.DEAD_LETTER, day)
        path = lake.write_table(self._root, folder, name, dead_letters_to_table(letters))
        written_counter().inc(len(letters))
        yield path, len(letters)


class RouteDeadLetters(beam.PTransform):
    """Lists of dead letters (one per batch) to the dead-letter topic and to the lake.

    The topic gets the original bytes with the reason, source partition and offset in
    headers; the lake gets one file per batch. No shuffle, so nothing waits for a window.
    """

    def __init__(self, settings: KafkaSettings, topic: str, root: str):
        super().__init__()
        self._settings = settings
        self._topic = topic
        self._root = root

    def expand(self, letter_lists: beam.PCollection) -> beam.PCollection:
        (
            letter_lists
            | "DeadLetterRecords" >> beam.FlatMap(lambda letters: [dead_letter_record(letter) for letter in letters])
            | "PublishDeadLetters" >> beam.ParDo(PublishToKafka(self._settings, self._topic))
        )
        return letter_lists | "DeadLettersToLake" >> beam.ParDo(WriteDeadLetterFiles(self._root))
