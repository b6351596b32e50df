"""The CSV record rules and the byte-position-aware reader, on fixtures written here and the real samples."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import orjson
import pytest

from bench.ingest import FY2017_HEADER  # the city's own header line, spaces and all
from csv_ingest import records
from csv_ingest.checkpoint import Checkpoint, CheckpointError, Counters, fingerprint, load_checkpoint, save_checkpoint
from csv_ingest.records import (
    FY2014_COLUMNS,
    FY2017_COLUMNS,
    DateWindow,
    Rejected,
    UnknownHeader,
    borough,
    clock_time,
    iso_date,
    layout_for_header,
    likely_fiscal_year,
    parse_record,
    snake_case,
    type_rows,
)
from csv_ingest.source import MAX_LINE_BYTES, Position, RecordReader, read_header
from tests.support.csv_files import LAYOUT_FY2017, WINDOW_FY2017, csv_text, fields, read_file, shared_sample
from transforms.history_contract import decode_history_batch, encode_history_batch

FY2014_HEADER = FY2017_HEADER + ",Latitude,Longitude,Community Board,Community Council ,Census Tract,BIN,BBL,NTA"


# --- header names and layouts -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "snake"),
    [
        ("Days Parking In Effect    ", "days_parking_in_effect"),
        ("Unregistered Vehicle?", "unregistered_vehicle"),
        ("Community Council ", "community_council"),
        ("Street Code1", "street_code1"),
        ("BIN", "bin"),
        ("No Standing or Stopping Violation", "no_standing_or_stopping_violation"),
    ],
)
def test_header_names_are_trimmed_and_snake_cased(name: str, snake: str) -> None:
    assert snake_case(name) == snake


def test_both_layouts_are_recognised_in_any_column_order() -> None:
    assert layout_for_header(FY2017_HEADER.split(",")).columns == FY2017_COLUMNS
    fy2014 = layout_for_header(FY2014_HEADER.split(","))
    assert fy2014.columns == FY2014_COLUMNS and fy2014.width == 51
    shuffled = list(reversed(FY2017_HEADER.split(",")))
    layout = layout_for_header(shuffled)
    record = parse_record(list(reversed(fields())), 2, layout, WINDOW_FY2017)
    assert record["summons_number"] == 5092469481 and record["borough"] == "Manhattan"


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (FY2017_HEADER.replace("Plate ID", "Plate"), ["missing plate_id", "unexpected plate"]),
        (FY2017_HEADER + ",Fine", ["unexpected fine"]),
        ("a,b,c", ["missing summons_number"]),
        (FY2017_HEADER + ",Plate ID", ["duplicate columns plate_id"]),
    ],
)
def test_an_unknown_header_is_a_one_line_error(header: str, words: list[str]) -> None:
    with pytest.raises(UnknownHeader) as error:
        layout_for_header(header.split(","))
    assert "\n" not in str(error.value) and all(word in str(error.value) for word in words)


# --- normalised values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "clock"),
    [
        ("0015A", "00:15"),
        ("1240P", "12:40"),
        ("1205A", "00:05"),
        ("1200A", "00:00"),
        ("1200P", "12:00"),
        ("0400P", "16:00"),
        ("1159P", "23:59"),
        ("0010P", "12:10"),
        ("0745a", "07:45"),
        ("", None),
        ("1340P", None),
        ("0960A", None),
        ("0015X", None),
        ("015A", None),
        ("0015", None),
        ("00:15", None),
        ("١٢٣٤A", None),
    ],
)
def test_violation_times_become_hh_mm(text: str, clock: str | None) -> None:
    assert clock_time(text) == clock


@pytest.mark.parametrize(
    ("county", "name"),
    [
        ("NY", "Manhattan"),
        ("MN", "Manhattan"),
        ("K", "Brooklyn"),
        ("BK", "Brooklyn"),
        ("Q", "Queens"),
        ("QN", "Queens"),
        ("BX", "Bronx"),
        ("R", "Staten Island"),
        ("ST", "Staten Island"),
        (" ny ", "Manhattan"),
        ("Kings", "Brooklyn"),
        ("", None),
        ("XX", None),
        ("NJ", None),
    ],
)
def test_counties_become_the_five_boroughs(county: str, name: str | None) -> None:
    assert borough(county) == name


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("07/10/2016", "2016-07-10"),
        ("02/29/2016", "2016-02-29"),
        ("02/29/2017", None),
        ("13/01/2017", None),
        ("1/2/2017", None),
        ("2017-01-02", None),
        ("", None),
        ("0a/10/2016", None),
        ("07/10/20166", None),
    ],
)
def test_issue_dates_are_strict_mm_dd_yyyy(text: str, iso: str | None) -> None:
    assert iso_date(text) == iso


def test_the_date_window_is_a_year_around_the_fiscal_year_and_never_the_future() -> None:
    window = DateWindow.for_fiscal_year(2017, date(2026, 1, 1))
    assert (window.earliest, window.latest) == ("2015-07-01", "2018-06-30")
    assert DateWindow.for_fiscal_year(2017, date(2017, 3, 1)).latest == "2017-03-01"
    assert likely_fiscal_year(["2016-07-01", "2017-06-30", "2016-06-30"]) == 2017
    assert likely_fiscal_year([]) is None


# --- one record -----------------------------------------------------------------------------


def test_a_record_is_typed_and_normalised() -> None:
    record = parse_record(fields(time="1240P", county="K", plate_type=""), 7, LAYOUT_FY2017, WINDOW_FY2017)
    assert not isinstance(record, Rejected)
    assert record["line"] == 7 and record["summons_number"] == 5092469481 and record["issue_date"] == "2017-03-14"
    assert record["violation_time"] == "12:40" and record["violation_county"] == "K" and record["borough"] == "Brooklyn"
    assert record["violation_code"] == 21 and record["issuer_precinct"] == 14 and record["vehicle_year"] == 2015
    assert record["street_code1"] == 34310 and record["street_code3"] is None and record["plate_type"] is None
    assert record["improbable_date"] is False and record["street_name"] == "W 43rd St"
    assert set(record) == {"line", *FY2017_COLUMNS, "borough", "improbable_date"}
    assert orjson.loads(orjson.dumps(record)) == record


def test_odd_but_readable_values_are_kept() -> None:
    record = parse_record(fields(time="25:00", county="ZZ", violation_code="2A", vehicle_year="-"), 3, LAYOUT_FY2017, WINDOW_FY2017)
    assert not isinstance(record, Rejected)
    assert record["violation_time"] is None and record["borough"] is None and record["violation_county"] == "ZZ"
    assert record["violation_code"] is None and record["vehicle_year"] is None


def test_integer_columns_read_the_same_however_many_values_were_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Integers are converted once per text and looked up after; a full memo starts over and changes no value."""
    column = ["21", "", "0033", "-7", "2A", "9" * 19, "-" + "9" * 18, " 14 ", "21", "1_000"]
    expected = [21, None, 33, -7, None, None, -(10**18 - 1), 14, 21, 1000]
    assert records.integers(column) == expected
    monkeypatch.setattr(records.integers, "limit", 4)
    for start in range(0, 3000, 7):
        many = [str(number) for number in range(start, start + 7)] + column
        assert records.integers(many) == list(range(start, start + 7)) + expected
    assert len(records.integers) <= len(set(many))


