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
import copy
import logging
import threading
import uuid
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
    """One partition's landing so far, and the offset safe to commit.

    Kept small whatever lies ahead of ``committed``: batches with some records still to
    land (``partly``, by start), and the wholly landed offsets beyond ``committed`` as
    merged ranges (``wholly``). A batch stuck behind a window still open is one entry; the
    thousands landed after it are a range or two, not one entry each, so the state a
    runner stores with every report stays small.
    """

    committed: int | None = None
    partly: dict[int, tuple[BatchSpan, int]] = field(default_factory=dict)
    wholly: list[list[int]] = field(default_factory=list)  # sorted, disjoint, not touching: [start, stop) each

    def begin_at(self, offset: int) -> None:
        """Where this job started reading the partition: nothing below it needs landing."""
        if self.committed is None or offset > self.committed:
            self.committed = offset

    def add(self, report: Landed) -> None:
        span = report.span
        if self.committed is not None and span.stop <= self.committed:
            return
        _, landed = self.partly.get(span.start, (span, 0))
        landed += report.count
        if landed < span.records:
            self.partly[span.start] = (span, landed)
            return
        self.partly.pop(span.start, None)
        self._mark_landed(span.start, span.stop)

    def advance(self) -> bool:
        """Move ``committed`` over the wholly landed offsets that begin where it stands; True if it moved."""
        moved = False
        while self.committed is not None and self.wholly and self.wholly[0][0] <= self.committed:
            stop = self.wholly.pop(0)[1]
            if stop > self.committed:
                self.committed = stop
                moved = True
        if moved:  # a report repeated after its batch had landed leaves a partial entry behind: forget it
            self.partly = {start: entry for start, entry in self.partly.items() if entry[0].stop > self.committed}
        return moved

    def _mark_landed(self, start: int, stop: int) -> None:
        """Add ``[start, stop)`` to the wholly landed ranges, merged with those it touches."""
        at = bisect.bisect_left(self.wholly, [start, start])
        if at > 0 and self.wholly[at - 1][1] >= start:
            at -= 1
        end = at
        while end < len(self.wholly) and self.wholly[end][0] <= stop:
            start, stop = min(start, self.wholly[end][0]), max(stop, self.wholly[end][1])
            end += 1
        self.wholly[at:end] = [[start, stop]]


class Ledgers:
    """This process's :class:`LandedSpans` of each (group, topic, partition), behind one lock.

    Prism 2.77 was seen to run two bundles of the committer on one partition at once, each
    with its own copy of the runner's state, and the last to finish overwrote the other's
    reports: the commit then waited for batches that had landed long before, for good
    (found by ``bench/soak.py``). Every report of a partition reaches one worker process
    (the committer is keyed), so the process keeps the one ledger of it; the runner's state
    is only where a ledger comes back from when a worker restarts (Flink, from a
    checkpoint). Ledgers are per job (``job``: made when the pipeline is built), so a
    second job in the same process starts its own.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._spans: dict[tuple[str, str, int], LandedSpans] = {}

    def get(self, job: str, topic: str, partition: int) -> LandedSpans | None:
        return self._spans.get((job, topic, partition))

    def put(self, job: str, topic: str, partition: int, spans: LandedSpans) -> None:
        self._spans[(job, topic, partition)] = spans


LEDGERS = Ledgers()


class CommitWhenLanded(beam.DoFn):
    """Keyed by (topic, partition): keeps :class:`LandedSpans` in this process's :data:`LEDGERS` and commits as it moves.

    A copy goes to the runner's state after each report, for a worker that restarts.
    """

    SPANS = userstate.ReadModifyWriteStateSpec("landed_spans", coders.PickleCoder())

    def __init__(self, settings: KafkaSettings, group_id: str):
        self._settings = settings
        self._group_id = group_id
        self._job = uuid.uuid4().hex  # one ledger per job built, shared by this DoFn's copies in a process
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
        with LEDGERS.lock:  # commits in order too: a later commit never overtaken by an earlier one
            spans = LEDGERS.get(self._job, topic, partition) or spans_state.read() or LandedSpans()
            if isinstance(report, Landed):
                spans.add(report)
            else:
                spans.begin_at(report)
            moved = spans.advance()
            if moved:
                self._commit(topic, partition, spans.committed)
            LEDGERS.put(self._job, topic, partition, spans)
            saved = copy.deepcopy(spans)
        spans_state.write(saved)
        if moved:
            yield topic, partition, saved.committed

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
        return (begun, *reports) | "Together" >> beam.Flatten() | "Commit" >> beam.ParDo(CommitWhenLanded(self._settings, self._group_id))


def by_partition(report: Landed) -> Keyed:
    return (report.span.topic, report.span.partition), report
