"""Commit a partition's offset only once every record below it is in the lake.

A runner that keeps no durable state (Prism, or any runner after a crash) holds open
windows in memory: committing what was *read* would lose the records of an open window
when the job dies. So each writer reports what it landed — per poll batch, how many of
its records reached a file — and a partition's committed offset is the end of the
longest run of batches, from where the job started reading, whose records have all
landed. A killed job starts again from there; what it reads twice it writes under names
the lake recognises, so nothing is lost and nothing doubled.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Tuple, Union

import apache_beam as beam
from apache_beam.coders import coders
from apache_beam.transforms import userstate
from apache_beam.transforms.window import GlobalWindows

from transforms.kafka_settings import KafkaSettings
from transforms.metrics import counter


@dataclass(frozen=True)
class BatchSpan:
    """The offsets one poll batch covers: ``start`` (inclusive) to ``stop`` (exclusive), holding ``records``.

    ``start`` may lie before the first record (offsets that hold no record, such as
    transaction markers), so consecutive batches of a partition meet without a gap.
    """

    topic: str
    partition: int
    start: int
    stop: int
    records: int


@dataclass(frozen=True)
class Landed:
    """``count`` records of the batch ``span`` are in the lake (rows, dead letters, or earlier copies)."""

    span: BatchSpan
    count: int


# What the committer is keyed by, and what it receives: a landed report, or where reading began.
Keyed = Tuple[Tuple[str, int], Union[Landed, int]]


@dataclass
class LandedSpans:
    """One partition's batches read but not yet wholly landed, and the offset safe to commit."""

    committed: int | None = None
    starts: list[int] = field(default_factory=list)
    spans: dict[int, BatchSpan] = field(default_factory=dict)
    landed: dict[int, int] = field(default_factory=dict)

    def begin_at(self, offset: int) -> None:
        """Where this job started reading the partition: nothing below it needs landing."""
        if self.committed is None or offset > self.committed:
            self.committed = offset

    def add(self, report: Landed) -> None:
        span = report.span
        if self.committed is not None and span.stop <= self.committed:
            return
        if span.start not in self.spans:
            bisect.insort(self.starts, span.start)
            self.spans[span.start] = span
        self.landed[span.start] = self.landed.get(span.start, 0) + report.count

    def advance(self) -> bool:
        """Move ``committed`` over every wholly landed batch that begins where it stands; True if it moved."""
        moved = False
        while self.committed is not None and self.starts:
            first = self.starts[0]
            if first > self.committed:
                break
            span = self.spans[first]
            if self.landed.get(first, 0) < span.records:
                break
            self.starts.pop(0)
            del self.spans[first]
            del self.landed[first]
            if span.stop > self.committed:
                self.committed = span.stop
                moved = True
        return moved


class CommitWhenLanded(beam.DoFn):
    """Keyed by (topic, partition): keeps :class:`LandedSpans` in state and commits it as it moves."""

    SPANS = userstate.ReadModifyWriteStateSpec("landed_spans", coders.PickleCoder())

    def __init__(self, settings: KafkaSettings, group_id: str):
        self._settings = settings
        self._group_id = group_id
        self._consumer: Any = None
        self._failed_commits = counter("commits_postponed")

    def setup(self) -> None:
        from confluent_kafka import Consumer

        self._consumer = Consumer(self._settings.consumer_config(self._group_id, log_level=0))

    def teardown(self) -> None:
        if self._consumer is not None:
            self._consumer.close()

    def process(
        self, keyed: tuple[tuple[str, int], Landed | int], spans_state: Any = beam.DoFn.StateParam(SPANS)
    ) -> Iterator[tuple[str, int, int]]:
        (topic, partition), report = keyed
        spans = spans_state.read() or LandedSpans()
        if isinstance(report, Landed):
            spans.add(report)
        else:
            spans.begin_at(report)
        if spans.advance():
            self._commit(topic, partition, spans.committed)
            yield topic, partition, spans.committed
        spans_state.write(spans)

    def _commit(self, topic: str, partition: int, offset: int) -> None:
        """Commit now; while the broker is away, the next move commits past this one (a restart reads a little again)."""
        from confluent_kafka import KafkaException, TopicPartition

        try:
            self._consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
        except KafkaException as error:
            self._failed_commits.inc()
            logging.warning("commit of %s[%d] at %d postponed: %s", topic, partition, offset, error.args[0].str())


class CommitLandedOffsets(beam.PTransform):
    """What the writers landed (and where each partition began) → committed offsets of the group.

    Takes the writers' :class:`Landed` reports as a tuple of PCollections, each in its own
    windowing (event-time windows for the lake, global for dead letters): each is put in
    the global window before they meet, as a Flatten needs one windowing. Emits
    ``(topic, partition, committed offset)`` each time a partition's commit moves.
    """

    def __init__(self, settings: KafkaSettings, group_id: str, starts: Iterable[tuple[str, int, int]]):
        super().__init__()
        self._settings = settings
        self._group_id = group_id
        self._starts = list(starts)

    def expand(self, landed: tuple[beam.PCollection, ...]) -> beam.PCollection:
        pipeline = landed[0].pipeline
        begun = pipeline | "WhereReadingBegan" >> beam.Create(
            [((topic, partition), offset) for topic, partition, offset in self._starts]
        ).with_output_types(Keyed)
        reports = [
            reported
            | f"OneWindowForAll{index}" >> beam.WindowInto(GlobalWindows())
            | f"ByPartition{index}" >> beam.Map(by_partition).with_output_types(Keyed)
            for index, reported in enumerate(landed)
        ]
        return (
            (begun, *reports)
            | "Together" >> beam.Flatten()
            | "Commit" >> beam.ParDo(CommitWhenLanded(self._settings, self._group_id))
        )


def by_partition(report: Landed) -> Keyed:
    return (report.span.topic, report.span.partition), report
