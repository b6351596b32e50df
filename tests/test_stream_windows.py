"""Event-time windows of the lake writer on TestStream: on-time panes, late panes, too-late data."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from transforms.contract import DroneMessage, encode_message
from transforms.kafka_source import RawBatch
from transforms.messages import DEAD_LETTERS, TOO_LATE, Lateness, ParseMessages, messages_to_table
from transforms.sinks import WriteLakeWindows

WINDOW_S = 300
START = datetime(2026, 11, 28, 17, 0, tzinfo=timezone.utc)


def message(message_id: str, at: datetime, code: int | None = None) -> DroneMessage:
    return DroneMessage(
        message_id=message_id,
        drone_id="drone-1",
        timestamp=at,
        latitude=40.75,
        longitude=-73.99,
        violation_code=code,
        image_id=f"img-{message_id}" if code else None,
    )


def stamped_table(message_id: str, at: datetime, offset: int) -> TimestampedValue:
    table = messages_to_table([message(message_id, at)], [0], [offset])
    window_ms = int(at.timestamp() * 1000) // (WINDOW_S * 1000) * WINDOW_S * 1000
    return TimestampedValue(((0, window_ms), table), at.timestamp())


def streaming_pipeline() -> TestPipeline:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return TestPipeline(options=options)


def written_ids(lake_root: Path) -> dict[str, list[str]]:
    return {
        path.name: sorted(pq.read_table(path).column("message_id").to_pylist())
        for path in sorted((lake_root / "drone").rglob("*.parquet"))
    }


def test_windows_fire_on_time_then_late_panes_and_drop_what_is_too_late(tmp_path: Path) -> None:
    lateness_s = 600
    events = (
        TestStream()
        .advance_watermark_to(START.timestamp())
        .add_elements([stamped_table("a", START + timedelta(seconds=10), 1)])
        .add_elements([stamped_table("b", START + timedelta(seconds=200), 2)])
        .add_elements([stamped_table("c", START + timedelta(seconds=310), 3)])
        .advance_watermark_to((START + timedelta(seconds=WINDOW_S + 1)).timestamp())
        .add_elements([stamped_table("late", START + timedelta(seconds=100), 4)])
        .advance_watermark_to((START + timedelta(seconds=WINDOW_S + lateness_s + 60)).timestamp())
        .add_elements([stamped_table("too-late", START + timedelta(seconds=50), 5)])
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as pipeline:
        written = (
            pipeline
            | events
            | WriteLakeWindows(str(tmp_path), WINDOW_S, lateness_s)
            | beam.MapTuple(lambda path, rows: (Path(path).name.split("-")[1], Path(path).name.split("-")[3], rows))
        )
        assert_that(written, equal_to([("1700", "pane0", 2), ("1700", "pane1", 1), ("1705", "pane0", 1)]))

    files = written_ids(tmp_path)
    assert sorted(files.values()) == [["a", "b"], ["c"], ["late"]]
    assert all(path.parent.name == "hour=17" and path.parent.parent.name == "dt=2026-11-28"
               for path in (tmp_path / "drone").rglob("*.parquet"))


def test_drain_lateness_counts_late_rows_and_dead_letters_too_late_ones() -> None:
    watermark = START + timedelta(hours=3)
    lateness = Lateness(int(watermark.timestamp() * 1000), allowed_ms=60 * 60_000)
    on_time = message("on-time", watermark + timedelta(minutes=1))
    late = message("late", watermark - timedelta(minutes=30))
    too_late = message("too-late", watermark - timedelta(minutes=90))
    batch = RawBatch("drone-messages", 0, [0, 1, 2], [encode_message(m) for m in (on_time, late, too_late)], [0, 0, 0])

    with TestPipeline() as pipeline:
        routed = (
            pipeline
            | beam.Create([batch])
            | beam.ParDo(ParseMessages(WINDOW_S * 1000, lateness, event_timestamps=False)).with_outputs(DEAD_LETTERS, "alerts", main="valid")
        )
        kept = routed.valid | beam.FlatMap(lambda keyed: keyed[1].column("message_id").to_pylist())
        assert_that(kept, equal_to(["on-time", "late"]), label="KeepsLate")
        reasons = routed[DEAD_LETTERS] | beam.FlatMap(lambda letters: [(letter.offset, letter.reason) for letter in letters])
        assert_that(reasons, equal_to([(2, TOO_LATE)]), label="DeadLettersTooLate")
