"""Compaction on real lakes: real Parquet files, real Beam pipelines, a real SIGKILL.

The history lake holds two loads of the same summonses in many small files per day: the
second, later load corrects a third of them (with lower source lines, so only
``loaded_at`` can tell it is the later one). After compaction each summons is there once
with the later values; a second run changes nothing; readers, writers and crashes during
a compaction never lose or double a row.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipelines import compact
from transforms import compaction, lake, partition_replace
from transforms.analysis import reading
from transforms.compaction import Settings, compacted_files, latest_per_key, rows_per_file
from transforms.partition_replace import (
    exchange,
    finish,
    finish_all,
    list_versions,
    replace_files,
    replace_partition,
    stage,
    write_journal,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DAYS = ("2017-03-14", "2017-03-15", "2017-03-16")
FIRST_LOAD = datetime(2024, 1, 10, tzinfo=timezone.utc)
SECOND_LOAD = datetime(2024, 2, 10, tzinfo=timezone.utc)
SUMMONSES_PER_DAY, FILES_PER_LOAD = 300, 12
CORRECTED_EVERY = 3  # the second load sends every third summons again, corrected


def history_rows(summonses: range, day: str, loaded_at: datetime, plate: str, first_line: int) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "summons_number": summons,
                "issue_date": date.fromisoformat(day),
                "improbable_date": False,
                "source_file": "f" * 64,
                "source_line": first_line + index,
                "loaded_at": loaded_at,
                "plate_id": f"{plate}{summons}",
            }
            for index, summons in enumerate(summonses)
        ],
        schema=lake.HISTORY_SCHEMA,
    )


def write_two_loads(root: Path, days: tuple[str, ...] = DAYS, per_day: int = SUMMONSES_PER_DAY) -> None:
    """Each day: the first load in FILES_PER_LOAD files, then the corrections of the second in as many."""
    for number, day in enumerate(days):
        folder = lake.date_partition(str(root), lake.HISTORY, day)
        first = number * 100_000
        step = per_day // FILES_PER_LOAD
        for part in range(FILES_PER_LOAD):
            start = first + part * step
            rows = history_rows(range(start, start + step), day, FIRST_LOAD, "OLD", 10_000 + part * step)
            lake.write_table(str(root), folder, f"part-first-{part:02d}.parquet", rows)
            corrected = history_rows(range(start, start + step, CORRECTED_EVERY), day, SECOND_LOAD, "NEW", part * step)
            lake.write_table(str(root), folder, f"part-second-{part:02d}.parquet", corrected)


def expected_plates(days: tuple[str, ...] = DAYS, per_day: int = SUMMONSES_PER_DAY) -> dict[int, str]:
    """Each summons with the plate its latest load gave it."""
    plates = {}
    for number in range(len(days)):
        for summons in range(number * 100_000, number * 100_000 + per_day):
            corrected = (summons - number * 100_000) % (per_day // FILES_PER_LOAD) % CORRECTED_EVERY == 0
            plates[summons] = f"{'NEW' if corrected else 'OLD'}{summons}"
    return plates


@pytest.fixture(scope="module")
def two_loads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template") / "lake"
    write_two_loads(root)
    return root


@pytest.fixture
def lake_root(two_loads: Path, tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    shutil.copytree(two_loads, root)
    return root


def history(root: Path) -> pa.Table:
    partitioning = ds.partitioning(lake.DATE_PARTITIONING, flavor="hive")
    return ds.dataset(root / lake.HISTORY, format="parquet", partitioning=partitioning).to_table()


def plates(table: pa.Table) -> dict[int, str]:
    return dict(zip(table.column("summons_number").to_pylist(), table.column("plate_id").to_pylist()))


def partition(root: Path, day: str) -> Path:
    return Path(lake.date_partition(str(root), lake.HISTORY, day))


def rows_by_day(root: Path, days: tuple[str, ...]) -> dict[str, int]:
    return {day: pq.ParquetDataset(partition(root, day)).read(columns=["summons_number"]).num_rows for day in days}


def file_times(root: Path) -> dict[str, int]:
    return {str(path.relative_to(root)): path.stat().st_mtime_ns for path in sorted((root / lake.HISTORY).rglob("*"))}


def leftovers(root: Path) -> list[str]:
    """Staging folders and journals: what only an interrupted compaction leaves."""
    places = [root / lake.TEMP_FOLDER / lake.COMPACTION, root / lake.STATE_FOLDER / lake.COMPACTION]
    return [str(path) for place in places if place.exists() for path in place.rglob("*") if path.is_file() or path.name.startswith("dt=")]


def assert_compacted(root: Path, expected: dict[int, str], days: tuple[str, ...] = DAYS) -> None:
    table = history(root)
    assert table.num_rows == len(expected), "each summons once"
    assert plates(table) == expected, "the later load's values"
    for day in days:
        assert len(list(partition(root, day).iterdir())) <= 2
    assert leftovers(root) == []


def run_cli(capsys: pytest.CaptureFixture, *flags: str) -> tuple[int, str, str]:
    try:
        code = compact.main(list(flags))
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- upsert, sizes, idempotence ----------------------------------------------------------


def test_two_loads_become_one_row_per_summons_with_the_later_values(lake_root: Path, capsys) -> None:
    code, out, err = run_cli(capsys, f"--input={lake_root}", "--dataset=history")
    assert code == 0, err
    summary = json.loads(out)
    rows_before = len(expected_plates()) + sum(plate.startswith("NEW") for plate in expected_plates().values())
    assert summary["partitions"] == {"compacted": 3, "already_compact": 0, "skipped": 0}
    assert summary["files"] == {"before": len(DAYS) * 2 * FILES_PER_LOAD, "after": 3}
    assert summary["rows"] == {"before": rows_before, "after": len(expected_plates())}
    assert_compacted(lake_root, expected_plates())
    assert len(out.splitlines()) == 1


def test_a_small_target_cuts_a_partition_into_files_sorted_by_key(lake_root: Path) -> None:
    folder = partition(lake_root, DAYS[0])
    kept = latest_per_key(history(lake_root).filter(ds.field("dt") == date.fromisoformat(DAYS[0])).drop(["dt"]), lake.HISTORY)
    target_mb = kept.nbytes / 4.5 / (1 << 20)  # about four and a half files' worth
    compact.compact_partitions(str(lake_root), lake.HISTORY, [DAYS[0]], target_file_mb=target_mb)
    files = sorted(folder.iterdir(), key=lambda path: int(path.name.split("-")[2]))
    assert len(files) == 5 and all(path.name.endswith(f"-of-{len(files)}.parquet") for path in files)
    keys = [pq.read_table(path).column("summons_number").to_pylist() for path in files]
    assert sum(keys, []) == sorted(expected for expected in expected_plates() if expected < 100_000)
    assert rows_per_file(kept, int(target_mb * (1 << 20))) == len(keys[0])
    assert len(list(partition(lake_root, DAYS[1]).iterdir())) == 2 * FILES_PER_LOAD, "only the day asked for"


def test_a_second_run_changes_nothing(lake_root: Path) -> None:
    compact.compact_partitions(str(lake_root), lake.HISTORY, [])
    before = file_times(lake_root)
    summary = compact.compact_partitions(str(lake_root), lake.HISTORY, [])
    assert summary["partitions"] == {"compacted": 0, "already_compact": 3, "skipped": 0}
    assert file_times(lake_root) == before, "same names, same modification times"


def test_compacted_files_are_named_by_their_content() -> None:
    table = latest_per_key(history_rows(range(50), DAYS[0], FIRST_LOAD, "OLD", 0), lake.HISTORY)
    names = [file.name for file in compacted_files(table, 1 << 30)]
    assert names == [file.name for file in compacted_files(table, 1 << 30)]
    assert names != [file.name for file in compacted_files(table.slice(1), 1 << 30)]
    assert lake.is_compacted_set(names) and not lake.is_compacted_set([*names, "part-0.parquet"])
    three = [file.name for file in compacted_files(table, table.nbytes // 3 + 1)]
    assert lake.is_compacted_set(three) and not lake.is_compacted_set(three[:2])


# --- what readers see ---------------------------------------------------------------------


class PartitionReader(threading.Thread):
    """Lists the partitions over and over as a reader globbing ``*.parquet`` would, counting each listing's rows.

    A listing whose file is gone when it is opened (the swap happened in between) is
    listed again, as any reader must; every complete listing's row count is kept.
    """

    def __init__(self, folders: list[Path]):
        super().__init__(daemon=True)
        self.folders = folders
        self.stop = threading.Event()
        self.seen: list[tuple[Path, int]] = []
        self._rows: dict[tuple[str, int, int], int] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            for folder in self.folders:
                count = self.count(folder)
                if count is not None:
                    self.seen.append((folder, count))

    def count(self, folder: Path) -> int | None:
        total = 0
        for path in folder.glob("*.parquet"):
            try:
                status = path.stat()
                version = (str(path), status.st_ino, status.st_mtime_ns)
                if version not in self._rows:
                    self._rows[version] = pq.ParquetFile(path).metadata.num_rows
            except FileNotFoundError:
                return None
            total += self._rows[version]
        return total


def test_readers_see_the_old_files_or_the_new_never_both_nor_none(lake_root: Path) -> None:
    folders = [partition(lake_root, day) for day in DAYS]
    old = {partition(lake_root, day): rows for day, rows in rows_by_day(lake_root, DAYS).items()}
    new = SUMMONSES_PER_DAY
    reader = PartitionReader(folders)
    reader.start()
    try:
        compact.compact_partitions(str(lake_root), lake.HISTORY, [])
    finally:
        reader.stop.set()
        reader.join()
    wrong = [(folder.name, count) for folder, count in reader.seen if count not in (old[folder], new)]
    assert wrong == [] and len(reader.seen) > 30
    assert {count for _, count in reader.seen} >= {new, *old.values()}, "listings before and after the swap"


def test_a_reader_that_opened_the_folder_before_the_swap_finds_names_it_cannot_open_not_an_empty_folder(
    lake_root: Path,
) -> None:
    """The reader reads the old folder's entries after the swap: the inputs are still there (a grace),
    their paths now lead to the new folder, where they are not, so it lists again."""
    folder, inputs, files = compacted_inputs(lake_root, DAYS[0])
    opened = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        swapped = replace_partition(str(lake_root), folder, files, inputs)
        assert sorted(os.listdir(opened)) == [version.name for version in inputs]
        assert not any((Path(folder) / version.name).exists() for version in inputs)
        finish_all([swapped])
        assert time.monotonic() - swapped.at >= 0.25, "readers get a moment between opening and reading"
        assert os.listdir(opened) == [] and leftovers(lake_root) == []
    finally:
        os.close(opened)


def test_duckdb_and_the_analysis_reader_read_the_compacted_lake(lake_root: Path) -> None:
    compact.compact_partitions(str(lake_root), lake.HISTORY, [])
    pattern = f"{lake_root}/{lake.HISTORY}/**/*.parquet"
    rows, distinct, days = duckdb.sql(
        f"SELECT count(*), count(DISTINCT summons_number), count(DISTINCT dt) FROM read_parquet('{pattern}', hive_partitioning=true)"
    ).fetchall()[0]
    assert rows == distinct == len(expected_plates()) and days == len(DAYS)
    files = reading.data_files(str(lake_root), reading.HISTORY)
    assert len(files) == len(DAYS)
    table = reading.read_file_group(files, reading.HISTORY.projected_schema(["summons_number", "plate_id"]))
    assert plates(table) == expected_plates()


# --- writers during a compaction ------------------------------------------------------------


def compacted_inputs(root: Path, day: str):
    """What a compaction of ``day`` lists and would write, stopped before it replaces anything."""
    folder = str(partition(root, day))
    inputs = list_versions(folder)
    table = reading.read_file_group([lake.join(folder, version.name) for version in inputs], lake.HISTORY_SCHEMA)
    return folder, inputs, compacted_files(latest_per_key(table, lake.HISTORY), Settings().target_file_bytes)


def test_a_file_a_writer_adds_after_the_listing_survives_the_swap(lake_root: Path) -> None:
    folder, inputs, files = compacted_inputs(lake_root, DAYS[0])
    lake.write_table(str(lake_root), folder, "part-late.parquet", LATE)
    finish_all([replace_partition(str(lake_root), folder, files, inputs)])
    names = sorted(path.name for path in Path(folder).iterdir())
    assert names == sorted([files[0].name, "part-late.parquet"])
    assert pq.read_table(Path(folder) / "part-late.parquet").num_rows == 10 and leftovers(lake_root) == []


def test_a_file_a_writer_renames_into_the_old_folder_after_the_swap_moves_to_the_new_one(lake_root: Path) -> None:
    """A writer whose rename found the folder just before the swap lands in the old one, now the staging path."""
    root, (folder, inputs, files) = str(lake_root), compacted_inputs(lake_root, DAYS[0])
    staging = stage(root, folder, files)
    write_journal(root, folder, staging, inputs)
    exchange(staging, folder)
    lake.write_table(root, staging, "part-late.parquet", LATE)
    finish(root, folder, frozenset(inputs))
    assert sorted(path.name for path in Path(folder).iterdir()) == sorted([files[0].name, "part-late.parquet"])
    assert leftovers(lake_root) == []


def test_two_merges_of_one_partition_at_once_leave_each_summons_once(lake_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #15 item 7: two drains (or a drain and ``pipelines.compact``) merging one day at once.

    The first has read its inputs and is about to swap when a drain writes a file into the
    day and merges it. Without one merge of a partition at a time the second merges the
    first's inputs and the new file, the first swaps its own files in over that, and the
    second's then count as a writer's additions and stay: every summons of the day twice.
    """
    root, folder = str(lake_root), str(partition(lake_root, DAYS[0]))
    about_to_swap, second_went = threading.Event(), threading.Event()
    real_replace = compaction.replace_partition

    def replace_once_the_second_went(*args: object) -> object:
        if threading.current_thread().name == "first":
            about_to_swap.set()
            assert second_went.wait(60), "the second merge neither ran nor waited"
        return real_replace(*args)

    class SecondWaits(logging.Handler):
        def emit(self, entry: logging.LogRecord) -> None:
            if threading.current_thread().name == "second" and "waiting for" in entry.getMessage():
                second_went.set()

    monkeypatch.setattr(compaction, "replace_partition", replace_once_the_second_went)
    waiting = SecondWaits()
    logging.getLogger(partition_replace.__name__).addHandler(waiting)
    failures: list[BaseException] = []

    def merge() -> None:
        merger = compaction.CompactPartition(root, lake.HISTORY, Settings())
        try:
            merger.start_bundle()
            merger.process(folder)
            merger.finish_bundle()
        except BaseException as error:  # noqa: BLE001 — the test thread reports it
            failures.append(error)
        finally:
            if threading.current_thread().name == "second":
                second_went.set()

    first = threading.Thread(target=merge, name="first")
    second = threading.Thread(target=merge, name="second")
    try:
        first.start()
        assert about_to_swap.wait(60)
        lake.write_table(root, folder, "part-late.parquet", LATE)
        second.start()
        first.join(60)
        second.join(60)
    finally:
        logging.getLogger(partition_replace.__name__).removeHandler(waiting)
    assert not failures, failures
    day = pq.ParquetDataset(folder).read(columns=["summons_number", "plate_id"])
    expected = {summons: plate for summons, plate in expected_plates().items() if summons < 100_000}
    expected.update(plates(LATE))
    assert day.num_rows == len(expected), "each summons of the day once"
    assert plates(day) == expected and lake.is_compacted_set(path.name for path in Path(folder).iterdir())
    assert leftovers(lake_root) == []


