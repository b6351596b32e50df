"""The watermark of a Kafka partition: it follows event time, and an idle partition moves up to its topic's frontier."""

from __future__ import annotations

from transforms.event_time import IDLE_SLACK_MS, Frontier, PartitionProgress, after_idle_poll, after_records

FRONTIER = Frontier(newest_ms=1_000_000, log_ends={0: 500, 1: 800})


def test_the_watermark_follows_the_newest_event_time_read_and_never_goes_back() -> None:
    progress = after_records(PartitionProgress(), 900_000)
    assert progress.watermark_ms == 900_000
    assert after_records(progress, 800_000).watermark_ms == 900_000


def test_a_partition_that_read_all_its_log_holds_and_stayed_idle_moves_up_to_the_frontier() -> None:
    first = after_idle_poll(after_records(PartitionProgress(), 900_000), FRONTIER, 500, 0, idle_after_s=0.5, now=10.0)
    assert first.watermark_ms == 900_000, "not idle long enough yet"
    later = after_idle_poll(first, FRONTIER, 500, 0, idle_after_s=0.5, now=10.5)
    assert later.watermark_ms == FRONTIER.newest_ms - IDLE_SLACK_MS


def test_an_empty_read_of_a_partition_holding_records_past_it_is_a_slow_fetch_not_an_idle_partition() -> None:
    # Partition 1 holds records up to offset 800 that this reader has not fetched yet: they may
    # be older than the frontier, so moving the watermark there would make live data late.
    progress = after_records(PartitionProgress(), 900_000)
    for now in (10.0, 11.0, 60.0):
        progress = after_idle_poll(progress, FRONTIER, 650, 1, idle_after_s=0.5, now=now)
    assert progress.watermark_ms == 900_000


def test_without_a_frontier_the_watermark_stays_where_it_is() -> None:
    progress = after_records(PartitionProgress(), 900_000)
    for now in (10.0, 60.0):
        progress = after_idle_poll(progress, None, 500, 0, idle_after_s=0.5, now=now)
    assert progress.watermark_ms == 900_000
    assert after_idle_poll(progress, Frontier(None, {}), 500, 0, idle_after_s=0.5, now=99.0).watermark_ms == 900_000
