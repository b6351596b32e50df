"""A pure-Python Kafka source for Beam, on confluent-kafka, moving one batch per poll.

Why our own: Beam's ``ReadFromKafka`` is a Java cross-language transform whose jars are
not to be had on every machine, and Beam Python is fast only when elements are batches.
One splittable DoFn reads one restriction per partition (an offset range) with manual
partition assignment, in two modes from one code path:

* bounded (``--drain``): up to the end of each partition as planned at the start. The end
  is found by reading to fetch's partition EOF, because some brokers (Tansu) answer
  ListOffsets short by the last record batch.
* unbounded (``--streaming``): an endless range that checkpoints itself when a partition is
  idle, a watermark driven by record time, and offsets committed in bundle finalization.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms.kafka_settings import KafkaSettings

MAX_RECORDS_PER_BATCH = 20_000
UNBOUNDED_STOP = 2**63 - 1
NO_PROGRESS_TIMEOUT_S = 60.0


class KafkaReadError(RuntimeError):
    """Reading stalled or the broker refused; the message is meant for the user as is."""


@dataclass(frozen=True)
class PartitionSpan:
    """What to read of one partition: offsets ``start`` (inclusive) to ``stop`` (exclusive)."""

    topic: str
    partition: int
    start: int
    stop: int = UNBOUNDED_STOP

    @property
    def is_empty(self) -> bool:
        return self.stop <= self.start


@dataclass
class RawBatch:
    """Records of one partition from one poll: parallel lists, cheap to pickle and to scan."""

    topic: str
    partition: int
    offsets: list[int] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    timestamps_ms: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)

    def stored_at(self) -> list[datetime]:
        """When the broker stored each record (its timestamp), or now for a record without one.

        Dead letters are filed under this day, so a batch read again after midnight is filed
        where its first reading filed it, not twice.
        """
        now_ms = int(time.time() * 1000)
        stamps = self.timestamps_ms + [now_ms] * (len(self.offsets) - len(self.timestamps_ms))
        return [datetime.fromtimestamp((stamp if stamp > 0 else now_ms) / 1000, tz=timezone.utc) for stamp in stamps]


def new_consumer(settings: KafkaSettings, group_id: str) -> Any:
    from confluent_kafka import Consumer

    return Consumer(settings.consumer_config(group_id, log_level=0))


def plan_spans(settings: KafkaSettings, topic: str, group_id: str, timeout_s: float = 30.0) -> list[PartitionSpan]:
    """Each partition's span from the group's committed offset (earliest where none) to its end now."""
    consumer = new_consumer(settings, group_id)
    try:
        partitions = partitions_of(consumer, topic, timeout_s)
        starts = start_offsets(consumer, topic, partitions, timeout_s)
        ends = log_end_offsets(consumer, topic, partitions, timeout_s)
        return [PartitionSpan(topic, partition, starts[partition], ends[partition]) for partition in partitions]
    finally:
        consumer.close()


def partitions_of(consumer: Any, topic: str, timeout_s: float) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise KafkaReadError(f"topic {topic!r} does not exist on the broker")
    return sorted(metadata.partitions)


def start_offsets(consumer: Any, topic: str, partitions: list[int], timeout_s: float) -> dict[int, int]:
    """The group's committed offsets, or the earliest available offset where none is committed."""
    from confluent_kafka import TopicPartition

    committed = committed_offsets(consumer, [TopicPartition(topic, p) for p in partitions], timeout_s)
    starts = {}
    for position in committed:
        low, _ = watermark_offsets(consumer, position, timeout_s)
        starts[position.partition] = max(position.offset, low) if position.offset >= 0 else low
    return starts


COORDINATOR_MOVING = frozenset({14, 15, 16})  # COORDINATOR_LOAD_IN_PROGRESS, _NOT_AVAILABLE, NOT_COORDINATOR
LEADER_MOVING = frozenset({3, 5, 6, -190})  # UNKNOWN_TOPIC_OR_PART, LEADER_NOT_AVAILABLE, NOT_LEADER, _UNKNOWN_PARTITION
MOVING_RETRY_S = 0.2


def asked_again_while(moving: frozenset[int], ask: Callable[[float], Any], timeout_s: float) -> Any:
    """``ask(timeout)``, asked again while the broker answers with one of the ``moving`` error codes.

    librdkafka passes these answers on at once instead of retrying them, though they only
    mean "not yet": a broker just (re)started has not loaded its group coordinator or told
    who leads a partition.
    """
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ask(max(deadline - time.monotonic(), 1.0))
        except KafkaException as error:
            if error.args[0].code() not in moving or time.monotonic() > deadline:
                raise
            time.sleep(MOVING_RETRY_S)


def committed_offsets(consumer: Any, positions: list[Any], timeout_s: float) -> list[Any]:
    """The group's committed positions, asked again while the group's coordinator moves or loads."""
    return asked_again_while(COORDINATOR_MOVING, lambda timeout: consumer.committed(positions, timeout=timeout), timeout_s)


