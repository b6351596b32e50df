"""The watermark of a Kafka partition: it follows event time, and an idle partition moves up to its topic's frontier."""

from __future__ import annotations

from transforms.event_time import (
    IDLE_SLACK_MS,
    Frontier,
    Lateness,
    PartitionProgress,
    after_idle_poll,
    after_records,
    lateness,
    with_log_ends,
)

NEWEST_MS = 1_000_000


def frontier_at(ends: dict[int, int], now: float, previous: Frontier | None = None) -> Frontier:
    return with_log_ends(previous, NEWEST_MS, ends, now)


def test_the_watermark_follows_the_newest_event_time_read_and_never_goes_back() -> None:
    progress = after_records(PartitionProgress(), 900_000)
    assert progress.watermark_ms == 900_000
    assert after_records(progress, 800_000).watermark_ms == 900_000


def test_the_watermark_stays_the_max_delay_behind_so_a_drone_stamping_a_moment_behind_another_is_on_time() -> None:
    progress = after_records(PartitionProgress(), 900_000, max_delay_ms=5_000)
    assert progress.watermark_ms == 895_000
    behind = 898_000  # another drone's clock, two seconds behind the first's, read after it
    assert lateness(window_end_ms=898_500, watermark_ms=progress.watermark_ms, allowed_ms=0) == Lateness.ON_TIME
    assert after_records(progress, behind, max_delay_ms=5_000).watermark_ms == 895_000
    assert after_records(progress, 910_000, max_delay_ms=5_000).watermark_ms == 905_000


def test_an_idle_partition_stays_the_max_delay_behind_the_frontier_when_that_is_more_than_the_slack() -> None:
    read = after_records(PartitionProgress(), 900_000, max_delay_ms=5_000)
    first = frontier_at({0: 500}, now=10.0)
    later = frontier_at({0: 500}, now=11.0, previous=first)
    assert after_idle_poll(read, later, 500, 0, idle_after_s=0.5, max_delay_ms=5_000).watermark_ms == NEWEST_MS - 5_000


def test_a_partition_read_to_its_log_end_where_nothing_was_stored_for_a_while_moves_up_to_the_frontier() -> None:
    read = after_records(PartitionProgress(), 900_000)
    first = frontier_at({0: 500}, now=10.0)
    assert after_idle_poll(read, first, 500, 0, idle_after_s=0.5).watermark_ms == 900_000, "one reading cannot tell"
    later = frontier_at({0: 500}, now=11.0, previous=first)  # the same log end a second later: nothing stored
    assert later.log_end_since[0] == 10.0
    assert after_idle_poll(read, later, 500, 0, idle_after_s=0.5).watermark_ms == NEWEST_MS - IDLE_SLACK_MS


def test_a_partition_holding_records_past_its_reader_is_a_slow_fetch_not_an_idle_one() -> None:
    # Records up to offset 800 that this reader has not fetched yet may be older than the frontier.
    progress = after_records(PartitionProgress(), 900_000)
    frontier = frontier_at({1: 800}, now=0.0)
    for now in (10.0, 11.0, 60.0):
        frontier = frontier_at({1: 800}, now=now, previous=frontier)
        progress = after_idle_poll(progress, frontier, 650, 1, idle_after_s=0.5)
    assert progress.watermark_ms == 900_000


def test_a_partition_still_receiving_records_is_not_idle_even_when_its_reader_caught_up() -> None:
    # A producer's records for this partition a second behind those for another: an empty read here, at the
    # log end, must not move the watermark past what that producer is about to store.
    progress = after_records(PartitionProgress(), 900_000)
    frontier = None
    for second, end in enumerate(range(500, 600, 10)):
        frontier = frontier_at({0: end}, now=float(second), previous=frontier)
        progress = after_idle_poll(progress, frontier, end, 0, idle_after_s=0.5)
    assert progress.watermark_ms == 900_000


def test_without_a_frontier_the_watermark_stays_where_it_is() -> None:
    progress = after_records(PartitionProgress(), 900_000)
    assert after_idle_poll(progress, None, 500, 0, idle_after_s=0.5).watermark_ms == 900_000
    assert after_idle_poll(progress, Frontier(None, {0: 500}, {0: 0.0}, 99.0), 500, 0, idle_after_s=0.5).watermark_ms == 900_000