def test_object_stores_write_the_new_files_then_delete_the_inputs_still_as_listed(lake_root: Path) -> None:
    """The file-by-file replacement, here on a local folder: an input rewritten after the listing stays."""
    folder, inputs, files = compacted_inputs(lake_root, DAYS[0])
    rewritten = history_rows(range(0, 5), DAYS[0], SECOND_LOAD, "REWRITTEN", 1)
    lake.write_table(str(lake_root), folder, inputs[0].name, rewritten)
    replace_files(str(lake_root), folder, files, inputs)
    assert sorted(path.name for path in Path(folder).iterdir()) == sorted([files[0].name, inputs[0].name])


# --- crashes ----------------------------------------------------------------------------------


LATE = history_rows(range(900_000, 900_010), DAYS[0], SECOND_LOAD, "LATE", 1)


def crash_while_staging(root: str, folder: str, inputs, files) -> dict[int, str]:
    stage(root, folder, files[:1])
    return {}


def crash_after_the_journal(root: str, folder: str, inputs, files) -> dict[int, str]:
    write_journal(root, folder, stage(root, folder, files), inputs)
    return {}


def crash_after_the_swap(root: str, folder: str, inputs, files) -> dict[int, str]:
    """Killed after the swap, and after a writer's rename landed a file in the old folder."""
    staging = stage(root, folder, files)
    write_journal(root, folder, staging, inputs)
    exchange(staging, folder)
    lake.write_table(root, staging, "part-late.parquet", LATE)
    return plates(LATE)


