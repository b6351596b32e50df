"""Size limits at DroneCop's two borders: a drone message and a CSV record.

Oversized input must end as a refusal with a reason, before it costs memory or time:
the contract checks the length before decoding a byte, and the CSV reader cuts a record
at :data:`MAX_RECORD_BYTES` whatever ``csv.field_size_limit`` is set to process-wide.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from csv_ingest.source import MAX_RECORD_BYTES
from tests.support.csv_files import csv_text, fields, read_file
from tests.support.hypothesis_profiles import PROFILE
from transforms.contract import MAX_MESSAGE_BYTES, DroneMessage, InvalidMessage, Reason, parse_message

VALID = orjson.dumps(
    {"message_id": "m-1", "drone_id": "d-1", "timestamp": "2026-11-28T17:00:00.123Z", "latitude": 40.7, "longitude": -74.0}
)


# --- the message contract ---------------------------------------------------------------------


@PROFILE
@given(st.binary(max_size=64), st.integers(1, 4 * MAX_MESSAGE_BYTES))
def test_any_message_over_the_limit_is_refused_as_oversize(prefix: bytes, excess: int) -> None:
    """Whatever the bytes — valid JSON, not UTF-8, not JSON — size is the reason: it is checked first."""
    for raw in (prefix + b"\xff" * (MAX_MESSAGE_BYTES + excess), VALID[:-1] + b" " * (MAX_MESSAGE_BYTES + excess) + b"}"):
        result = parse_message(raw)
        assert result == InvalidMessage(Reason.OVERSIZE, f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}")


def test_valid_json_padded_to_exactly_the_limit_is_accepted() -> None:
    raw = VALID[:-1] + b" " * (MAX_MESSAGE_BYTES - len(VALID)) + b"}"
    assert len(raw) == MAX_MESSAGE_BYTES and isinstance(parse_message(raw), DroneMessage)


# --- the CSV reader -----------------------------------------------------------------------------


@pytest.fixture(params=["default", "unlimited"])
def field_size_limit(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run with csv's default field limit and with the ``sys.maxsize`` some libraries set."""
    previous = csv.field_size_limit()
    if request.param == "unlimited":
        csv.field_size_limit(sys.maxsize)
    try:
        yield csv.field_size_limit()
    finally:
        csv.field_size_limit(previous)


def line_of(row: list[str]) -> bytes:
    return csv_text([row]).split("\r\n", 1)[1].encode()


def padded_row(summons: int, size: int) -> list[str]:
    """A valid row whose CSV line, CRLF included, is exactly ``size`` bytes."""
    row = fields(summons, street_name="")
    return fields(summons, street_name="x" * (size - len(line_of(row))))


@pytest.mark.parametrize("size", [MAX_RECORD_BYTES, MAX_RECORD_BYTES + 1])
def test_a_record_is_kept_up_to_the_limit_and_rejected_past_it(tmp_path: Path, field_size_limit: int, size: int) -> None:
    path = tmp_path / "edge.csv"
    path.write_text(csv_text([fields(1), padded_row(2, size), fields(3)]))
    assert len(line_of(padded_row(2, size))) == size
    records, rejects = read_file(path)
    if size <= MAX_RECORD_BYTES:
        assert [r["summons_number"] for r in records] == [1, 2, 3] and rejects == []
    else:
        assert [r["summons_number"] for r in records] == [1, 3]
        assert [(line, reason) for line, reason, _ in rejects] == [(3, f"csv: record longer than {MAX_RECORD_BYTES} bytes (cut at line 3)")]


def test_a_field_past_csvs_own_limit_is_our_reject_not_csvs(tmp_path: Path, field_size_limit: int) -> None:
    """A 200 KB field: the reject is the same whether csv's process-wide limit is 128 KiB or unlimited."""
    path = tmp_path / "field.csv"
    path.write_text(csv_text([fields(1), fields(2, violation_description="d" * 200_000), fields(3)]))
    records, rejects = read_file(path)
    assert [r["summons_number"] for r in records] == [1, 3]
    assert [reason for _, reason, _ in rejects] == [f"csv: record longer than {MAX_RECORD_BYTES} bytes (cut at line 3)"]
    assert len(rejects[0][2].encode()) <= 64 * 1024


def test_a_record_of_many_multi_line_fields_is_cut(tmp_path: Path, field_size_limit: int) -> None:
    """Quoted fields with newlines, each line and each field short, 1 MB together: cut, and the next rows load.

    Before the limit such a record reached the loader whole and stopped it: its batch was
    over the 1 MB Kafka message limit whatever ``--batch_lines`` was.
    """
    multi_line = "m" * 2000 + "\n" + "m" * 2000
    columns = {
        name: multi_line
        for name in (
            "plate_id",
            "street_name",
            "house_number",
            "intersecting_street",
            "law_section",
            "sub_division",
            "violation_legal_code",
            "vehicle_color",
        )
    }
    huge = fields(2, **columns)
    path = tmp_path / "many.csv"
    path.write_text(csv_text([fields(1), huge, *[fields(n) for n in range(3, 6)]], newline="\n"))
    records, rejects = read_file(path)
    assert [r["summons_number"] for r in records] == [1, 3, 4, 5]
    assert rejects[0][:2] == (
        3,
        f"csv: record longer than {MAX_RECORD_BYTES} bytes (cut at line 5) (ran on to line 5; the lines after 3 are read again)",
    )
    assert all(line > 3 and reason.startswith(("csv:", "field_count:")) for line, reason, _ in rejects[1:])


def test_a_stray_quote_is_cut_at_the_record_limit(tmp_path: Path) -> None:
    """A quote that never closes swallows lines only up to the limit; every row after it still loads."""
    rows = [",".join(fields(n)) for n in range(1, 200)]
    rows[0] = rows[0].replace("GZH7067", '"GZH7067', 1)
    path = tmp_path / "stray.csv"
    path.write_text(csv_text([]) + "\n".join(rows) + "\n")
    records, rejects = read_file(path)
    assert [r["summons_number"] for r in records] == list(range(2, 200))
    assert len(rejects) == 1 and rejects[0][1].startswith(f"csv: record longer than {MAX_RECORD_BYTES} bytes")
