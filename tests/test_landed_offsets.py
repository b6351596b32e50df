"""Which offset a partition may commit: the end of what has wholly landed, from where reading began."""

from __future__ import annotations

import pickle
import random

from tests.support.kafka_io import produce_all
from transforms.kafka_settings import KafkaSettings, ensure_topics
from transforms.kafka_source import new_consumer, start_offsets
from transforms.landed_offsets import BatchSpan, CommitWhenLanded, Landed, LandedSpans


def span(start: int, stop: int) -> BatchSpan:
    return BatchSpan("t", 0, start, stop, stop - start)


def test_a_batch_commits_once_all_its_parts_landed_and_only_after_the_batches_before_it() -> None:
    spans = LandedSpans()
    spans.begin_at(0)
    spans.add(Landed(span(10, 20), 10))
    assert not spans.advance() and spans.committed == 0, "the batch at 0 has not landed"
    spans.add(Landed(span(0, 10), 4))  # the part of one window
    assert not spans.advance()
    spans.add(Landed(span(0, 10), 6))  # the part of the next
    assert spans.advance() and spans.committed == 20


def test_a_batch_stuck_behind_an_open_window_keeps_the_state_small_however_much_lands_after_it() -> None:
    spans = LandedSpans()
    spans.begin_at(0)
    spans.add(Landed(span(0, 100), 60))  # 40 of its records wait in a window not yet fired
    for start in range(100, 1_000_000, 100):
        spans.add(Landed(span(start, start + 100), 100))
        spans.advance()
    assert spans.committed == 0
    assert len(spans.partly) == 1 and spans.wholly == [[100, 1_000_000]]
    assert len(pickle.dumps(spans)) < 1_000
    spans.add(Landed(span(0, 100), 40))
    assert spans.advance() and spans.committed == 1_000_000
    assert spans.partly == {} and spans.wholly == []


def test_reports_in_any_order_commit_everything_exactly_when_the_last_gap_closes() -> None:
    batches = [span(start, start + 7) for start in range(0, 700, 7)]
    reports = [Landed(batch, part) for batch in batches for part in (3, 4)]
    random.Random(7).shuffle(reports)
    spans = LandedSpans()
    spans.begin_at(0)
    for index, report in enumerate(reports):
        spans.add(report)
        spans.advance()
        landed = {report.span.start for report in reports[: index + 1]}
        whole = [batch for batch in batches if sum(r.count for r in reports[: index + 1] if r.span == batch) == 7]
        expected = 0
        for batch in batches:
            if batch not in whole:
                break
            expected = batch.stop
        assert spans.committed == expected, (index, sorted(landed)[:5])
    assert spans.committed == 700 and spans.partly == {} and spans.wholly == []


def test_what_lies_below_where_reading_began_needs_no_landing_and_a_repeated_report_leaves_nothing_behind() -> None:
    spans = LandedSpans()
    spans.begin_at(50)
    spans.add(Landed(span(40, 60), 20))
    assert spans.advance() and spans.committed == 60
    spans.add(Landed(span(60, 70), 10))
    spans.add(Landed(span(70, 80), 10))
    spans.add(Landed(span(60, 70), 3))  # a bundle retried: its report again
    assert spans.advance() and spans.committed == 80
    assert spans.partly == {}


class StaleRunnerState:
    """The runner's state as Prism 2.77 was seen to give it to a second bundle of one key: an old copy, always."""

    def __init__(self, old: LandedSpans):
        self._old = pickle.dumps(old)
        self.written: list[LandedSpans] = []

    def read(self) -> LandedSpans:
        return pickle.loads(self._old)

    def write(self, spans: LandedSpans) -> None:
        self.written.append(spans)


def test_reports_read_with_a_stale_copy_of_the_runners_state_are_not_lost(broker: KafkaSettings, topic_name: str) -> None:
    ensure_topics(broker, [topic_name], partitions={topic_name: 1})
    produce_all(broker, topic_name, [(b"k", b"v")] * 30)
    group = f"{topic_name}-group"
    began = LandedSpans()
    began.begin_at(0)
    state = StaleRunnerState(began)
    committer = CommitWhenLanded(broker, group)
    committer.setup()
    try:

        def report(start: int, stop: int) -> list:
            landed = Landed(BatchSpan(topic_name, 0, start, stop, stop - start), stop - start)
            return list(committer.process(((topic_name, 0), landed), state))

        assert report(10, 20) == []
        assert report(20, 30) == []
        assert report(0, 10) == [(topic_name, 0, 30)]
    finally:
        committer.teardown()
    assert state.written[-1].committed == 30, "the copy kept for a restarted worker is the whole ledger"
    consumer = new_consumer(broker, group)
    try:
        assert start_offsets(consumer, topic_name, [0], 10) == {0: 30}
    finally:
        consumer.close()
