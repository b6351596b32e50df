"""Validate raw Kafka batches and split them three ways: lake rows, alerts, dead letters.

One element in is one poll of one partition (thousands of records); valid messages
leave as Arrow tables, one per event-time window, timestamped at the window's oldest
message, so that the later stages handle a few large elements instead of one Python
object per message. Lateness is judged here, by ``transforms.event_time``'s rule,
against the watermark each batch was read under: too late messages become dead letters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator, Sequence

import apache_beam as beam
import pyarrow as pa

from transforms import lake
from transforms.contract import DroneMessage, InvalidMessage, encode_alert, parse_message
from transforms.dead_letters import DeadLetter, DeadLetterBatch
from transforms.event_time import EventWindows, Lateness, lateness, to_timestamp
from transforms.kafka_source import RawBatch
from transforms.lake_writer import WindowRows
from transforms.metrics import counter, newest_event_distribution, to_write_counter

ALERTS = "alerts"
DEAD_LETTERS = "dead_letters"
TOO_LATE = Lateness.TOO_LATE.value


def messages_to_table(messages: Sequence[DroneMessage], partitions: Sequence[int], offsets: Sequence[int], lake_root: str) -> pa.Table:
    """The lake's drone table for validated messages, in the lake schema, with where the lake at ``lake_root``
    keeps each violation's photo."""
    columns = {
        name: [getattr(message, name) for message in messages]
        for name in lake.DRONE_SCHEMA.names
        if name not in ("image_uri", "kafka_partition", "kafka_offset")
    }
    columns["image_uri"] = [
        None if message.image_id is None else lake.image_path(lake_root, message.timestamp, message.image_id) for message in messages
    ]
    columns["kafka_partition"] = list(partitions)
    columns["kafka_offset"] = list(offsets)
    return pa.Table.from_pydict(columns, schema=lake.DRONE_SCHEMA)


class ParseMessages(beam.DoFn):
    """RawBatch in; per-window rows out (main), plus alerts and dead letters.

    Main output: ``(kafka_partition, WindowRows)``, every row inside one event-time window,
    timestamped at its oldest message. ``alerts``: ``(drone_id, alert bytes)``.
    ``dead_letters``: one :class:`DeadLetterBatch` per batch that has any. Rows record their
    photo's place in the lake at ``lake_root`` (made absolute here, where the job is built).
    """

    def __init__(self, windows: EventWindows, allowed_lateness_ms: int, lake_root: str):
        self._windows = windows
        self._allowed_lateness_ms = allowed_lateness_ms
        self._lake_root = lake.absolute(lake_root)
        self._valid = counter("valid")
        self._invalid = counter("invalid")
        self._alerts = counter("alerts")
        self._late = counter("late")
        self._too_late = counter(TOO_LATE)
        self._to_write = to_write_counter()

    def process(self, batch: RawBatch) -> Iterator[object]:
        raised_at = datetime.now(timezone.utc)
        by_window: dict[int, WindowBuilder] = {}
        dead: list[DeadLetter] = []
        for index, (offset, raw) in enumerate(zip(batch.offsets, batch.values)):
            result = parse_message(raw)
            if isinstance(result, InvalidMessage):
                self._invalid.inc()
                dead.append(DeadLetter(raw, result.reason, result.detail, batch.topic, batch.partition, offset, batch.stored_at(index)))
                continue
            moment_ms = result.event_ms
            start_ms = self._windows.start_ms(moment_ms)
            window = by_window.get(start_ms)
            if window is None:
                judged = lateness(start_ms + self._windows.size_ms, batch.watermark_ms, self._allowed_lateness_ms)
                window = by_window[start_ms] = WindowBuilder(judged)
            if window.lateness is Lateness.TOO_LATE:
                self._too_late.inc()
                detail = result.timestamp.isoformat()
                dead.append(DeadLetter(raw, TOO_LATE, detail, batch.topic, batch.partition, offset, batch.stored_at(index)))
                continue
            if result.needs_human:
                self._alerts.inc()
                alert = encode_alert(result, raised_at, batch.partition, offset)
                yield beam.pvalue.TaggedOutput(ALERTS, (result.drone_id.encode(), alert))
            window.add(result, offset, moment_ms)
        span = batch.span()
        if dead:
            self._to_write.inc(len(dead))
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, DeadLetterBatch(span, dead))
        kept = [window for window in by_window.values() if window.messages]
        if kept:
            newest_event_distribution(batch.partition).update(max(window.newest_ms for window in kept))
        for window in kept:
            rows = len(window.messages)
            self._valid.inc(rows)
            self._to_write.inc(rows)
            if window.lateness is Lateness.LATE:
                self._late.inc(rows)
            table = messages_to_table(window.messages, [batch.partition] * rows, window.offsets, self._lake_root)
            yield beam.window.TimestampedValue((batch.partition, WindowRows(span, table)), to_timestamp(window.oldest_ms))


@dataclass
class WindowBuilder:
    """One batch's valid messages of one event-time window, as they are parsed, and how late the window is."""

    lateness: Lateness
    messages: list[DroneMessage] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    oldest_ms: int = 2**63
    newest_ms: int = -1

    def add(self, message: DroneMessage, offset: int, moment_ms: int) -> None:
        self.messages.append(message)
        self.offsets.append(offset)
        self.oldest_ms = min(self.oldest_ms, moment_ms)
        self.newest_ms = max(self.newest_ms, moment_ms)


class ValidateMessages(beam.PTransform):
    """Raw batches → ``valid`` window rows (for the lake at ``lake_root``), ``alerts`` and ``dead_letters``."""

    def __init__(self, windows: EventWindows, allowed_lateness_ms: int, lake_root: str):
        super().__init__()
        self._windows = windows
        self._allowed_lateness_ms = allowed_lateness_ms
        self._lake_root = lake_root

    def expand(self, batches: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        parse = ParseMessages(self._windows, self._allowed_lateness_ms, self._lake_root)
        return batches | "Parse" >> beam.ParDo(parse).with_outputs(ALERTS, DEAD_LETTERS, main="valid")
