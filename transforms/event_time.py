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
import time
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


@dataclass(frozen=True)
class Frontier:
    """The newest event time stored in any partition of a topic, and each partition's log end read after it.

    Every record stored before ``newest_ms`` was read lies below its partition's log end here.
    """

    newest_ms: int | None
    log_ends: dict[int, int]


@dataclass(frozen=True)
class PartitionProgress:
    """What a partition's watermark is made of: the newest event time read, and since when it is idle.

    ``idle_since`` is a wall-clock reading (seconds) taken when the partition was first found
    with nothing new, or None while records keep coming.
    """

    newest_ms: int | None = None
    idle_since: float | None = None
    watermark_ms: int | None = None


def after_records(progress: PartitionProgress, newest_ms: int) -> PartitionProgress:
    """Records were read: the watermark follows the newest event time, never going back."""
    newest = max(newest_ms, progress.newest_ms or newest_ms)
    return PartitionProgress(newest, None, max(newest, progress.watermark_ms or newest))


def after_idle_poll(
    progress: PartitionProgress,
    frontier: Frontier | None,
    position: int,
    partition: int,
    idle_after_s: float,
    now: float | None = None,
) -> PartitionProgress:
    """Nothing new: after ``idle_after_s`` of that, the watermark moves up to the topic's frontier.

    An idle partition must not hold every window open, yet only event time may move a
    watermark (a backlog or a simulated clock are hours behind the wall clock). So an idle
    partition takes the newest event time stored in any partition of its topic, less
    :data:`IDLE_SLACK_MS` for records a producer still held. A read that came back empty is
    idle only if the partition holds nothing past ``position`` as the frontier saw it: a slow
    fetch is not an idle partition, and moving its watermark past records it has not read yet
    would make live data late.
    """
    now = time.time() if now is None else now
    idle_since = progress.idle_since if progress.idle_since is not None else now
    watermark = progress.watermark_ms
    caught_up = frontier is not None and frontier.newest_ms is not None and position >= frontier.log_ends.get(partition, 0)
    if now - idle_since >= idle_after_s and caught_up:
        moved_to = frontier.newest_ms - IDLE_SLACK_MS
        watermark = max(moved_to, watermark if watermark is not None else moved_to)
    return PartitionProgress(progress.newest_ms, idle_since, watermark)


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