def watermark_offsets(consumer: Any, position: Any, timeout_s: float) -> tuple[int, int]:
    """A partition's low and high watermarks, asked again while its leader is not known yet (a restarted broker)."""
    return asked_again_while(
        LEADER_MOVING, lambda timeout: consumer.get_watermark_offsets(position, timeout=timeout), timeout_s
    )


def log_end_offsets(consumer: Any, topic: str, partitions: list[int], timeout_s: float) -> dict[int, int]:
    """Each partition's offset after its last record, confirmed by reading to fetch's EOF.

    ListOffsets may be short by the last record batch (Tansu), so every partition is
    assigned at that answer and read forward until the broker says there is nothing more.
    """
    from confluent_kafka import KafkaError, TopicPartition

    ends = {}
    for partition in partitions:
        low, high = watermark_offsets(consumer, TopicPartition(topic, partition), timeout_s)
        ends[partition] = max(low, high)
    consumer.assign([TopicPartition(topic, partition, ends[partition]) for partition in partitions])
    waiting = set(partitions)
    deadline = time.monotonic() + timeout_s
    try:
        while waiting:
            if time.monotonic() > deadline:
                raise KafkaReadError(f"{topic}: no end-of-partition answer for partitions {sorted(waiting)}")
            for record in consumer.consume(num_messages=10_000, timeout=0.1):
                error, partition = record.error(), record.partition()
                if error is None:
                    ends[partition] = max(ends[partition], record.offset() + 1)
                elif error.code() == KafkaError._PARTITION_EOF:
                    ends[partition] = max(ends[partition], record.offset())
                    waiting.discard(partition)
    finally:
        consumer.unassign()
    return ends


def commit_offsets(settings: KafkaSettings, group_id: str, ends: Iterable[PartitionSpan]) -> None:
    """Commit each span's stop as the group's next offset to read."""
    from confluent_kafka import TopicPartition

    positions = [TopicPartition(span.topic, span.partition, span.stop) for span in ends if span.stop < UNBOUNDED_STOP]
    if not positions:
        return
    consumer = new_consumer(settings, group_id)
    try:
        consumer.commit(offsets=positions, asynchronous=False)
    finally:
        consumer.close()


