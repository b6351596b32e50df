"""Event time, the one owner: windows, lateness and the watermark of a Kafka partition.

Every drone message carries its event time (the contract's ``timestamp``;
``DroneMessage.event_ms``) and our producers stamp the Kafka record with it, so a reader
knows how far in event time a partition has come without parsing a message. Drains and the streaming job window alike
(Beam's ``FixedWindows``) and judge lateness alike: a message is *late* when its window
ended at or before the watermark it was read under, and *too late* when even the allowed
lateness after that end has passed — exactly what a Beam ``GroupByKey`` would drop. Too
late messages go to the dead letter with that reason instead of vanishing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from apache_beam.coders import coders
from apache_beam.io.iobase import WatermarkEstimator
from apache_beam.transforms.core import WatermarkEstimatorProvider
from apache_beam.transforms.window import FixedWindows
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp


def to_timestamp(moment_ms: int) -> Timestamp:
    return Timestamp(micros=moment_ms * 1000)


@dataclass(frozen=True)
class EventWindows:
    """The lake's event-time windows: Beam's ``FixedWindows`` of ``size_ms``."""

    size_ms: int

    def window_fn(self) -> FixedWindows:
        return FixedWindows(self.size_ms / 1000)

    def start_ms(self, moment_ms: int) -> int:
        """Where the window holding ``moment_ms`` starts (what ``FixedWindows`` assigns, offset 0)."""
        return moment_ms - moment_ms % self.size_ms

    def end_ms(self, moment_ms: int) -> int:
        return self.start_ms(moment_ms) + self.size_ms


class Lateness(enum.Enum):
    ON_TIME = "on_time"
    LATE = "late"
    TOO_LATE = "too_late"


def lateness(window_end_ms: int, watermark_ms: int | None, allowed_ms: int) -> Lateness:
    """How late a message of the window ending ``window_end_ms`` is, read under ``watermark_ms``.

    The rule of Beam's ``GroupByKey``: a window is expired once the watermark passed its end
    plus the allowed lateness. The partition's own watermark is at least the one a group
    downstream sees, so whatever that group would drop is found here first.
    """
    if watermark_ms is None or window_end_ms > watermark_ms:
        return Lateness.ON_TIME
    if window_end_ms + allowed_ms > watermark_ms:
        return Lateness.LATE
    return Lateness.TOO_LATE


# How far behind the topic's newest event time an idle partition's watermark stays: records
# a producer stamped before that newest one but had not sent yet (its batching, its partitions).
IDLE_SLACK_MS = 1_000
# How far behind the newest event time read from a partition its watermark stays, unless told
# otherwise: a message at most this much older than one already read is on time. Many drones
# share a partition, each stamping by its own clock, and a watermark at the newest time read
# turned every message a drone stamped a moment behind another's into late data. Beam's
# KafkaIO calls it the maximum delay of its CustomTimestampPolicyWithLimitedDelay.
DEFAULT_MAX_DELAY_MS = 5_000


@dataclass(frozen=True)
class Frontier:
    """The newest event time stored in any partition of a topic, and each partition's log end read after it.

    Every record stored before ``newest_ms`` was read lies below its partition's log end
    here. ``read_at`` is when (wall-clock seconds) this reading was taken, and
    ``log_end_since`` when each log end was first read where it still stands.
    """

    newest_ms: int | None
    log_ends: dict[int, int]
    log_end_since: dict[int, float]
    read_at: float = 0.0

    def quiet(self, partition: int, position: int, quiet_s: float) -> bool:
        """Whether a reader at ``position`` has read all the partition holds, and two readings ``quiet_s`` apart found nothing stored."""
        end = self.log_ends.get(partition)
        return end is not None and position >= end and self.read_at - self.log_end_since.get(partition, self.read_at) >= quiet_s


def with_log_ends(previous: Frontier | None, newest_ms: int | None, log_ends: dict[int, int], now: float) -> Frontier:
    """A fresh reading of the frontier, taken at ``now``; a log end where ``previous`` saw it keeps its time."""
    since = {
        partition: previous.log_end_since[partition] if previous is not None and previous.log_ends.get(partition) == end else now
        for partition, end in log_ends.items()
    }
    return Frontier(newest_ms, log_ends, since, now)


@dataclass(frozen=True)
class PartitionProgress:
    """What a partition's watermark is made of: the newest event time read, and the watermark itself."""

    newest_ms: int | None = None
    watermark_ms: int | None = None


def after_records(progress: PartitionProgress, newest_ms: int, max_delay_ms: int = 0) -> PartitionProgress:
    """Records were read: the watermark follows the newest event time, ``max_delay_ms`` behind it, never going back."""
    newest = newest_ms if progress.newest_ms is None else max(newest_ms, progress.newest_ms)
    following = newest - max_delay_ms
    return PartitionProgress(newest, following if progress.watermark_ms is None else max(following, progress.watermark_ms))


def after_idle_poll(
    progress: PartitionProgress,
    frontier: Frontier | None,
    position: int,
    partition: int,
    idle_after_s: float,
    max_delay_ms: int = 0,
) -> PartitionProgress:
    """Nothing new read: if the partition is idle, the watermark moves up to the topic's frontier.

    An idle partition must not hold every window open, yet only event time may move a
    watermark (a backlog or a simulated clock are hours behind the wall clock). So an idle
    partition takes the newest event time stored in any partition of its topic, less
    :data:`IDLE_SLACK_MS` (or ``max_delay_ms``, if more: what the busy partitions hold back).
    Idle means the reader at ``position`` has read all the partition holds and the broker
    stored nothing there for ``idle_after_s`` (:meth:`Frontier.quiet`):
    an empty read alone is not idle — a slow fetch, or a producer whose records for this
    partition are a second behind its records for another, would have their records arrive
    behind a watermark that had moved past them.
    """
    watermark = progress.watermark_ms
    if frontier is not None and frontier.newest_ms is not None and frontier.quiet(partition, position, idle_after_s):
        moved_to = frontier.newest_ms - max(IDLE_SLACK_MS, max_delay_ms)
        watermark = max(moved_to, watermark if watermark is not None else moved_to)
    return PartitionProgress(progress.newest_ms, watermark)


class PartitionWatermarkEstimator(WatermarkEstimator):
    """A watermark the reading DoFn moves itself, from :class:`PartitionProgress`; kept across checkpoints."""

    def __init__(self, progress: PartitionProgress | None):
        self.progress = progress or PartitionProgress()

    def observe_timestamp(self, timestamp: Timestamp) -> None:
        """Output timestamps do not move it: the reader knows more (the partition's newest record)."""

    def current_watermark(self) -> Timestamp:
        watermark = self.progress.watermark_ms
        return MIN_TIMESTAMP if watermark is None else to_timestamp(watermark)

    def get_estimator_state(self) -> PartitionProgress:
        return self.progress

    def set_progress(self, progress: PartitionProgress) -> None:
        self.progress = progress


class PartitionWatermarkProvider(WatermarkEstimatorProvider):
    def initial_estimator_state(self, element: object, restriction: object) -> PartitionProgress:
        return PartitionProgress()

    def create_watermark_estimator(self, estimator_state: PartitionProgress | None) -> PartitionWatermarkEstimator:
        return PartitionWatermarkEstimator(estimator_state)

    def estimator_state_coder(self) -> coders.Coder:
        return coders.PickleCoder()
