"""Records a pipeline refuses: kept with why and where, on the dead-letter topic and in the lake.

Nothing is refused silently. A batch's dead letters travel together with the span of the
batch they came from, so landing them counts towards committing that batch's offsets.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

import apache_beam as beam
import pyarrow as pa

from transforms import lake
from transforms.kafka_publish import PublishToKafka
from transforms.kafka_settings import KafkaSettings
from transforms.landed_offsets import BatchSpan, Landed
from transforms.metrics import written_counter


@dataclass(frozen=True)
class DeadLetter:
    """A refused record with where it came from and why; ``received_at`` is when the broker stored it."""

    raw: bytes
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    received_at: datetime


@dataclass(frozen=True)
class DeadLetterBatch:
    """The dead letters of one poll batch, and the batch's span."""

    span: BatchSpan
    letters: list[DeadLetter]


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


class WriteDeadLetterFiles(beam.DoFn):
    """One batch's dead letters in one file under ``dead_letter/dt=<day the broker stored the first>/``.

    Named by source and the first and last offsets it holds, and holding only the letters
    no other file of the partition and day holds: a batch read again — after a restart,
    cut at other offsets than before — adds what is new, and a rerun of the same batch
    finds all of it written.
    """

    def __init__(self, root: str):
        self._root = root

    def process(self, batch: DeadLetterBatch) -> Iterator[Landed]:
        first = batch.letters[0]
        day = f"{first.received_at.astimezone(timezone.utc):%Y-%m-%d}"
        folder = lake.date_partition(self._root, lake.DEAD_LETTER, day)
        offsets = [letter.offset for letter in batch.letters]
        held = offsets_held(folder, first.topic, first.partition, min(offsets), max(offsets))
        fresh = [letter for letter in batch.letters if letter.offset not in held]
        if fresh:
            name = f"dead-{first.topic}-p{first.partition}-o{fresh[0].offset}-{fresh[-1].offset}.parquet"
            lake.write_table(self._root, folder, name, dead_letters_to_table(fresh))
        written_counter().inc(len(batch.letters))
        yield Landed(batch.span, len(batch.letters))


DEAD_LETTER_RANGE = re.compile(r"-o(\d+)(?:-(\d+))?\.parquet$")


def offsets_held(folder: str, topic: str, partition: int, low: int, high: int) -> set[int]:
    """The offsets from ``low`` to ``high`` that dead-letter files of ``topic``'s ``partition`` in ``folder`` hold."""
    held: set[int] = set()
    for meta in lake.matching_files(folder, f"dead-{glob.escape(topic)}-p{partition}-o*.parquet"):
        found = DEAD_LETTER_RANGE.search(meta.path)
        if found is None:
            continue
        first, last = int(found.group(1)), int(found.group(2) or found.group(1))
        if first <= high and (found.group(2) is None or last >= low):
            column = lake.read_parquet(meta.path, ["kafka_offset"]).column("kafka_offset").to_pylist()
            held.update(offset for offset in column if low <= offset <= high)
    return held


class RouteDeadLetters(beam.PTransform):
    """Dead-letter batches to the dead-letter topic and to the lake; what landed comes out.

    The topic gets the original bytes with the reason, source partition and offset in
    headers; the lake gets one file per batch. No shuffle, so nothing waits for a window.
    """

    def __init__(self, settings: KafkaSettings, topic: str, root: str):
        super().__init__()
        self._settings = settings
        self._topic = topic
        self._root = root

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        (
            batches
            | "DeadLetterRecords" >> beam.FlatMap(lambda batch: [dead_letter_record(letter) for letter in batch.letters])
            | "PublishDeadLetters" >> beam.ParDo(PublishToKafka(self._settings, self._topic))
        )
        return batches | "DeadLettersToLake" >> beam.ParDo(WriteDeadLetterFiles(self._root))
