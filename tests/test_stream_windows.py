"""The lake writer's windows: on-time, late and too-late data on TestStream, and a message sent again kept once."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from transforms import lake
from transforms.contract import DroneMessage, encode_message
from transforms.event_time import EventWindows
from transforms.kafka_source import RawBatch
from transforms.lake_writer import WindowCopies, WindowRows, WriteLakeWindows, without_earlier_copies
from transforms.landed_offsets import BatchSpan
from transforms.messages import DEAD_LETTERS, TOO_LATE, ParseMessages, messages_to_table
from transforms.metrics import WRITTEN, counters

WINDOW_S = 300
WINDOWS = EventWindows(WINDOW_S * 1000)
START = datetime(2026, 11, 28, 17, 0, tzinfo=timezone.utc)
LAKE_ROOT = "/srv/lake"  # where the rows say their photos are; no test here reads one


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


def span_of(partition: int, offsets: list[int]) -> BatchSpan:
    return BatchSpan("drone-messages", partition, min(offsets), max(offsets) + 1, len(offsets))


def stamped_rows(message_id: str, at: datetime, offset: int) -> TimestampedValue:
    """One message's window rows as ``ParseMessages`` emits them: keyed by partition, at its event time."""
    table = messages_to_table([message(message_id, at)], [0], [offset], LAKE_ROOT)
    return TimestampedValue((0, WindowRows(span_of(0, [offset]), table)), at.timestamp())


def rows(*placed: tuple[str, int, int]) -> pa.Table:
    """Lake rows in START's window for ``(message id, Kafka partition, offset)``."""
    ids, partitions, offsets = zip(*placed)
    return messages_to_table([message(message_id, START) for message_id in ids], partitions, offsets, LAKE_ROOT)


def batch(*placed: tuple[str, int, int]) -> TimestampedValue:
    """One drained batch's rows of START's window, keyed and stamped as the bounded lake writer takes them."""
    partition = placed[0][1]
    span = span_of(partition, [offset for _, _, offset in placed])
    return TimestampedValue((partition, WindowRows(span, rows(*placed))), START.timestamp())


def drain(lake_root: Path, stamped: TimestampedValue) -> int:
    """Write one batch as a bounded drain does; the rows it counted as written."""
    pipeline = TestPipeline()
    _ = pipeline | beam.Create([stamped]) | WriteLakeWindows(str(lake_root), WINDOWS, 0, bounded=True)
    result = pipeline.run()
    result.wait_until_finish()
    return counters(result).get(WRITTEN, 0)


def placed_ids(table: pa.Table) -> list[tuple[str, int, int]]:
    return list(zip(*(table.column(name).to_pylist() for name in ("message_id", "kafka_partition", "kafka_offset"))))


def streaming_pipeline() -> TestPipeline:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return TestPipeline(options=options)


def written_ids(lake_root: Path) -> dict[str, list[str]]:
    return {
        path.name: sorted(pq.read_table(path).column("message_id").to_pylist()) for path in sorted((lake_root / "drone").rglob("*.parquet"))
    }