@pytest.mark.parametrize(
    ("issue", "improbable"),
    [
        ("07/01/2015", False),
        ("06/29/2015", True),
        ("04/02/2007", True),
        ("06/30/2018", False),
        ("07/01/2018", True),
        ("01/01/2027", True),
        ("03/14/2017", False),
    ],
)
def test_improbable_issue_dates_are_flagged_not_dropped(issue: str, improbable: bool) -> None:
    record = parse_record(fields(issue=issue), 2, LAYOUT_FY2017, WINDOW_FY2017)
    assert not isinstance(record, Rejected) and record["improbable_date"] is improbable


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (fields(extra=1), "field_count: expected 43 fields, got 44"),
        (fields()[:40], "field_count: expected 43 fields, got 40"),
        ([",".join(fields())], "field_count: expected 43 fields, got 1 (the whole record is one quoted field)"),
        (fields(summons="12A"), "summons_number: not an integer: '12A'"),
        (fields(summons=""), "summons_number: not an integer: ''"),
        (fields(summons="-5"), "summons_number: not an integer: '-5'"),
        (fields(issue="02/30/2017"), "issue_date: not a MM/DD/YYYY date: '02/30/2017'"),
        (fields(issue="2017-03-14"), "issue_date: not a MM/DD/YYYY date: '2017-03-14'"),
    ],
)
def test_three_things_reject_a_record(row: list[str], reason: str) -> None:
    assert parse_record(row, 12, LAYOUT_FY2017, WINDOW_FY2017) == Rejected(12, reason)


def test_the_51_column_layout_adds_coordinates_and_districts() -> None:
    layout = layout_for_header(FY2014_HEADER.split(","))
    row = fields() + ["40.7589", "-73.9851", "105", "", "11300", "1022731", "1010150001", "MN17"]
    record = parse_record(row, 2, layout, WINDOW_FY2017)
    assert not isinstance(record, Rejected)
    assert record["latitude"] == 40.7589 and record["longitude"] == -73.9851 and record["community_council"] is None
    assert record["nta"] == "MN17" and record["bbl"] == "1010150001"


