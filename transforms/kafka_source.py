"""A pure-Python Kafka source for Beam, on confluent-kafka, moving one batch per poll.

Why our own: Beam's ``ReadFromKafka`` is a Java cross-language transform whose jars are
not to be had on every machine, and Beam Python is fast only when elements are batches.
One splittable DoFn reads one restriction per partition (an offset range) with manual
partition assignment, in two modes from one code path:

* bounded (``--drain``): up to the end of each partition as planned at the start. The end
  is found by reading to fetch's partition EOF, because some brokers (Tansu) answer
  ListOffsets short by the last record batch.
* unbounded (``--streaming``): an endless range that checkpoints itself whenever it has
  read what the partition holds, with a watermark from event time (the record timestamps
  our producers set to the message's own time; see ``transforms.event_time``). Offsets
  are committed by ``transforms.landed_offsets`` once the lake holds what was read, not
  here.

Every batch says which offsets it covers and under which watermark it was read, so the
lateness of its messages and the landing of its records can be judged downstream.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.transforms.core import RestrictionProvider

from transforms.event_time import Frontier, PartitionWatermarkProvider, after_idle_poll, after_records, to_timestamp, with_log_ends
from transforms.kafka_settings import KafkaSettings
from transforms.landed_offsets import BatchSpan

MAX_RECORDS_PER_BATCH = 20_000
OFFSET_INVALID = -1001  # librdkafka's answer for an offset the broker could not give
UNBOUNDED_STOP = 2**63 - 1
NO_PROGRESS_TIMEOUT_S = 60.0
# Streaming: how long one read of a partition may go on before it hands its batches on (a
# bundle's outputs reach the next stages when it ends), how long the broker must have stored
# nothing new in a partition before it stops holding the watermark back, and how often the
# topic's newest event time and log ends are asked for meanwhile.
MAX_READ_S = 0.25
POLL_WAIT_S = 0.2
IDLE_PARTITION_S = 0.5
FRONTIER_REFRESH_S = 1.0


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
    """Records of one partition from one poll: parallel lists, cheap to pickle and to scan.

    ``start`` is where the batch's span begins (at or before its first record; -1: at its
    first record) and ``watermark_ms`` the partition's watermark it was read under (None:
    nothing is late).
    """

    topic: str
    partition: int
    offsets: list[int] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    timestamps_ms: list[int] = field(default_factory=list)
    start: int = -1
    watermark_ms: int | None = None

    def __len__(self) -> int:
        return len(self.offsets)

    def span(self) -> BatchSpan:
        start = self.offsets[0] if self.start < 0 else self.start
        return BatchSpan(self.topic, self.partition, start, self.offsets[-1] + 1, len(self.offsets))

    def newest_ms(self) -> int | None:
        stamped = [stamp for stamp in self.timestamps_ms if stamp > 0]
        return max(stamped) if stamped else None

    def oldest_ms(self) -> int | None:
        stamped = [stamp for stamp in self.timestamps_ms if stamp > 0]
        return min(stamped) if stamped else None

    def stored_at(self, index: int) -> datetime:
        """When the broker stored record ``index`` (its timestamp), or now for a record without one.

        Dead letters are filed under this day, so a batch read again after midnight is filed
        where its first reading filed it, not twice.
        """
        stamp = self.timestamps_ms[index] if index < len(self.timestamps_ms) else -1
        return datetime.fromtimestamp((stamp if stamp > 0 else time.time() * 1000) / 1000, tz=timezone.utc)


# A bounded read knows where it stops: librdkafka's default of 64 MB fetched ahead per partition
# is mostly records past the span, held in memory for nothing (measured: ~75 MB of a drain's peak).
# Its consumer moves from span to span, and its fetch still waiting at the old span's log end
# held the new span's first fetch back for the broker's whole long poll (fetch.wait.max.ms,
# 500 ms by default): measured, 0.5 s per move against 25 ms at 20 ms.
BOUNDED_CONSUMER = {"queued.max.messages.kbytes": 16_384, "fetch.wait.max.ms": 20}


def new_consumer(settings: KafkaSettings, group_id: str, **overrides: Any) -> Any:
    from confluent_kafka import Consumer

    return Consumer(settings.consumer_config(group_id, log_level=0, **overrides))


def plan_spans(settings: KafkaSettings, topic: str, group_id: str, timeout_s: float = 30.0, endless: bool = False) -> list[PartitionSpan]:
    """Each partition's span from the group's committed offset (earliest where none) to its end now.

    ``endless``: spans with no end (a stream's), so the end is not looked for.
    """
    consumer = new_consumer(settings, group_id)
    try:
        partitions = partitions_of(consumer, topic, timeout_s)
        starts = start_offsets(consumer, topic, partitions, timeout_s)
        if endless:
            return [PartitionSpan(topic, partition, starts[partition]) for partition in partitions]
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
    return asked_again_while(LEADER_MOVING, lambda timeout: consumer.get_watermark_offsets(position, timeout=timeout), timeout_s)


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


def topic_frontier(admin: Any, consumer: Any, topic: str, timeout_s: float) -> tuple[int | None, dict[int, int]]:
    """``(newest record timestamp in any partition of topic, each partition's log end)``; None while it holds no record.

    Kafka answers ListOffsets for the record of the largest timestamp (KIP-734) at once;
    a broker that does not (Tansu answers -1001) has each partition's last records read.
    The log ends are asked for afterwards, so each lies past every record the newest
    timestamp was chosen from.
    """
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    partitions = partitions_of(consumer, topic, timeout_s)
    wanted = {TopicPartition(topic, partition): OffsetSpec.max_timestamp() for partition in partitions}
    answers = [future.result() for future in admin.list_offsets(wanted, request_timeout=timeout_s).values()]
    if all(answer.offset != OFFSET_INVALID for answer in answers):
        stamps = [answer.timestamp for answer in answers if answer.offset >= 0 and answer.timestamp > 0]
        newest = max(stamps) if stamps else None
    else:
        newest = newest_by_reading(consumer, topic, partitions, timeout_s)
    ends = {partition: watermark_offsets(consumer, TopicPartition(topic, partition), timeout_s)[1] for partition in partitions}
    return newest, ends


def newest_by_reading(consumer: Any, topic: str, partitions: list[int], timeout_s: float) -> int | None:
    """The newest timestamp among the records from each partition's high watermark less one to its EOF."""
    from confluent_kafka import KafkaError, TopicPartition

    positions = []
    for partition in partitions:
        low, high = watermark_offsets(consumer, TopicPartition(topic, partition), timeout_s)
        if high > low:
            positions.append(TopicPartition(topic, partition, max(low, high - 1)))
    if not positions:
        return None
    newest = None
    waiting = {position.partition for position in positions}
    consumer.assign(positions)
    deadline = time.monotonic() + timeout_s
    try:
        while waiting and time.monotonic() < deadline:
            for record in consumer.consume(num_messages=10_000, timeout=0.1):
                error = record.error()
                if error is None and record.timestamp()[1] > 0:
                    newest = max(newest or 0, record.timestamp()[1])
                elif error is not None and error.code() == KafkaError._PARTITION_EOF:
                    waiting.discard(record.partition())
    finally:
        consumer.unassign()
    return newest


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


def chunk_end(position: int, stop: int, chunk_records: int = MAX_RECORDS_PER_BATCH) -> int:
    """Where the chunk holding ``position`` ends: chunks are fixed offset ranges of a partition, ``chunk_records`` long."""
    return min(stop, (position // chunk_records + 1) * chunk_records)


def _poll_batches(
    consumer: Any,
    span: PartitionSpan,
    stop_at_eof: bool,
    aligned: bool = False,
    max_seconds: float | None = None,
    chunk_records: int = MAX_RECORDS_PER_BATCH,
) -> Iterator[RawBatch]:
    """Batches of ``span`` from a consumer assigned at its start, until its stop, (if asked) partition EOF, or ``max_seconds``.

    ``aligned`` batches cover whole chunks (fixed ranges of ``chunk_records`` offsets, cut at the span's ends),
    so reading the same span again yields the same batches whatever the broker's timing:
    bounded drains name their files after them. Otherwise a batch is what one poll got.
    The unbounded mode stops at EOF or after ``max_seconds``: that is when it checkpoints
    and hands the partition back to the runner.
    """
    from confluent_kafka import KafkaError

    position = span.start
    started = last_progress = time.monotonic()
    # consume() waits for the full count or its timeout: a read with a time limit waits less.
    wait_s = POLL_WAIT_S if max_seconds is None else min(POLL_WAIT_S, max_seconds / 5)
    batch = RawBatch(span.topic, span.partition, start=position)
    while position < span.stop:
        boundary = chunk_end(position, span.stop, chunk_records) if aligned else span.stop
        # consume() waits for the full count or the timeout: ask for no more than is left.
        wanted = min(chunk_records, boundary - position)
        reached_eof = False
        for record in consumer.consume(num_messages=wanted, timeout=wait_s):
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
            # The time the runner spent on that batch (writing files, say) was not spent
            # waiting for the broker: only waiting counts towards "no progress".
            last_progress = time.monotonic()
            batch = RawBatch(span.topic, span.partition, start=position)
        if reached_eof and stop_at_eof:
            return
        if max_seconds is not None and time.monotonic() - started >= max_seconds:
            break
        if time.monotonic() - last_progress > NO_PROGRESS_TIMEOUT_S:
            raise KafkaReadError(
                f"no progress reading {span.topic}[{span.partition}] at offset {position} "
                f"for {NO_PROGRESS_TIMEOUT_S:.0f} s (expected up to {span.stop})"
            )
    if batch.offsets:
        yield batch


@contextlib.contextmanager
def assigned_at(consumer: Any, topic: str, partition: int, offset: int) -> Iterator[Any]:
    """``consumer`` assigned to one partition from ``offset`` for a while, then unassigned."""
    from confluent_kafka import TopicPartition

    consumer.assign([TopicPartition(topic, partition, offset)])
    try:
        yield consumer
    finally:
        consumer.unassign()


class PartitionCursors:
    """One consumer per partition, left assigned between the reads of an endless restriction.

    A streaming read hands its partition back to the runner every ``MAX_READ_S``;
    assigning again would drop what librdkafka fetched ahead and fetch it anew. A read
    that resumes where the last one stopped keeps its consumer as it is.
    """

    def __init__(self, settings: KafkaSettings, group_id: str):
        self._settings = settings
        self._group_id = group_id
        self._open: dict[tuple[str, int], tuple[Any, int]] = {}

    def at(self, topic: str, partition: int, offset: int) -> Any:
        """A consumer of the partition whose next record is at ``offset``."""
        from confluent_kafka import TopicPartition

        consumer, position = self._open.get((topic, partition), (None, None))
        if consumer is None:
            consumer = new_consumer(self._settings, self._group_id)
        if position != offset:
            consumer.assign([TopicPartition(topic, partition, offset)])
        self._open[(topic, partition)] = (consumer, offset)
        return consumer

    def moved_to(self, topic: str, partition: int, offset: int | None) -> None:
        """Where the partition's next read starts; None: unknown (a claim was refused), assign again."""
        consumer, _ = self._open[(topic, partition)]
        self._open[(topic, partition)] = (consumer, offset)

    def close(self) -> None:
        for consumer, _ in self._open.values():
            consumer.close()
        self._open.clear()


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
    """What both modes share: the consumers of a DoFn instance and claimed batches of a span.

    A bounded read assigns one consumer per read; an endless one keeps a consumer per
    partition assigned between its reads (:class:`PartitionCursors`).
    """

    def __init__(self, settings: KafkaSettings, group_id: str, chunk_records: int = MAX_RECORDS_PER_BATCH):
        self._settings = settings
        self._group_id = group_id
        self._chunk_records = chunk_records  # the offsets of a bounded read's batch
        self._consumer: Any = None
        self._cursors: PartitionCursors | None = None

    def setup(self) -> None:
        self._consumer = new_consumer(self._settings, self._group_id, **BOUNDED_CONSUMER)  # the bounded reads'
        self._cursors = PartitionCursors(self._settings, self._group_id)

    def teardown(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        if self._cursors is not None:
            self._cursors.close()

    def _claimed_batches(self, span: PartitionSpan, tracker: OffsetRestrictionTracker, bounded: bool) -> Iterator[RawBatch]:
        restriction = tracker.current_restriction()
        todo = PartitionSpan(span.topic, span.partition, restriction.start, restriction.stop)
        if bounded:
            with assigned_at(self._consumer, span.topic, span.partition, todo.start) as consumer:
                batches = _poll_batches(consumer, todo, stop_at_eof=False, aligned=True, chunk_records=self._chunk_records)
                yield from _claimed(batches, tracker)
            return
        consumer = self._cursors.at(span.topic, span.partition, todo.start)
        next_start: int | None = todo.start
        for batch in _poll_batches(consumer, todo, stop_at_eof=True, max_seconds=MAX_READ_S):
            if not tracker.try_claim(batch.offsets[-1]):
                next_start = None
                break
            next_start = batch.offsets[-1] + 1
            yield batch
        self._cursors.moved_to(span.topic, span.partition, next_start)


def _claimed(batches: Iterator[RawBatch], tracker: OffsetRestrictionTracker) -> Iterator[RawBatch]:
    """Each batch once its last offset is claimed; none after a refused claim."""
    for batch in batches:
        if not tracker.try_claim(batch.offsets[-1]):
            return
        yield batch


class ReadBoundedSpans(_SpanReader):
    """Splittable DoFn: a planned partition span in, one :class:`RawBatch` per poll out.

    Every batch is read under ``watermark_ms``, the watermark earlier drains reached, and
    covers a chunk of ``chunk_records`` offsets (less at the span's ends).
    """

    def __init__(self, settings: KafkaSettings, group_id: str, watermark_ms: int | None, chunk_records: int = MAX_RECORDS_PER_BATCH):
        super().__init__(settings, group_id, chunk_records)
        self._watermark_ms = watermark_ms

    def process(
        self,
        span: PartitionSpan,
        tracker: OffsetRestrictionTracker = beam.DoFn.RestrictionParam(_SpanRestrictions()),
    ) -> Iterator[RawBatch]:
        last_claimed = None
        for batch in self._claimed_batches(span, tracker, bounded=True):
            last_claimed = batch.offsets[-1]
            batch.watermark_ms = self._watermark_ms
            yield batch
        stop = tracker.current_restriction().stop
        if last_claimed is not None and last_claimed >= stop - 1:
            return
        # The span ended in offsets that hold no record (transaction markers or
        # compaction): claim the rest as read.
        if stop > tracker.current_restriction().start:
            tracker.try_claim(stop - 1)


class TopicFrontier:
    """A topic's :class:`Frontier` (its newest record timestamp, its log ends), asked again at most every ``refresh_s``."""

    def __init__(self, settings: KafkaSettings, group_id: str, refresh_s: float = FRONTIER_REFRESH_S):
        self._settings = settings
        self._group_id = group_id
        self._refresh_s = refresh_s
        self._known: dict[str, tuple[float, Frontier | None]] = {}
        self._consumer: Any = None
        self._admin: Any = None

    def of(self, topic: str) -> Frontier | None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        asked_at, frontier = self._known.get(topic, (float("-inf"), None))
        if time.monotonic() - asked_at >= self._refresh_s:
            if self._consumer is None:
                self._consumer = new_consumer(self._settings, self._group_id)
                self._admin = AdminClient(self._settings.admin_config())
            try:
                newest, ends = topic_frontier(self._admin, self._consumer, topic, timeout_s=5.0)
                frontier = with_log_ends(frontier, newest, ends, time.time())
            except (KafkaException, KafkaReadError):
                pass  # the broker is away: what was known stands, and the next refresh asks again
            self._known[topic] = (time.monotonic(), frontier)
        return frontier

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()


class ReadUnboundedSpans(_SpanReader):
    """Splittable DoFn over an endless offset range: reads what is there (for at most
    ``MAX_READ_S``), then checkpoints and is resumed at once.

    A resume delay would pace idle partitions, but Prism parks a delayed residual for one to
    two seconds whatever the delay asked, which would be the alerts' latency; the broker's
    fetch wait paces an idle read instead. Each batch is timestamped at its oldest record's event time and carries the watermark
    it was read under (the one this restriction reported before the batch was read). The
    watermark then follows the newest event time read, ``max_delay_ms`` behind it; a partition that has read all its log
    holds, where nothing was stored for ``idle_after_s``, moves up to the topic's frontier
    (``event_time.after_idle_poll``), so it holds no window open.
    """

    def __init__(self, settings: KafkaSettings, group_id: str, idle_after_s: float = IDLE_PARTITION_S, max_delay_ms: int = 0):
        super().__init__(settings, group_id)
        self._idle_after_s = idle_after_s
        self._max_delay_ms = max_delay_ms
        self._frontier: TopicFrontier | None = None

    def setup(self) -> None:
        super().setup()
        self._frontier = TopicFrontier(self._settings, self._group_id)

    def teardown(self) -> None:
        super().teardown()
        if self._frontier is not None:
            self._frontier.close()

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        span: PartitionSpan,
        tracker: OffsetRestrictionTracker = beam.DoFn.RestrictionParam(_SpanRestrictions()),
        watermark: Any = beam.DoFn.WatermarkEstimatorParam(PartitionWatermarkProvider()),
    ) -> Iterator[Any]:
        progress = watermark.get_estimator_state()
        read_under = progress.watermark_ms
        read_any = False
        for batch in self._claimed_batches(span, tracker, bounded=False):
            read_any = True
            batch.watermark_ms = read_under
            oldest, newest = batch.oldest_ms(), batch.newest_ms()
            if newest is not None:
                progress = after_records(progress, newest, self._max_delay_ms)
            yield beam.window.TimestampedValue(batch, to_timestamp(oldest if oldest is not None else newest or 0))
        if not read_any:
            position = tracker.current_restriction().start
            frontier = self._frontier.of(span.topic)
            progress = after_idle_poll(progress, frontier, position, span.partition, self._idle_after_s, self._max_delay_ms)
        watermark.set_progress(progress)
        tracker.defer_remainder()


class ReadKafkaBatches(beam.PTransform):
    """Read planned partition spans (bounded) or whole partitions from committed offsets (unbounded).

    ``watermark_ms``: what a bounded read's batches are judged late against (the watermark
    of earlier drains); an unbounded read keeps a watermark per partition itself,
    ``max_delay_ms`` behind the newest event time it read there. ``chunk_records``: the
    offsets a bounded batch covers (the pipeline's choice: records of a few hundred bytes or
    loader batches of 15 KB).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        group_id: str,
        spans: list[PartitionSpan],
        bounded: bool,
        watermark_ms: int | None = None,
        max_delay_ms: int = 0,
        chunk_records: int = MAX_RECORDS_PER_BATCH,
    ):
        super().__init__()
        self._settings = settings
        self._group_id = group_id
        self._spans = [span for span in spans if not (bounded and span.is_empty)]
        self._bounded = bounded
        self._watermark_ms = watermark_ms
        self._max_delay_ms = max_delay_ms
        self._chunk_records = chunk_records

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        reader = (
            ReadBoundedSpans(self._settings, self._group_id, self._watermark_ms, self._chunk_records)
            if self._bounded
            else ReadUnboundedSpans(self._settings, self._group_id, max_delay_ms=self._max_delay_ms)
        )
        return pbegin | "PartitionSpans" >> beam.Create(self._spans) | "ReadSpans" >> beam.ParDo(reader)
