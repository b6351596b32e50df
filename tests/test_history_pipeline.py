"""The history pipeline: loader batches on a real topic → history lake, each summons number once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date
from datetime import time as time_of_day
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from csv_ingest.records import type_rows
from pipelines import history
from tests.support import csv_files
from tests.support.history import FINGERPRINT, columns_of, history_args, lake_history, loader_batch, loader_batches, record
from tests.support.kafka_io import produce_all, read_all
from transforms import drain_state, lake
from transforms.compaction import latest_per_key
from transforms.history import WriteHistoryBatches, _millis_of_day, _one_table, history_table, plain_loader_batches
from transforms.history_contract import decode_history_columns, encode_history_batch
from transforms.history_spool import spool_files
from transforms.kafka_settings import KafkaSettings, ensure_topics
from transforms.kafka_source import RawBatch

REPO_ROOT = Path(__file__).resolve().parents[1]


LOADED_AT_MS = 1_700_000_000_000


def test_history_table_is_typed_and_priced() -> None:
    rows = history_table(columns_of([record(7, 123), record(8, 124, borough="Queens")]), FINGERPRINT, LOADED_AT_MS).to_pylist()
    assert rows[0]["issue_date"] == date(2017, 3, 14) and rows[0]["violation_time"] == time_of_day(8, 35)
    assert [row["fine_amount"] for row in rows] == [65.0, 45.0]
    assert rows[0]["source_line"] == 7 and rows[0]["vehicle_year"] == 2015 and rows[0]["plate_id"] == "P123"
    assert rows[0]["loaded_at"].timestamp() * 1000 == LOADED_AT_MS and rows[0]["source_file"] == FINGERPRINT


def test_an_integer_beyond_its_lake_column_is_stored_as_null_and_the_row_kept() -> None:
    """The loader keeps any integer; the lake's int16 code column cannot hold 99999."""
    table = history_table(
        columns_of([{**record(7, 123), "violation_code": 99999, "violation_precinct": -40_000}]), FINGERPRINT, LOADED_AT_MS
    )
    row = table.to_pylist()[0]
    assert row["violation_code"] is None and row["violation_precinct"] is None and row["vehicle_year"] == 2015
    assert row["fine_amount"] is None and table.schema == lake.HISTORY_SCHEMA


def test_empty_text_is_stored_as_null() -> None:
    row = history_table(columns_of([{**record(7, 123), "plate_id": ""}]), FINGERPRINT, LOADED_AT_MS).to_pylist()[0]
    assert row["plate_id"] is None and row["registration_state"] == "NY"


@pytest.mark.parametrize(
    ("text", "millis"),
    [("00:15", 900_000), ("12:40", 45_600_000), ("23:59", 86_340_000), ("24:00", None), ("", None), (None, None), ("7:5", None)],
)
def test_violation_times_become_milliseconds_of_day(text: str | None, millis: int | None) -> None:
    [stored] = _millis_of_day(pa.array([text], pa.string())).cast(pa.int32()).to_pylist()
    assert stored == millis


def test_the_latest_load_of_a_summons_is_the_one_kept() -> None:
    first = history_table(columns_of([record(2, 1), record(3, 2)]), FINGERPRINT, LOADED_AT_MS)
    corrected = history_table(columns_of([{**record(9, 2), "plate_id": "FIXED"}]), "g" * 64, LOADED_AT_MS + 1)
    kept = latest_per_key(pa.concat_tables([corrected, first]), lake.HISTORY).to_pylist()
    assert [(row["summons_number"], row["plate_id"]) for row in kept] == [(1, "P1"), (2, "FIXED")]


def test_drains_keep_each_summons_once_across_resent_batches(broker: KafkaSettings, topic_name: str, tmp_path: Path) -> None:
    batches = [
        loader_batch(2 + 50 * i, [record(2 + 50 * i + j, 1000 + 50 * i + j, day=f"2017-03-{10 + (j % 3)}") for j in range(50)])
        for i in range(20)
    ]
    produce_all(broker, topic_name, batches[:12])
    lake_root = tmp_path / "lake"
    assert history.main(history_args(broker, topic_name, lake_root)) == 0
    # The loader crashed after the broker acknowledged batches 10 and 11 but before its
    # checkpoint said so: it sends them again, then the rest.
    produce_all(broker, topic_name, [*batches[10:12], *batches[12:], (b"junk", b"not a batch")])
    assert history.main(history_args(broker, topic_name, lake_root)) == 0

    table = lake_history(lake_root)
    summons = table.column("summons_number").to_pylist()
    assert sorted(summons) == list(range(1000, 2000))
    assert table.schema.field("violation_time").type == "time32[ms]" and table.schema.field("dt").type == "date32[day]"
    assert set(table.column("violation_time").to_pylist()) == {time_of_day(8, 35)}
    assert all(fine and fine > 0 for fine in table.column("fine_amount").to_pylist())
    dead = read_all(broker, f"{topic_name}-dead")
    assert [record.value for record in dead] == [b"not a batch"] and dead[0].headers["reason"] == b"bad_json"


