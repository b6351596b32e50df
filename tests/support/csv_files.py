"""The city's parking-ticket CSV files as the loader's tests make and read them: rows in the FY2017 layout, files
written from them (one with rejects in it), the real samples, and the loader's command line, checkpoint and rejects."""

from __future__ import annotations

import csv
import io
import sys
from datetime import date
from pathlib import Path

import orjson
import pytest

from bench.ingest import FY2017_HEADER, write_synthetic_csv  # FY2017_HEADER: the city's own header line, spaces and all
from csv_ingest.batches import read_records
from csv_ingest.records import FY2017_COLUMNS, DateWindow, layout_for_header
from csv_ingest.source import read_header
from transforms.kafka_settings import KafkaSettings

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
WINDOW_FY2017 = DateWindow.for_fiscal_year(2017, date(2026, 1, 1))
LAYOUT_FY2017 = layout_for_header(FY2017_HEADER.split(","))


def fields(
    summons: object = 5092469481, issue: str = "03/14/2017", time: str = "0845A", county: str = "NY", extra: int = 0, **columns: str
) -> list[str]:
    """A FY2017-layout row as the city writes it; ``columns`` set any other column by its snake_case name."""
    values = dict.fromkeys(FY2017_COLUMNS, "")
    values.update(
        summons_number=str(summons),
        plate_id="GZH7067",
        registration_state="NY",
        plate_type="PAS",
        issue_date=issue,
        violation_code="21",
        street_code1="34310",
        street_code2="0",
        street_code3="",
        violation_precinct="14",
        issuer_precinct="014",
        violation_time=time,
        violation_county=county,
        street_name="W 43rd St",
        vehicle_year="2015",
        feet_from_curb="0",
    )
    values.update(columns)
    return list(values.values()) + [""] * extra


def csv_text(rows: list[list[str]], header: str = FY2017_HEADER, newline: str = "\r\n") -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=newline).writerows([header.split(","), *rows])
    return buffer.getvalue()


def read_file(path: Path, window: DateWindow = WINDOW_FY2017) -> tuple[list[dict], list[tuple[int, str, str]]]:
    """Every valid record and every reject ``(line, reason, raw)`` of a file, as the loader reads it."""
    header, start = read_header(path)
    layout = layout_for_header(header)
    rejects: list[tuple[int, str, str]] = []
    records = list(read_records(path, start, layout, window, lambda rejected, raw: rejects.append((rejected.line, rejected.reason, raw))))
    return records, rejects


def shared_sample(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is not here (real samples live in ../shared/data)")
    return path


def write_with_rejects(path: Path, rows: int, every: int = 997) -> tuple[set[int], list[int]]:
    """A synthetic FY2017 file where every ``every``-th row has a bad summons number.

    Returns the valid summons numbers and the physical lines of the bad rows.
    """
    summons = write_synthetic_csv(path, rows)
    with open(path, "rb") as handle:
        lines = handle.readlines()
    bad_lines = list(range(2, rows + 2, every))
    for line in bad_lines:
        lines[line - 1] = b"X" + lines[line - 1]
    path.write_bytes(b"".join(lines))
    bad = {summons[line - 2] for line in bad_lines}
    return {number for number in summons if number not in bad}, bad_lines


def loader(path: Path, settings: KafkaSettings, topic: str, *flags: str) -> list[str]:
    return [sys.executable, "-m", "csv_ingest", str(path), f"--bootstrap_servers={settings.bootstrap_servers}", f"--topic={topic}", *flags]


def checkpoint_line(path: Path) -> int:
    try:
        return orjson.loads(path.read_bytes())["position"]["line"]
    except (FileNotFoundError, orjson.JSONDecodeError):
        return 0


def rejects_of(path: Path) -> list[tuple[int, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "reason", "raw"]
    return [(int(line), reason) for line, reason, _raw in rows[1:]]
