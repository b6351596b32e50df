"""Validate raw Kafka batches and split them three ways: lake rows, alerts, dead letters.

One element in is one poll of one partition (thousands of records); valid messages
leave as Arrow tables, one per event-time window, so that the later stages handle a
few large elements instead of one Python object per message.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator, Sequence

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.utils.timestamp import Timestamp

from transforms import lake
from transforms.contract import DroneMessage, InvalidMessage, encode_alert, parse_message
from transforms.kafka_source import RawBatch

ALERTS = "alerts"
DEAD_LETTERS = "dead_letters"
TOO_LATE = "too_late"
METRICS_NAMESPACE = "dronecop"
# Every record a drain must land (lake rows and dead letters) is counted once when it is
# routed and once when its file is in place; the driver commits only when both agree.
TO_WRITE = "to_write"
WRITTEN = "written"


def to_write_counter():
    return Metrics.counter(METRICS_NAMESPACE, TO_WRITE)


def written_counter():
    return Metrics.counter(METRICS_NAMESPACE, WRITTEN)


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
class Lateness:
    """How late a message may be, judged against the watermark of earlier drains.

    ``watermark_ms`` is None on a first run (nothing is late then). Messages older than
    the watermark are late and still written; older than the watermark minus the allowed
    lateness they are too late, counted and sent to the dead letter, never dropped.
    """

    watermark_ms: int | None = None
    allowed_ms: int = 120 * 60_000

    def is_late(self, event_ms: int) -> bool:
        return self.watermark_ms is not None and event_ms < self.watermark_ms

    def is_too_late(self, event_ms: int) -> bool:
        return self.watermark_ms is not None and event_ms < self.watermark_ms - self.allowed_ms


def event_ms(message: DroneMessage) -> int:
    return int(message.timestamp.timestamp() * 1000)


def messages_to_table(messages: Sequence[DroneMessage], partitions: Sequence[int], offsets: Sequence[int]) -> pa.Table:
    """The lake's drone table for validated messages, in the lake schema."""
    columns = {
        name: [getattr(message, name) for message in messages]
        for name in lake.DRONE_SCHEMA.names
        if name not in ("kafka_partition", "kafka_offset")
    }
    columns["kafka_partition"] = list(partitions)
    columns["kafka_offset"] = list(offsets)
    return pa.Table.from_pydict(columns, schema=lake.DRONE_SCHEMA)


def window_start_ms(moment_ms: int, window_ms: int) -> int:
    return moment_ms - moment_ms % window_ms


class ParseMessages(beam.DoFn):
    """RawBatch in; per-window Arrow tables out (main), plus alerts and dead letters.

    Main output: ``((kafka_partition, window_start_ms), table)``, every row inside that one
    window, timestamped at its earliest event time when streaming. ``dead_letters``: one
    list of :class:`DeadLetter` per batch that has any. ``alerts``: ``(drone_id, alert bytes)``.
    ``dead_letters``: :class:`DeadLetter`.
    """

    def __init__(self, window_ms: int, lateness: Lateness, event_timestamps: bool):
        self._window_ms = window_ms
        self._lateness = lateness
        self._event_timestamps = event_timestamps
        self._valid = Metrics.counter(METRICS_NAMESPACE, "valid")
        self._invalid = Metrics.counter(METRICS_NAMESPACE, "invalid")
        self._alerts = Metrics.counter(METRICS_NAMESPACE, "alerts")
        self._late = Metrics.counter(METRICS_NAMESPACE, "late")
        self._too_late = Metrics.counter(METRICS_NAMESPACE, "too_late")
        self._to_write = to_write_counter()

    def process(self, batch: RawBatch) -> Iterator[object]:
        raised_at = datetime.now(timezone.utc)
        by_window: dict[int, list[tuple[DroneMessage, int]]] = defaultdict(list)
        dead: list[DeadLetter] = []
        newest_ms = -1
        for offset, raw, received_at in zip(batch.offsets, batch.values, batch.stored_at()):
            result = parse_message(raw)
            if isinstance(result, InvalidMessage):
                self._invalid.inc()
                dead.append(DeadLetter(raw, result.reason, result.detail, batch.topic, batch.partition, offset, received_at))
                continue
            moment_ms = event_ms(result)
            if self._lateness.is_too_late(moment_ms):
                self._too_late.inc()
                detail = result.timestamp.isoformat()
                dead.append(DeadLetter(raw, TOO_LATE, detail, batch.topic, batch.partition, offset, received_at))
                continue
            if self._lateness.is_late(moment_ms):
                self._late.inc()
            if result.needs_human:
                self._alerts.inc()
                alert = encode_alert(result, raised_at, batch.partition, offset)
                yield beam.pvalue.TaggedOutput(ALERTS, (result.drone_id.encode(), alert))
            newest_ms = max(newest_ms, moment_ms)
            by_window[window_start_ms(moment_ms, self._window_ms)].append((result, offset))
        if dead:
            self._to_write.inc(len(dead))
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead)
        if newest_ms >= 0:
            Metrics.distribution(METRICS_NAMESPACE, f"event_ms_p{batch.partition}").update(newest_ms)
        for window_ms, rows in by_window.items():
            self._valid.inc(len(rows))
            self._to_write.inc(len(rows))
            messages = [message for message, _ in rows]
            table = messages_to_table(messages, [batch.partition] * len(rows), [offset for _, offset in rows])
            keyed = ((batch.partition, window_ms), table)
            if self._event_timestamps:
                earliest = min(event_ms(message) for message in messages)
                yield beam.window.TimestampedValue(keyed, Timestamp(micros=earliest * 1000))
            else:
                yield keyed


class ValidateMessages(beam.PTransform):
    """Raw batches → ``valid`` windowable tables, ``alerts`` and ``dead_letters``."""

    def __init__(self, window_ms: int, lateness: Lateness = Lateness(), bounded: bool = False):
        super().__init__()
        self._window_ms = window_ms
        self._lateness = lateness
        self._bounded = bounded

    def expand(self, batches: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return batches | "Parse" >> beam.ParDo(ParseMessages(self._window_ms, self._lateness, not self._bounded)).with_outputs(
            ALERTS, DEAD_LETTERS, main="valid"
        )