def chunk_end(position: int, stop: int) -> int:
    """Where the chunk holding ``position`` ends: chunks are fixed offset ranges of a partition."""
    return min(stop, (position // MAX_RECORDS_PER_BATCH + 1) * MAX_RECORDS_PER_BATCH)


def _poll_batches(consumer: Any, span: PartitionSpan, stop_at_eof: bool, aligned: bool = False) -> Iterator[RawBatch]:
    """Batches of ``span`` from an assigned consumer, until its stop or (if asked) partition EOF.

    ``aligned`` batches cover whole chunks (fixed offset ranges, cut at the span's ends),
    so reading the same span again yields the same batches whatever the broker's timing:
    bounded drains name their files after them. Otherwise a batch is what one poll got.
    The unbounded mode stops at EOF: that is when it checkpoints and hands the
    partition back to the runner for a while.
    """
    from confluent_kafka import KafkaError, TopicPartition

    consumer.assign([TopicPartition(span.topic, span.partition, span.start)])
    position = span.start
    last_progress = time.monotonic()
    batch = RawBatch(span.topic, span.partition)
    try:
        while position < span.stop:
            boundary = chunk_end(position, span.stop) if aligned else span.stop
            # consume() waits for the full count or the timeout: ask for no more than is left.
            wanted = min(MAX_RECORDS_PER_BATCH, boundary - position)
            reached_eof = False
            for record in consumer.consume(num_messages=wanted, timeout=0.2):
                error = record.error()
                if error is None:
                    if record.offset() >= span.stop:
                        break
                    batch.offsets.append(record.offset())
                    batch.values.append(record.value() or b"")
                    batch.timestamps_ms.append(record.timestamp()[1])
                    position = record.offset() + 1
                    last_progress = time.monotonic()
                elif error.code() == KafkaError._PARTITION_EOF:
                    reached_eof = True
                    position = max(position, record.offset())
                elif error.fatal() or not error.retriable():
                    raise KafkaReadError(f"reading {span.topic}[{span.partition}]: {error.str()}")
            if batch.offsets and (not aligned or position >= boundary):
                yield batch
                batch = RawBatch(span.topic, span.partition)
            if reached_eof and stop_at_eof:
                return
            if time.monotonic() - last_progress > NO_PROGRESS_TIMEOUT_S:
                raise KafkaReadError(
                    f"no progress reading {span.topic}[{span.partition}] at offset {position} "
                    f"for {NO_PROGRESS_TIMEOUT_S:.0f} s (expected up to {span.stop})"
                )
        if batch.offsets:
            yield batch
    finally:
        consumer.unassign()


class WholeBatchTracker(OffsetRestrictionTracker):
    """An offset tracker that splits only where no records are in flight.

    A poll batch is claimed at once by claiming its last offset. An unbounded read may be
    checkpointed: that splits after the last claim, so a batch is wholly ours or wholly
    the residual's. A bounded read is never split: a split at a fraction could strand the
    records of a batch being claimed, and on Beam's batch runners a residual processed
    after the watermark passed would have its windows dropped as late (seen here as rows
    missing from one window after a rerun). Parallelism comes from the initial split.
    """

    def try_split(self, fraction_of_remainder: float) -> tuple[OffsetRange, OffsetRange] | None:
        unbounded = self.current_restriction().stop >= UNBOUNDED_STOP
        return super().try_split(0) if unbounded and fraction_of_remainder == 0 else None


class _SpanRestrictions(RestrictionProvider):
    """One offset range per partition span; bounded spans may be split for parallel reading."""

    def initial_restriction(self, span: PartitionSpan) -> OffsetRange:
        return OffsetRange(span.start, span.stop)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return WholeBatchTracker(restriction)

    def restriction_size(self, span: PartitionSpan, restriction: OffsetRange) -> int:
        return restriction.size() if restriction.stop < UNBOUNDED_STOP else 1 << 20

    def split(self, span: PartitionSpan, restriction: OffsetRange) -> Iterator[OffsetRange]:
        if restriction.stop >= UNBOUNDED_STOP:
            yield restriction
        else:
            yield from restriction.split(desired_num_offsets_per_split=200_000, min_num_offsets_per_split=50_000)


class _SpanReader(beam.DoFn):
    """What both modes share: a consumer per DoFn instance and claimed batches of a span."""

    def __init__(self, settings: KafkaSettings, group_id: str):
        self._settings = settings
        self._group_id = group_id
        self._consumer: Any = None

    def setup(self) -> None:
        self._consumer = new_consumer(self._settings, self._group_id)

    def teardown(self) -> None:
        if self._consumer is not None:
            self._consumer.close()

    def _claimed_batches(
        self, span: PartitionSpan, tracker: OffsetRestrictionTracker, bounded: bool
    ) -> Iterator[RawBatch]:
        restriction = tracker.current_restriction()
        todo = PartitionSpan(span.topic, span.partition, restriction.start, restriction.stop)
        for batch in _poll_batches(self._consumer, todo, stop_at_eof=not bounded, aligned=bounded):
            if not tracker.try_claim(batch.offsets[-1]):
                return
            yield batch


class ReadBoundedSpans(_SpanReader):
    """Splittable DoFn: a planned partition span in, one :class:`RawBatch` per poll out."""

    def process(
        self,
        span: PartitionSpan,
        tracker: OffsetRestrictionTracker = beam.DoFn.RestrictionParam(_SpanRestrictions()),
    ) -> Iterator[RawBatch]:
        last_claimed = None
        for batch in self._claimed_batches(span, tracker, bounded=True):
            last_claimed = batch.offsets[-1]
            yield batch
        stop = tracker.current_restriction().stop
        if last_claimed is not None and last_claimed >= stop - 1:
            return
        # The span ended in offsets that hold no record (transaction markers or
        # compaction): claim the rest as read.
        if stop > tracker.current_restriction().start:
            tracker.try_claim(stop - 1)


class ReadUnboundedSpans(_SpanReader):
    """Splittable DoFn over an endless offset range: checkpoints when idle, commits when finalized.

    The watermark follows the Kafka record time (our producers set it to the event time)
    and moves on to "now minus the idle delay" when a partition has nothing new, so that
    windows close on idle partitions too.
    """

    def __init__(self, settings: KafkaSettings, group_id: str, idle_resume_s: float = 0.5):
        super().__init__(settings, group_id)
        self._idle_resume_s = idle_resume_s

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        span: PartitionSpan,
        tracker: OffsetRestrictionTracker = beam.DoFn.RestrictionParam(_SpanRestrictions()),
        watermark: ManualWatermarkEstimator = beam.DoFn.WatermarkEstimatorParam(
            ManualWatermarkEstimator.default_provider()
        ),
        bundle_finalizer: Any = beam.DoFn.BundleFinalizerParam,
    ) -> Iterator[Any]:
        for batch in self._claimed_batches(span, tracker, bounded=False):
            earliest = Timestamp(micros=min(batch.timestamps_ms) * 1000)
            yield beam.window.TimestampedValue(batch, earliest)
            end = PartitionSpan(batch.topic, batch.partition, batch.offsets[0], batch.offsets[-1] + 1)
            bundle_finalizer.register(lambda end=end: commit_offsets(self._settings, self._group_id, [end]))
        watermark.set_watermark(Timestamp.now() - Duration(seconds=self._idle_resume_s))
        tracker.defer_remainder(Duration(seconds=self._idle_resume_s))


class ReadKafkaBatches(beam.PTransform):
    """Read planned partition spans (bounded) or whole partitions from committed offsets (unbounded)."""

    def __init__(self, settings: KafkaSettings, group_id: str, spans: list[PartitionSpan], bounded: bool):
        super().__init__()
        self._settings = settings
        self._group_id = group_id
        self._spans = [span for span in spans if not (bounded and span.is_empty)]
        self._bounded = bounded

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        reader = (
            ReadBoundedSpans(self._settings, self._group_id)
            if self._bounded
            else ReadUnboundedSpans(self._settings, self._group_id)
        )
        return pbegin | "PartitionSpans" >> beam.Create(self._spans) | "ReadSpans" >> beam.ParDo(reader)