# --- files ----------------------------------------------------------------------------------


def test_bom_crlf_quoting_and_blank_lines(tmp_path: Path) -> None:
    rows = [
        fields(1, street_name="BROADWAY, NE corner", violation_description='say "hi"'),
        fields(2, street_name="W 43rd St\r\nsecond line"),
        fields(3),
    ]
    path = tmp_path / "tricky.csv"
    path.write_bytes(b"\xef\xbb\xbf" + csv_text(rows).replace("\r\n3,", "\r\n\r\n\r\n3,").encode())
    records, rejects = read_file(path)
    assert rejects == []
    assert [(r["line"], r["summons_number"]) for r in records] == [(2, 1), (3, 2), (7, 3)]
    assert records[0]["street_name"] == "BROADWAY, NE corner" and records[0]["violation_description"] == 'say "hi"'
    assert records[1]["street_name"] == "W 43rd St\r\nsecond line"


def test_rejects_carry_their_starting_physical_line(tmp_path: Path) -> None:
    rows = [
        fields(1, street_name="two\nlines"),
        fields("X9"),
        fields(3, issue="31/12/2016"),
        fields(4)[:42],
        fields(5, street_name="three\nmore\nlines"),
        fields(6, extra=2),
        fields(7),
    ]
    path = tmp_path / "rejects.csv"
    path.write_text(csv_text(rows, newline="\n"))
    records, rejects = read_file(path)
    assert [r["summons_number"] for r in records] == [1, 5, 7]
    assert [(line, reason.split(":")[0]) for line, reason, _ in rejects] == [
        (4, "summons_number"),
        (5, "issue_date"),
        (6, "field_count"),
        (10, "field_count"),
    ]
    assert rejects[0][2] == ",".join(fields("X9"))


def test_bytes_that_are_not_utf8_keep_the_row(tmp_path: Path) -> None:
    text = csv_text([fields(1, street_name="CAFE_STREET"), fields(2, street_name="Ünter Straße")])
    path = tmp_path / "latin.csv"
    path.write_bytes(text.encode().replace(b"CAFE_STREET", "CAFÉ ST".encode("cp1252")))
    records, rejects = read_file(path)
    assert rejects == [] and [r["street_name"] for r in records] == ["CAFÉ ST", "Ünter Straße"]


def test_a_stray_quote_does_not_swallow_the_rows_after_it(tmp_path: Path) -> None:
    good = [",".join(fields(n)) for n in range(2, 6)]
    lines = [FY2017_HEADER, ",".join(fields(1)).replace("GZH7067,NY", '"GZH7067,NY', 1), *good]
    path = tmp_path / "stray.csv"
    path.write_text("\n".join(lines) + "\n")
    records, rejects = read_file(path)
    assert [r["summons_number"] for r in records] == [2, 3, 4, 5] and [r["line"] for r in records] == [3, 4, 5, 6]
    assert len(rejects) == 1 and rejects[0][0] == 2 and "read again" in rejects[0][1] and rejects[0][2] == lines[1]


def test_an_overlong_line_is_rejected_without_holding_it(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text(csv_text([fields(1), fields(2, street_name="x" * (MAX_LINE_BYTES + 10)), fields(3)]))
    records, rejects = read_file(path)
    assert [r["summons_number"] for r in records] == [1, 3]
    assert [(line, reason.split(":")[0]) for line, reason, _ in rejects] == [(3, "csv")]


def test_resuming_at_any_record_boundary_reads_the_same_rest(tmp_path: Path) -> None:
    rows = [fields(1), fields(2, street_name="a\r\nb"), fields("bad"), fields(4), fields(5, extra=1), fields(6)]
    path = tmp_path / "resume.csv"
    path.write_bytes(b"\xef\xbb\xbf" + csv_text(rows).replace("\r\n4,", "\r\n\r\n4,").encode())
    header, start = read_header(path)
    with RecordReader(path, start) as reader:
        everything = [(line, fields_) for line, fields_ in reader]
    with RecordReader(path, start) as reader:
        boundaries = [reader.position for _ in reader]
    for index, position in enumerate(boundaries):
        with RecordReader(path, position) as resumed:
            assert [(line, fields_) for line, fields_ in resumed] == everything[index + 1 :]
    assert boundaries[-1] == Position(path.stat().st_size, 10)


# --- fingerprints, checkpoints, batches ---------------------------------------------------------


def test_a_fingerprint_survives_a_copy_and_sees_a_change(tmp_path: Path) -> None:
    original = tmp_path / "a.csv"
    original.write_bytes(b"x" * (3 << 20))
    copy = tmp_path / "copy" / "b.csv"
    copy.parent.mkdir()
    shutil.copyfile(original, copy)
    os.utime(copy, (1, 1))
    assert fingerprint(copy) == fingerprint(original)
    with open(copy, "r+b") as handle:
        handle.seek((3 << 20) - 10)
        handle.write(b"y")
    assert fingerprint(copy) != fingerprint(original)
    with open(original, "ab") as handle:
        handle.write(b"\n")
    assert fingerprint(copy) != fingerprint(original) != fingerprint(copy)


def test_checkpoints_round_trip_and_refuse_garbage(tmp_path: Path) -> None:
    path = tmp_path / "a.ckpt"
    checkpoint = Checkpoint("f" * 64, "/data/a.csv", 50, 2017, Position(123, 9), 40, Counters(8, 7, 1, 1), False)
    save_checkpoint(path, checkpoint)
    assert load_checkpoint(path) == checkpoint and sorted(p.name for p in tmp_path.iterdir()) == ["a.ckpt"]
    assert load_checkpoint(tmp_path / "none.ckpt") is None
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="delete it"):
        load_checkpoint(path)


