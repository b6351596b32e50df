"""Where validated data goes: Kafka topics (alerts, dead letters) and the Parquet lake.

Both sinks only let a bundle finish once its data is safe (the broker acknowledged
every record, or the file was renamed into place), which is what allows offsets to be
committed after a run without losing anything.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms import trigger
from apache_beam.transforms.window import FixedWindows
from apache_beam.utils.timestamp import Duration

from transforms import lake
from transforms.kafka_settings import KafkaSettings
from transforms.messages import DeadLetter, written_counter

FLUSH_TIMEOUT_S = 120.0


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


class WriteWindowFiles(beam.DoFn):
    """One Parquet file per window, pane and Kafka partition (and, bounded, per batch).

    Streaming files are named by a digest of the message ids they hold. A bounded drain's
    files hold one window's rows of one chunk-aligned batch and are named by its first
    offset: a re-run of the same plan rewrites exactly the same names.
    """

    def __init__(self, root: str, name_by_offset: bool):
        self._root = root
        self._name_by_offset = name_by_offset

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
        tag = (
            f"o{table.column('kafka_offset')[0].as_py()}"
            if self._name_by_offset
            else lake.content_digest(table.column("message_id").to_pylist())
        )
        name = lake.window_file_name(window_start, pane.index, kafka_partition, tag)
        path = lake.write_table(self._root, lake.drone_partition(self._root, window_start), name, table)
        written_counter().inc(incoming)
        yield path, table.num_rows


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
    """One batch's dead letters in one file under ``dead_letter/dt=<received day>/``.

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