def crash_before_the_journal_is_removed(root: str, folder: str, inputs, files) -> dict[int, str]:
    crash_after_the_swap(root, folder, inputs, files)
    journal = Path(lake.compaction_journal(root, folder)).read_bytes()
    finish(root, folder, frozenset(inputs))
    Path(lake.compaction_journal(root, folder)).write_bytes(journal)
    return plates(LATE)


@pytest.mark.parametrize(
    "crash, journaled",
    [(crash_while_staging, 0), (crash_after_the_journal, 1), (crash_after_the_swap, 1), (crash_before_the_journal_is_removed, 1)],
)
def test_a_run_killed_at_each_step_of_the_swap_is_finished_or_rolled_back_by_the_next(lake_root: Path, crash, journaled: int) -> None:
    folder, inputs, files = compacted_inputs(lake_root, DAYS[0])
    (old_rows,) = rows_by_day(lake_root, DAYS[:1]).values()
    added = crash(str(lake_root), folder, inputs, files)
    new_rows = (SUMMONSES_PER_DAY, SUMMONSES_PER_DAY + len(added))  # the writer's file moved in yet, or not
    assert rows_by_day(lake_root, DAYS[:1])[DAYS[0]] in (old_rows, *new_rows), "old or new, to readers"
    assert set(plates(history(lake_root))) >= set(expected_plates()), "readers lose nothing meanwhile"
    summary = compact.compact_partitions(str(lake_root), lake.HISTORY, [DAYS[1]])
    assert summary["interrupted_runs_finished"] == journaled and summary["partitions"]["compacted"] == 1
    rows = rows_by_day(lake_root, DAYS[:1])[DAYS[0]]
    assert rows in (old_rows, SUMMONSES_PER_DAY + len(added)), "finished or rolled back, whatever --dt said"
    compact.compact_partitions(str(lake_root), lake.HISTORY, [DAYS[0], DAYS[2]])
    assert_compacted(lake_root, expected_plates() | added)


