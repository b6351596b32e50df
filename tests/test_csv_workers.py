"""Worker processes read a CSV file's regions and hand over exactly the batches one process would have read.

The file is cut into small regions (a few hundred bytes) so that many region starts
fall inside quoted line breaks, overlong lines and rejected records, and the guessed
starts must be checked and read again; real files use 1 MiB regions. It is read in
small chunks too, so that most of it is read the fast way, as a real file is.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import orjson
import pytest

from csv_ingest.batches import regions
from csv_ingest.records import layout_for_header
from csv_ingest.source import MAX_RECORD_BYTES, Position, read_header
from csv_ingest.workers import EncodedBatch, FileBatches, Reading, encoded_batches
from tests.support.csv_files import WINDOW_FY2017, csv_text, fields, shared_sample
from tests.support.processes import is_running
from transforms.history_contract import decode_history_batch

REGION_BYTES = 700
CHUNK_BYTES = 1000


@pytest.fixture(scope="module")
def awkward_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six hundred rows with quoted line breaks, rejects, a blank line and overlong lines here and there."""
    rows = []
    for number in range(600):
        if kind_of_row(number) == "quoted line breaks":
            rows.append(fields(number, street_name="W 43rd St\r\nat the\r\ncorner"))
        elif kind_of_row(number) == "bad summons number":
            rows.append(fields(f"X{number}"))
        elif kind_of_row(number) == "overlong":
            rows.append(fields(number, violation_description="x" * (MAX_RECORD_BYTES + 10)))
        else:
            rows.append(fields(number))
    path = tmp_path_factory.mktemp("workers") / "awkward.csv"
    path.write_bytes(b"\xef\xbb\xbf" + csv_text(rows).replace("\r\n40,", "\r\n\r\n40,").encode())
    return path


def reading_of(path: Path, batch_lines: int = 4) -> tuple[Reading, Position]:
    header, start = read_header(path)
    reading = Reading(path, layout_for_header(header), WINDOW_FY2017, batch_lines, "f" * 64, CHUNK_BYTES, REGION_BYTES)
    return reading, start


def read_by_workers(reading: Reading, start: Position, workers: int = 2) -> tuple[list[EncodedBatch], FileBatches]:
    batches = FileBatches(reading, start, workers, note=lambda message: None)
    try:
        return list(batches), batches
    finally:
        batches.close()


def test_workers_hand_over_the_batches_one_process_reads(awkward_file: Path) -> None:
    reading, start = reading_of(awkward_file)
    alone = list(encoded_batches(reading, start))
    shared, batches = read_by_workers(reading, start)
    assert shared == alone
    assert batches.regions_read_again > 0, "no region start fell inside a record: the file does not test the check"
    sent = [
        summons
        for batch in alone
        if batch.message
        for record in decode_history_batch(batch.message[1])[1]
        for summons in [record["summons_number"]]
    ]
    rejected = ("bad summons number", "overlong")
    assert sent == [number for number in range(600) if kind_of_row(number) not in rejected]
    reject_lines = [rejected.line for batch in alone for rejected, _raw in batch.rejects]
    assert reject_lines == sorted(reject_lines)
    assert len(reject_lines) == len([number for number in range(600) if kind_of_row(number) in rejected])


def test_batches_never_cross_a_region_and_resuming_at_any_batch_end_gives_the_same_batches(awkward_file: Path) -> None:
    reading, start = reading_of(awkward_file)
    alone = list(encoded_batches(reading, start))
    assert all(batch.rows <= reading.batch_lines for batch in alone)
    stops = [region.stop.line for region in regions(awkward_file, start, REGION_BYTES)]
    for batch in alone:
        if batch.message is not None:
            lines = orjson.loads(batch.message[1])["columns"]["line"]
            assert not [stop for stop in stops if lines[0] < stop <= lines[-1]], f"batch of lines {lines} crosses a region"
    for index in range(0, len(alone), 9):
        resumed, _ = read_by_workers(reading, alone[index].end)
        assert resumed == alone[index + 1 :]


def test_workers_report_their_peak_memory_and_end_with_the_file(awkward_file: Path) -> None:
    reading, start = reading_of(awkward_file)
    batches = FileBatches(reading, start, 2, note=lambda message: None)
    pids = batches.worker_pids
    assert len(pids) == 2
    list(batches)
    batches.close()
    assert 2 * 10_000 < batches.workers_peak_rss_kb < 2 * 100_000
    for pid in pids:
        assert not is_running(pid)


def test_a_worker_that_dies_hands_its_work_back(awkward_file: Path) -> None:
    reading, start = reading_of(awkward_file)
    alone = list(encoded_batches(reading, start))
    notes: list[str] = []
    batches = FileBatches(reading, start, 2, note=notes.append)
    try:
        handed_over = []
        for batch in batches:
            if len(handed_over) == 3:
                os.kill(batches.worker_pids[1], signal.SIGKILL)
            handed_over.append(batch)
    finally:
        batches.close()
    assert handed_over == alone
    assert len(notes) == 1 and "reading on in this process" in notes[0], notes


def test_a_small_file_is_read_without_workers(awkward_file: Path) -> None:
    header, start = read_header(awkward_file)
    reading = Reading(awkward_file, layout_for_header(header), WINDOW_FY2017, 4, "f" * 64)
    batches = FileBatches(reading, start, 2, note=lambda message: None)
    assert batches.worker_pids == []
    assert list(batches) == list(encoded_batches(reading, start))


def kind_of_row(number: int) -> str:
    """What the fixture makes of row ``number``."""
    if number % 11 == 1:
        return "quoted line breaks"
    if number % 13 == 3:
        return "bad summons number"
    if number % 97 == 5:
        return "overlong"
    return "plain"


@pytest.mark.parametrize("name", ["pvi_fy2017_sample.csv", "pvi_fy2018_sample.csv", "pvi_fy2014_sample.csv"])
def test_the_real_samples_read_by_workers_as_by_one_process(name: str) -> None:
    """The city's own quirks (whole-line quoted records, a quoted comma, 51 columns), regions of 700 bytes."""
    reading, start = reading_of(shared_sample(name), batch_lines=50)
    alone = list(encoded_batches(reading, start))
    shared, _ = read_by_workers(reading, start)
    assert shared == alone and sum(batch.rows for batch in alone) > 30