def test_windows_fire_on_time_then_late_panes_and_drop_what_is_too_late(tmp_path: Path) -> None:
    lateness_s = 600
    events = (
        TestStream()
        .advance_watermark_to(START.timestamp())
        .add_elements([stamped_rows("a", START + timedelta(seconds=10), 1)])
        .add_elements([stamped_rows("b", START + timedelta(seconds=200), 2)])
        .add_elements([stamped_rows("c", START + timedelta(seconds=310), 3)])
        .advance_watermark_to((START + timedelta(seconds=WINDOW_S + 1)).timestamp())
        .add_elements([stamped_rows("late", START + timedelta(seconds=100), 4)])
        .advance_watermark_to((START + timedelta(seconds=WINDOW_S + lateness_s + 60)).timestamp())
        .add_elements([stamped_rows("too-late", START + timedelta(seconds=50), 5)])
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as pipeline:
        landed = pipeline | events | WriteLakeWindows(str(tmp_path), WINDOWS, lateness_s)
        assert_that(landed | beam.Map(lambda report: (report.span.start, report.count)), equal_to([(1, 1), (2, 1), (3, 1), (4, 1)]))

    files = written_ids(tmp_path)
    panes = {name.split("-")[1] + "/" + name.split("-")[3]: ids for name, ids in files.items()}
    assert panes == {"1700/pane0": ["a", "b"], "1700/pane1": ["late"], "1705/pane0": ["c"]}
    assert all(
        path.parent.name == "hour=17" and path.parent.parent.name == "dt=2026-11-28" for path in (tmp_path / "drone").rglob("*.parquet")
    )


def test_drain_lateness_counts_late_rows_and_dead_letters_too_late_ones() -> None:
    watermark = START + timedelta(hours=3)
    on_time = message("on-time", watermark + timedelta(minutes=1))
    late = message("late", watermark - timedelta(minutes=30))
    too_late = message("too-late", watermark - timedelta(minutes=90))
    values = [encode_message(m) for m in (on_time, late, too_late)]
    batch = RawBatch("drone-messages", 0, [0, 1, 2], values, [0, 0, 0], watermark_ms=int(watermark.timestamp() * 1000))

    with TestPipeline() as pipeline:
        routed = (
            pipeline
            | beam.Create([batch])
            | beam.ParDo(ParseMessages(WINDOWS, 60 * 60_000, LAKE_ROOT)).with_outputs(DEAD_LETTERS, "alerts", main="valid")
        )
        kept = routed.valid | beam.FlatMap(lambda keyed: keyed[1].table.column("message_id").to_pylist())
        assert_that(kept, equal_to(["on-time", "late"]), label="KeepsLate")
        reasons = routed[DEAD_LETTERS] | beam.FlatMap(lambda dead: [(letter.offset, letter.reason) for letter in dead.letters])
        assert_that(reasons, equal_to([(2, TOO_LATE)]), label="DeadLettersTooLate")


def test_dead_letters_are_dated_by_when_the_broker_stored_them_so_a_rereading_files_them_on_the_same_day() -> None:
    stored_ms = int(datetime(2026, 11, 28, 23, 59, 58, tzinfo=timezone.utc).timestamp() * 1000)
    batch = RawBatch("drone-messages", 3, [7, 8], [b"not json", b"{}"], [stored_ms, stored_ms + 1])
    readings = [list(ParseMessages(WINDOWS, 0, LAKE_ROOT).process(batch)) for _ in range(2)]
    days = [{f"{letter.received_at:%Y-%m-%d}" for output in reading for letter in output.value.letters} for reading in readings]
    assert days == [{"2026-11-28"}, {"2026-11-28"}]
    assert RawBatch("t", 0, [1], [b""], [-1]).stored_at(0) > datetime.now(timezone.utc) - timedelta(minutes=1)


def test_a_violations_row_records_its_photos_place_in_the_lake_an_absolute_one_for_a_folder() -> None:
    seen, patrol = message("seen", START, code=21), message("patrol", START)
    batch = RawBatch("drone-messages", 0, [0, 1], [encode_message(seen), encode_message(patrol)], [0, 0])
    (stamped,) = [output for output in ParseMessages(WINDOWS, 0, "lake").process(batch) if isinstance(output, TimestampedValue)]
    table = stamped.value[1].table
    uris = dict(zip(table.column("message_id").to_pylist(), table.column("image_uri").to_pylist()))
    assert uris == {"seen": f"{os.getcwd()}/lake/images/dt=2026-11-28/img-seen.jpg", "patrol": None}
    assert lake.image_path("gs://b/lake", START, "img-seen") == "gs://b/lake/images/dt=2026-11-28/img-seen.jpg"


def test_a_row_another_file_holds_at_a_smaller_place_gives_way() -> None:
    ours = rows(("a", 0, 10), ("b", 0, 11), ("c", 0, 12))
    others = [rows(("x", 0, 1), ("a", 0, 3)), rows(("c", 0, 7), ("c", 0, 2))]

    assert placed_ids(without_earlier_copies(ours, others)) == [("b", 0, 11)]


def test_a_row_that_is_the_earliest_copy_stays() -> None:
    ours = rows(("a", 1, 5), ("b", 1, 6), ("c", 1, 7))
    later_offset, later_partition, earlier_partition = rows(("a", 1, 9)), rows(("b", 2, 0)), rows(("c", 0, 900))

    kept = without_earlier_copies(ours, [later_offset, later_partition, earlier_partition])

    assert placed_ids(kept) == [("a", 1, 5), ("b", 1, 6)]
    assert without_earlier_copies(ours, []) is ours


def test_a_file_all_of_whose_rows_are_held_earlier_keeps_nothing() -> None:
    kept = without_earlier_copies(rows(("a", 0, 8), ("b", 0, 9)), [rows(("b", 0, 4)), rows(("a", 0, 1))])

    assert kept.num_rows == 0 and kept.schema == lake.DRONE_SCHEMA


def test_the_other_files_of_a_window_leave_out_our_own_file_and_other_windows(tmp_path: Path) -> None:
    root = str(tmp_path)
    folder = lake.drone_partition(root, START)
    next_window = START + timedelta(seconds=WINDOW_S)
    own = lake.window_file_name(START, 0, 0, "o0")
    lake.write_table(root, folder, own, rows(("ours", 0, 0)))
    lake.write_table(root, folder, lake.window_file_name(START, 0, 1, "o4"), rows(("other", 1, 4)))
    lake.write_table(root, folder, lake.window_file_name(next_window, 0, 0, "o9"), rows(("next window", 0, 9)))
    lake.write_table(root, lake.join(root, lake.TEMP_FOLDER), own, rows(("temporary", 0, 0)))
    (Path(folder) / f"{lake.window_file_prefix(START)}notes.txt").write_text("not a data file")

    others = WindowCopies(max_rows=100).others(root, START, own)

    assert [placed_ids(table) for table in others] == [[("other", 1, 4)]]


def test_a_rewritten_file_is_read_again(tmp_path: Path) -> None:
    root = str(tmp_path)
    folder = lake.drone_partition(root, START)
    other = lake.window_file_name(START, 0, 1, "o4")
    copies = WindowCopies(max_rows=100)
    lake.write_table(root, folder, other, rows(("a", 1, 4)))
    assert [placed_ids(table) for table in copies.others(root, START, "ours")] == [[("a", 1, 4)]]

    lake.write_table(root, folder, other, rows(("a", 1, 4), ("b", 1, 5)))

    assert [placed_ids(table) for table in copies.others(root, START, "ours")] == [[("a", 1, 4), ("b", 1, 5)]]


def test_a_message_sent_again_in_a_later_drain_is_in_the_lake_once_and_reruns_lose_nothing(tmp_path: Path) -> None:
    first = batch(("a", 0, 0), ("b", 0, 1))
    resent = batch(("c", 0, 5), ("a", 0, 6))
    only_copies = batch(("b", 0, 9), ("a", 0, 10))

    assert [drain(tmp_path, keyed) for keyed in (first, resent)] == [2, 2]
    once = written_ids(tmp_path)
    assert sorted(once.values()) == [["a", "b"], ["c"]]

    assert [drain(tmp_path, keyed) for keyed in (resent, first, only_copies)] == [2, 2, 2]
    assert written_ids(tmp_path) == once


def test_a_late_pane_keeps_only_what_the_on_time_pane_does_not_hold(tmp_path: Path) -> None:
    events = (
        TestStream()
        .advance_watermark_to(START.timestamp())
        .add_elements([stamped_rows("a", START + timedelta(seconds=10), 1), stamped_rows("b", START, 2)])
        .advance_watermark_to((START + timedelta(seconds=WINDOW_S + 1)).timestamp())
        .add_elements([stamped_rows("a", START + timedelta(seconds=10), 3), stamped_rows("c", START, 4)])
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as pipeline:
        _ = pipeline | events | WriteLakeWindows(str(tmp_path), WINDOWS, 600)

    assert sorted(written_ids(tmp_path).values()) == [["a", "b"], ["c"]]


def test_temporary_files_a_killed_writer_left_are_swept_and_fresh_ones_kept(tmp_path: Path) -> None:
    root = str(tmp_path)
    lake.write_table(root, lake.drone_partition(root, START), "kept.parquet", rows(("a", 1, 4)))
    temp = tmp_path / lake.TEMP_FOLDER
    (temp / "abandoned").write_bytes(b"half a file")
    (temp / "fresh").write_bytes(b"being written")
    long_ago = time.time() - lake.ABANDONED_TEMP_AGE_S - 60
    os.utime(temp / "abandoned", (long_ago, long_ago))
    assert lake.sweep_abandoned_temp_files(root) == 1
    assert [path.name for path in temp.iterdir()] == ["fresh"]
    assert lake.sweep_abandoned_temp_files(root) == 0
    assert lake.sweep_abandoned_temp_files(str(tmp_path / "no-lake-yet")) == 0


def test_dead_letters_read_again_in_other_batches_are_kept_once(tmp_path: Path) -> None:
    from transforms.dead_letters import DeadLetter, DeadLetterBatch, WriteDeadLetterFiles

    stored = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)

    def letters(*offsets: int) -> DeadLetterBatch:
        dead = [DeadLetter(b"x", "bad_json", "", "drone-messages", 0, offset, stored) for offset in offsets]
        return DeadLetterBatch(span_of(0, list(offsets)), dead)

    writer = WriteDeadLetterFiles(str(tmp_path))
    for batch in (letters(456), letters(456, 457, 458), letters(457, 458, 459), letters(456)):
        assert [report.count for report in writer.process(batch)] == [len(batch.letters)]

    held = pq.read_table(tmp_path / lake.DEAD_LETTER).column("kafka_offset").to_pylist()
    assert sorted(held) == [456, 457, 458, 459]


def test_wear_readings_and_a_fault_land_in_the_lakes_columns_and_older_files_read_them_as_nulls(tmp_path: Path) -> None:
    worn = DroneMessage("worn", "drone-2", START, 40.75, -73.99, motor_temp_c=58.0, vibration_g=0.9, flight_hours=31.5, kind="fault")
    batch = RawBatch("drone-messages", 0, [0, 1], [encode_message(worn), encode_message(message("plain", START))], [0, 0])
    (stamped,) = [output for output in ParseMessages(WINDOWS, 0, "lake").process(batch) if isinstance(output, TimestampedValue)]
    table = stamped.value[1].table
    assert table.select(["vibration_g", "flight_hours", "kind"]).to_pylist() == [
        {"vibration_g": 0.9, "flight_hours": 31.5, "kind": "fault"},
        {"vibration_g": None, "flight_hours": None, "kind": None},
    ]
    older = table.drop_columns(["vibration_g", "flight_hours", "kind"])
    pq.write_table(older, tmp_path / "old.parquet")
    read = lake.pin_types(lake.read_parquet(str(tmp_path / "old.parquet"), older.column_names), lake.DRONE_SCHEMA)
    assert read.schema == lake.DRONE_SCHEMA and read.column("kind").null_count == 2
