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
from transforms.messages import DeadLetter

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
    """One Parquet file per window, pane and Kafka partition, named by what it holds."""

    def __init__(self, root: str):
        self._root = root

    def process(
        self,
        keyed_tables: tuple[tuple[int, int], Iterable[pa.Table]],
        pane: Any = beam.DoFn.PaneInfoParam,
    ) -> Iterator[tuple[str, int]]:
        (kafka_partition, window_ms), tables = keyed_tables
        table = pa.concat_tables(list(tables)).sort_by([("kafka_offset", "ascending")])
        table = unique_rows(table, "message_id")
        window_start = datetime.fromtimestamp(window_ms / 1000, tz=timezone.utc)
        digest = lake.content_digest(table.column("message_id").to_pylist())
        name = lake.window_file_name(window_start, pane.index, kafka_partition, digest)
        path = lake.write_table(self._root, lake.drone_partition(self._root, window_start), name, table)
        yield path, table.num_rows


class WriteLakeWindows(beam.PTransform):
    """Tables keyed by (Kafka partition, window start) → Hive-partitioned Parquet files.

    Streaming: event-time fixed windows whose watermark trigger fires each window once
    when it closes and again for every late element within ``allowed_lateness_s`` (a
    further pane, a further file). Bounded drains group by the key alone in the global
    window: a batch runner has no late data to judge, and must not drop any (lateness
    between drains is judged upstream, against the previous drains' watermark).
    """

    def __init__(self, root: str, window_s: int, allowed_lateness_s: int, bounded: bool = False):
        super().__init__()
        self._root = root
        self._window_s = window_s
        self._allowed_lateness_s = allowed_lateness_s
        self._bounded = bounded

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        if not self._bounded:
            tables = tables | "EventTimeWindows" >> beam.WindowInto(
                FixedWindows(self._window_s),
                trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                allowed_lateness=Duration(seconds=self._allowed_lateness_s),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
            )
        return (
            tables
            | "GroupByPartitionAndWindow" >> beam.GroupByKey()
            | "WriteParquet" >> beam.ParDo(WriteWindowFiles(self._root))
        )


class WriteDeadLetterFiles(beam.DoFn):
    """All dead letters of one group in one file under ``dead_letter/dt=<received day>/``."""

    def __init__(self, root: str):
        self._root = root

    def process(self, keyed_letters: tuple[str, Iterable[DeadLetter]]) -> Iterator[tuple[str, int]]:
        day, letters = keyed_letters
        rows = sorted(letters, key=lambda letter: (letter.topic, letter.partition, letter.offset))
        name = f"dead-{lake.content_digest(dead_letter_key(letter) for letter in rows)}.parquet"
        folder = lake.date_partition(self._root, lake.DEAD_LETTER, day)
        yield lake.write_table(self._root, folder, name, dead_letters_to_table(rows)), len(rows)


class WriteDeadLetters(beam.PTransform):
    """Dead letters to the lake, grouped by the day they were received (and by window when streaming)."""

    def __init__(self, root: str, window_s: int, bounded: bool):
        super().__init__()
        self._root = root
        self._window_s = window_s
        self._bounded = bounded

    def expand(self, letters: beam.PCollection) -> beam.PCollection:
        by_day = letters | "ByReceivedDay" >> beam.Map(
            lambda letter: (f"{letter.received_at.astimezone(timezone.utc):%Y-%m-%d}", letter)
        )
        if not self._bounded:
            by_day = by_day | "DeadLetterWindows" >> beam.WindowInto(FixedWindows(self._window_s))
        return (
            by_day
            | "GroupByDay" >> beam.GroupByKey()
            | "WriteDeadLetterParquet" >> beam.ParDo(WriteDeadLetterFiles(self._root))
        )


class RouteDeadLetters(beam.PTransform):
    """Dead letters to the dead-letter topic (original bytes, reason in headers) and to the lake."""

    def __init__(self, settings: KafkaSettings, topic: str, root: str, window_s: int, bounded: bool):
        super().__init__()
        self._settings = settings
        self._topic = topic
        self._root = root
        self._window_s = window_s
        self._bounded = bounded

    def expand(self, letters: beam.PCollection) -> beam.PCollection:
        (
            letters
            | "DeadLetterRecords" >> beam.Map(dead_letter_record)
            | "PublishDeadLetters" >> beam.ParDo(PublishToKafka(self._settings, self._topic))
        )
        return letters | "DeadLettersToLake" >> WriteDeadLetters(self._root, self._window_s, self._bounded)