def drain_command(settings: KafkaSettings, topic: str, lake_root: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.history", *history_args(settings, topic, lake_root), *flags]


def test_a_drain_reads_in_slices_each_committed_before_the_next(broker: KafkaSettings, topic_name: str, tmp_path: Path) -> None:
    ensure_topics(broker, [topic_name], partitions={topic_name: 4})
    produce_all(broker, topic_name, loader_batches(120))
    lake_root = tmp_path / "lake"
    process = subprocess.Popen(
        drain_command(broker, topic_name, lake_root, "--slice_records=30"), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    # Killed once its first slice is committed: the rest is read by the next drain, slice by slice.
    wait_for_committed_offsets(broker, topic_name, f"{topic_name}-group", process, at_least=30)
    process.kill()
    process.wait()
    committed_before_kill = wait_for_committed_offsets(broker, topic_name, f"{topic_name}-group", None, at_least=30)
    assert 30 <= committed_before_kill < 120

    summary = orjson.loads(
        subprocess.run(
            drain_command(broker, topic_name, lake_root, "--slice_records=30"), cwd=REPO_ROOT, check=True, capture_output=True
        ).stdout.splitlines()[-1]
    )
    assert summary["slices"] == -(-(120 - committed_before_kill) // 30) and summary["read"] == 120 - committed_before_kill
    table = lake_history(lake_root)
    assert sorted(table.column("summons_number").to_pylist()) == list(range(10_000, 10_000 + 6000))


def wait_for_committed_offsets(settings: KafkaSettings, topic: str, group: str, process: subprocess.Popen | None, at_least: int) -> int:
    """The group's committed total once it reaches ``at_least``, read as soon as it does (while ``process`` runs)."""
    from transforms.kafka_source import new_consumer, partitions_of, start_offsets

    consumer = new_consumer(settings, group)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (process is None or process.poll() is None):
            partitions = partitions_of(consumer, topic, 10)
            total = sum(start_offsets(consumer, topic, partitions, 10).values())
            if total >= at_least:
                return total
        raise AssertionError(f"the drain committed fewer than {at_least} within 120 s")
    finally:
        consumer.close()


def peak_memory_mb(command: list[str]) -> float:
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_maxrss / 1024


def test_a_drain_s_memory_does_not_grow_with_its_backlog(broker: KafkaSettings, topic_name: str, tmp_path: Path) -> None:
    """The same slice over a backlog four times as large: about the same peak memory (without slices: 4 × the data)."""
    small, large = f"{topic_name}-small", f"{topic_name}-large"
    ensure_topics(broker, [small, large], partitions={small: 4, large: 4})
    produce_all(broker, small, loader_batches(500))
    produce_all(broker, large, loader_batches(2000))
    small_mb = peak_memory_mb(drain_command(broker, small, tmp_path / "small", "--slice_records=500"))
    large_mb = peak_memory_mb(drain_command(broker, large, tmp_path / "large", "--slice_records=500"))
    # 1,500 more batches are about 1.5 million values held as Python objects when decoded at once: 100+ MB.
    assert large_mb < small_mb + 60, (small_mb, large_mb)


def test_a_corrected_reload_leaves_one_row_per_summons_with_the_corrected_values(
    broker: KafkaSettings, topic_name: str, tmp_path: Path
) -> None:
    ensure_topics(broker, [topic_name], partitions={topic_name: 4})
    lake_root = tmp_path / "lake"
    produce_all(broker, topic_name, loader_batches(40))
    assert history.main(history_args(broker, topic_name, lake_root)) == 0
    # The city republishes: the second half corrected, and 10 batches of new tickets.
    produce_all(broker, topic_name, [*loader_batches(20, first_summons=11_000, plate="FIXED"), *loader_batches(10, first_summons=12_000)])
    assert history.main(history_args(broker, topic_name, lake_root)) == 0

    rows = {row["summons_number"]: row["plate_id"] for row in lake_history(lake_root).to_pylist()}
    assert len(rows) == lake_history(lake_root).num_rows == 2500
    assert all(rows[number] == f"P{number}" for number in range(10_000, 11_000))
    assert all(rows[number] == f"FIXED{number}" for number in range(11_000, 12_000))
    assert all(rows[number] == f"P{number}" for number in range(12_000, 12_500))


def test_unmerged_days_are_the_union_of_what_slices_wrote_and_not_known_stays_every_day() -> None:
    assert drain_state.with_unmerged([], ["2017-04-02", "2017-04-01"]) == ["2017-04-01", "2017-04-02"]
    assert drain_state.with_unmerged(["2017-04-02"], ["2017-04-02", "2017-03-01"]) == ["2017-03-01", "2017-04-02"]
    assert drain_state.with_unmerged(None, ["2017-04-01"]) is None


def test_a_drain_state_saved_before_unmerged_days_were_kept_means_every_day(tmp_path: Path) -> None:
    root = str(tmp_path)
    drain_state.save_state(root, "history", "g", drain_state.DrainState(unmerged=["2017-04-01"]))
    assert drain_state.load_state(root, "history", "g").unmerged == ["2017-04-01"]
    path = Path(drain_state.state_path(root, "history", "g"))
    path.write_bytes(orjson.dumps({"pending": [], "watermark_ms": None}))
    assert drain_state.load_state(root, "history", "g").unmerged is None


def history_files_by_day(lake_root: Path) -> dict[str, list[str]]:
    return {
        folder.name[3:]: sorted(file.name for file in folder.glob("*.parquet"))
        for folder in sorted((lake_root / lake.HISTORY).glob("dt=*"))
    }


def unmerged_day(lake_root: Path, day: str) -> list[str]:
    """A day of the lake holding two files no merge has covered (as a drain of another group, killed, leaves them)."""
    folder = lake.date_partition(str(lake_root), lake.HISTORY, day)
    for number, summons in enumerate((1, 2)):
        lake.write_table(
            str(lake_root),
            folder,
            f"part-{number}.parquet",
            history_table(columns_of([record(2, summons, day=day)]), FINGERPRINT, LOADED_AT_MS),
        )
    return history_files_by_day(lake_root)[day]


def test_a_drain_spools_a_file_per_reader_and_slice_and_deletes_the_spool_once_its_days_are_merged(
    broker: KafkaSettings, topic_name: str, tmp_path: Path
) -> None:
    ensure_topics(broker, [topic_name], partitions={topic_name: 4})
    produce_all(broker, topic_name, loader_batches(120, days=30))
    lake_root = tmp_path / "lake"
    summary = drain_summary(broker, topic_name, lake_root, "--slice_records=30")
    # 4 slices over 4 partitions: at most a file per partition and slice, where a file per day was 30 per reader.
    assert summary["slices"] == 4 and 4 <= summary["merge"]["spool_files"] <= 16, summary
    assert summary["merge"]["days"] == 30
    assert spool_files(str(lake_root), f"{topic_name}-group") == []
    files = history_files_by_day(lake_root)
    assert len(files) == 30 and all(len(names) == 1 for names in files.values()), files
    assert sorted(lake_history(lake_root).column("summons_number").to_pylist()) == list(range(10_000, 16_000))


def test_a_drain_merges_the_days_it_wrote_and_no_others(broker: KafkaSettings, topic_name: str, tmp_path: Path) -> None:
    lake_root = tmp_path / "lake"
    untouched = unmerged_day(lake_root, "2016-12-31")
    produce_all(broker, topic_name, loader_batches(12, days=3))
    assert history.main(history_args(broker, topic_name, lake_root)) == 0

    files = history_files_by_day(lake_root)
    assert files.pop("2016-12-31") == untouched
    assert sorted(files) == ["2017-04-01", "2017-04-02", "2017-04-03"]
    assert all(lake.is_compacted_set(names) for names in files.values()), files


def test_days_a_killed_drain_wrote_are_merged_by_the_next_even_with_nothing_new_to_read(
    broker: KafkaSettings, topic_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake_root = tmp_path / "lake"
    produce_all(broker, topic_name, loader_batches(12, days=3))

    def killed(*_: object, **__: object) -> None:
        raise RuntimeError("killed before its merge")

    with monkeypatch.context() as patched:  # every slice written and committed, then the drain dies
        patched.setattr(history, "merge_spool", killed)
        with pytest.raises(RuntimeError, match="killed"):
            history.main(history_args(broker, topic_name, lake_root))
    assert history_files_by_day(lake_root) == {}, "the slices' rows wait in the spool until a merge"
    assert spool_files(str(lake_root), f"{topic_name}-group")

    summary = drain_summary(broker, topic_name, lake_root)
    assert summary["read"] == 0 and summary["merge"]["partitions"]["compacted"] == 3
    files = history_files_by_day(lake_root)
    assert sorted(files) == ["2017-04-01", "2017-04-02", "2017-04-03"]
    assert all(lake.is_compacted_set(names) for names in files.values()), files
    assert sorted(lake_history(lake_root).column("summons_number").to_pylist()) == list(range(10_000, 10_600))
    # Merged once: the drain after that has nothing to merge.
    assert "merge" not in drain_summary(broker, topic_name, lake_root)


def drain_summary(broker: KafkaSettings, topic_name: str, lake_root: Path, *flags: str) -> dict:
    """An in-process drain's JSON line."""
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert history.main([*history_args(broker, topic_name, lake_root), *flags]) == 0
    return orjson.loads(printed.getvalue().splitlines()[-1])


def test_readers_of_one_partition_s_sub_ranges_write_files_of_their_own() -> None:
    """#15 item 7: a drain splits a partition's span into sub-ranges read in parallel; no two may write one file."""
    from apache_beam.io.restriction_trackers import OffsetRange

    from transforms.history import history_file_name
    from transforms.kafka_source import PartitionSpan, _SpanRestrictions
    from transforms.landed_offsets import BatchSpan

    span = PartitionSpan("nypd-history", 0, 0, 600_000)
    ranges = list(_SpanRestrictions().split(span, OffsetRange(span.start, span.stop)))
    assert len(ranges) > 1
    names = [history_file_name([BatchSpan(span.topic, span.partition, part.start, part.stop, part.stop - part.start)]) for part in ranges]
    assert len(set(names)) == len(ranges)
    both = [BatchSpan(span.topic, span.partition, part.start, part.stop, 1) for part in ranges[:2]]
    assert history_file_name(both) == history_file_name(both[::-1]) not in names


def full_layout_batches(count: int) -> list[bytes]:
    """``count`` loader messages of 50 FY2017-layout rows, every column typed by the loader's own rules."""
    messages = []
    for index in range(count):
        lines = list(range(2 + 50 * index, 52 + 50 * index))
        rows = [csv_files.fields(summons=7_000_000_000 + line, violation_county=("NY", "K", "Q")[line % 3]) for line in lines]
        typed, rejects = type_rows(lines, rows, csv_files.LAYOUT_FY2017, csv_files.WINDOW_FY2017)
        assert rejects == []
        messages.append(encode_history_batch(FINGERPRINT, typed.columns)[1])
    return messages


def raw_batch(values: list[bytes]) -> RawBatch:
    return RawBatch("nypd-history", 0, list(range(len(values))), values, [LOADED_AT_MS + offset for offset in range(len(values))])


def test_arrow_reads_the_loader_s_batches_into_the_rows_read_message_by_message() -> None:
    """The drain's fast path (Arrow's JSON reader over a chunk at once) takes what the loader sends, and makes the same rows."""
    batch = raw_batch([*full_layout_batches(3), *(value for _, value in loader_batches(2))])
    fast = plain_loader_batches(batch, range(len(batch)))
    decoded = [(index, *decode_history_columns(value)) for index, value in enumerate(batch.values)]
    assert fast is not None and fast.num_rows == 250
    assert fast.equals(_one_table(batch, decoded))


NOT_PLAIN_LOADER_BATCHES = {
    "a column set to null": b'{"file":"f","columns":{"line":[2],"summons_number":[1],"issue_date":["2017-03-14"],"plate_id":null}}',
    "columns of two lengths": b'{"file":"f","columns":{"line":[2,3],"summons_number":[1],"issue_date":["2017-03-14","2017-03-14"]}}',
    "a column no one knows": b'{"file":"f","columns":{"line":[2],"summons_number":[1],"issue_date":["2017-03-14"],"colour":["red"]}}',
    "an integer written 1.0": b'{"file":"f","columns":{"line":[2.0],"summons_number":[1],"issue_date":["2017-03-14"]}}',
    "two batches in one message": b'{"file":"f","columns":{"line":[2],"summons_number":[1],"issue_date":["2017-03-14"]}}' * 2,
    "no records": b'{"file":"f","columns":{"line":[],"summons_number":[],"issue_date":[]}}',
    "no file": b'{"columns":{"line":[2],"summons_number":[1],"issue_date":["2017-03-14"]}}',
    "a number for text": b'{"file":"f","columns":{"line":[2],"summons_number":[1],"issue_date":["2017-03-14"],"plate_id":[7]}}',
    "not JSON": b"not a batch",
    "empty": b"",
}


@pytest.mark.parametrize("odd", NOT_PLAIN_LOADER_BATCHES.values(), ids=NOT_PLAIN_LOADER_BATCHES.keys())
def test_a_chunk_with_a_message_arrow_cannot_vouch_for_lands_and_is_refused_as_message_by_message(
    odd: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = raw_batch([*full_layout_batches(2), odd, *(value for _, value in loader_batches(1))])
    assert plain_loader_batches(batch, range(len(batch))) is None
    writer = WriteHistoryBatches("unused")
    table, valid, dead = writer._decoded(batch)
    monkeypatch.setattr("transforms.history.plain_loader_batches", lambda *_: None)
    by_message = writer._decoded(batch)
    assert (table, valid, [(letter.reason, letter.offset) for letter in dead]) == (
        by_message[0],
        by_message[1],
        [(letter.reason, letter.offset) for letter in by_message[2]],
    )
    assert valid in (3, 4)  # messages: the odd one refused, or read as the loader would have sent it