def test_a_checkpoint_keeps_its_region_grid_and_one_from_before_regions_still_resumes(tmp_path: Path) -> None:
    path = tmp_path / "a.ckpt"
    save_checkpoint(path, Checkpoint("f" * 64, "/data/a.csv", 50, 2017, Position(123, 9), 40, region_bytes=700))
    assert load_checkpoint(path).region_bytes == 700
    before_regions = orjson.loads(path.read_bytes())
    before_regions.update(version=1)
    del before_regions["region_bytes"]
    path.write_bytes(orjson.dumps(before_regions))
    assert load_checkpoint(path) == Checkpoint("f" * 64, "/data/a.csv", 50, 2017, Position(123, 9), 40)


def test_a_batch_is_keyed_by_file_and_first_line_and_decodes_to_its_records() -> None:
    typed, rejects = type_rows([5, 6, 9], [fields(n) for n in (5, 6, 9)], LAYOUT_FY2017, WINDOW_FY2017)
    key, value = encode_history_batch("f" * 64, typed.columns)
    assert not rejects and key == b"f" * 64 + b":5" and encode_history_batch("f" * 64, typed.columns) == (key, value)
    batch = orjson.loads(value)
    assert (batch["file"], batch["first_line"], batch["last_line"]) == ("f" * 64, 5, 9)
    source_file, records = decode_history_batch(value)
    assert source_file == "f" * 64 and records == [dict(zip(typed.columns, row)) for row in zip(*typed.columns.values())]
    assert [record["summons_number"] for record in records] == [5, 6, 9] and records[0]["house_number"] == ""


# --- the real samples -----------------------------------------------------------------------


def test_real_fy2017_sample_parses_every_row() -> None:
    records, rejects = read_file(shared_sample("pvi_fy2017_sample.csv"), DateWindow.for_fiscal_year(2017, date.today()))
    assert len(records) == 2099 and rejects == []
    assert all(r["violation_time"] for r in records)
    assert any("," in (r["violation_description"] or "") for r in records)
    assert {r["borough"] for r in records} == {"Manhattan", "Brooklyn", "Queens", "Bronx", "Staten Island", None}


def test_real_fy2018_sample_has_exactly_two_malformed_records() -> None:
    records, rejects = read_file(shared_sample("pvi_fy2018_sample.csv"), DateWindow.for_fiscal_year(2018, date.today()))
    assert len(records) == 1266
    assert [(line, reason) for line, reason, _ in rejects] == [
        (787, "field_count: expected 43 fields, got 1 (the whole record is one quoted field)"),
        (887, "field_count: expected 43 fields, got 1 (the whole record is one quoted field)"),
    ]
    assert rejects[0][2].startswith('"1404853388,MEG4076,') and rejects[1][2].startswith('"1405584907,HPB7516,')
    improbable_years = {r["issue_date"][:4] for r in records if r["improbable_date"]}
    assert {"2007", "2027"} <= improbable_years
    assert sum(r["violation_county"] is None and r["borough"] is None for r in records) == 27


def test_real_fy2014_sample_has_51_columns() -> None:
    records, rejects = read_file(shared_sample("pvi_fy2014_sample.csv"), DateWindow.for_fiscal_year(2014, date.today()))
    assert len(records) == 39 and rejects == []
    assert all("nta" in r and "latitude" in r for r in records) and records[0]["violation_time"] == "07:52"