KILLED_DAYS = tuple(f"2017-04-{day:02d}" for day in range(1, 13))
KILLED_PER_DAY = 12_000
KILLS = 3
KILL_WITHIN_S = 0.8  # after the run's first journal: its other partitions' swaps, the grace, the finish


def journal_folder(root: Path) -> Path:
    return root / lake.STATE_FOLDER / lake.COMPACTION / lake.HISTORY


def start_compaction(root: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "pipelines.compact", f"--input={root}", "--dataset=history"]
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_a_journal_or_the_end(child: subprocess.Popen, root: Path, since_ns: int) -> bool:
    """Whether the child wrote a journal (it is swapping partitions) before it ended."""
    while child.poll() is None:
        for path in journal_folder(root).glob("*.json"):
            with contextlib.suppress(FileNotFoundError):  # finished and removed since the listing
                if path.stat().st_mtime_ns >= since_ns:
                    return True
        threading.Event().wait(0.005)
    return False


def test_sigkill_at_random_moments_then_a_rerun_leaves_the_lake_right(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    write_two_loads(root, KILLED_DAYS, KILLED_PER_DAY)
    old_rows = rows_by_day(root, KILLED_DAYS)
    moments = random.Random(20170401)
    interrupted = 0
    for _ in range(KILLS):
        started_ns = time.time_ns()
        child = start_compaction(root)
        if wait_for_a_journal_or_the_end(child, root, started_ns):
            threading.Event().wait(moments.uniform(0, KILL_WITHIN_S))  # the fault: a kill at a random moment
            child.send_signal(signal.SIGKILL)
        child.communicate(timeout=60)
        interrupted += bool(leftovers(root))
        assert set(plates(history(root))) == set(expected_plates(KILLED_DAYS, KILLED_PER_DAY)), "no row lost"
        rows = rows_by_day(root, KILLED_DAYS)
        assert all(rows[day] in (old_rows[day], KILLED_PER_DAY) for day in KILLED_DAYS), "each day old or new"
    assert interrupted >= 1, "some kill left a swap for the rerun to finish"
    journals = len(list(journal_folder(root).glob("*.json")))
    child = start_compaction(root)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert json.loads(out)["interrupted_runs_finished"] == journals
    assert_compacted(root, expected_plates(KILLED_DAYS, KILLED_PER_DAY), KILLED_DAYS)


# --- the drone dataset ------------------------------------------------------------------------

HOUR = datetime(2024, 3, 1, 3, tzinfo=timezone.utc)


def drone_rows(places: list[tuple[str, int, int]], moment: datetime) -> pa.Table:
    """A row per (message id, Kafka partition, offset); the battery level tells the copies apart."""
    return pa.Table.from_pylist(
        [
            {
                "message_id": message,
                "drone_id": "d1",
                "timestamp": moment,
                "latitude": 40.7,
                "longitude": -74.0,
                "battery_pct": float(offset),
                "kafka_partition": kafka_partition,
                "kafka_offset": offset,
            }
            for message, kafka_partition, offset in places
        ],
        schema=lake.DRONE_SCHEMA,
    )


def test_drone_hours_keep_each_message_s_first_record_and_wait_until_they_settle(tmp_path: Path) -> None:
    root = str(tmp_path / "lake")
    settled, fresh = (lake.drone_partition(root, HOUR + timedelta(hours=hours)) for hours in (0, 1))
    for folder in (settled, fresh):
        lake.write_table(root, folder, "part-0300-p1-pane0-a.parquet", drone_rows([("m1", 1, 5), ("m2", 1, 6)], HOUR))
        lake.write_table(root, folder, "part-0300-p0-pane0-b.parquet", drone_rows([("m1", 0, 9), ("m3", 0, 10)], HOUR))
    an_hour_ago = time.time() - 3600
    for path in Path(settled).iterdir():
        os.utime(path, (an_hour_ago, an_hour_ago))
    summary = compact.compact_partitions(root, lake.DRONE, [HOUR.date().isoformat()])
    assert summary["partitions"] == {"compacted": 1, "already_compact": 0, "skipped": 1}
    (file,) = Path(settled).iterdir()
    kept = pq.read_table(file)
    assert kept.column("message_id").to_pylist() == ["m1", "m2", "m3"]
    assert kept.column("battery_pct").to_pylist() == [9.0, 6.0, 10.0], "m1's record in partition 0, not 1"
    assert len(list(Path(fresh).iterdir())) == 2
    summary = compact.compact_partitions(root, lake.DRONE, [], settle_minutes=0)
    assert summary["partitions"] == {"compacted": 1, "already_compact": 1, "skipped": 0}


# --- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--input={missing}", "--dataset=history"], "compact: no such folder: {missing}"),
        (["--input={lake}", "--dataset=boats"], "compact: argument --dataset: invalid choice: 'boats' (choose from 'drone', 'history')"),
        (["--input={lake}"], "compact: --dataset must be one of drone, history"),
        (["--input={lake}", "--dataset=history", "--dt=2017-02-30"], "compact: --dt 2017-02-30 is not a day (YYYY-MM-DD)"),
        (["--input={lake}", "--dataset=history", "--dt=20170301"], "compact: --dt 20170301 is not a day (YYYY-MM-DD)"),
        (
            ["--input={lake}", "--dataset=history", "--target_file_mb=0"],
            "compact: --target_file_mb must be more than 0 and --settle_minutes at least 0",
        ),
        (["--input={lake}", "--dataset=history", "--dtt=2017-03-01"], "compact: unknown flag --dtt (did you mean --dt?)"),
    ],
)
def test_what_a_user_can_fix_is_one_line_and_exit_2(tmp_path: Path, capsys, flags: list[str], message: str) -> None:
    (tmp_path / "lake").mkdir()
    places = {"lake": tmp_path / "lake", "missing": tmp_path / "missing"}
    code, out, err = run_cli(capsys, *(flag.format(**places) for flag in flags))
    assert (code, out, err) == (2, "", message.format(**places) + "\n")


def test_help_lists_the_compaction_flags(capsys) -> None:
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "python -m pipelines.compact --input ./lake --dataset history|drone" in out
    assert all(flag in out for flag in ("--dataset", "--dt", "--target_file_mb", "--settle_minutes", "--input"))
