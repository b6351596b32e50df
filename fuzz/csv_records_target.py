"""atheris target: the CSV reader and record rules on an arbitrary file body.

The city's exports are the other border: each input is the body of a FY2017-layout file
(after a valid header), read exactly as the loader reads it. A finding is any
exception, a reject whose reason is not one of :class:`csv_ingest.records.Reason`, or
a kept record that is not typed as the loader sends it. libFuzzer's own ``-timeout``
turns a reader that stops making progress into a finding too.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import date
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from csv_ingest import records
    from csv_ingest.batches import read_records
    from csv_ingest.records import FY2017_COLUMNS, DateWindow, HistoryRecord, Rejected, layout_for_header
    from csv_ingest.source import Position

HEADER = (",".join(FY2017_COLUMNS) + "\r\n").encode()
LAYOUT = layout_for_header(list(FY2017_COLUMNS))
WINDOW = DateWindow.for_fiscal_year(2017, date(2026, 1, 1))
REASONS = frozenset(value for name, value in vars(records.Reason).items() if name.isupper())


class BrokenPromise(AssertionError):
    """The reader or the rules produced something they promise never to."""


def scratch_file() -> Path:
    """Where each input is written: a memfd on Linux, so a run leaves nothing behind; else the temp folder."""
    if hasattr(os, "memfd_create"):
        return Path(f"/proc/self/fd/{os.memfd_create('dronecop-fuzz-body')}")
    return Path(tempfile.gettempdir()) / f"dronecop-fuzz-{os.getpid()}.csv"


SCRATCH = scratch_file()


def check_record(record: HistoryRecord) -> None:
    if not isinstance(record["summons_number"], int) or len(record) != len(LAYOUT.record_keys):
        raise BrokenPromise(f"untyped record at line {record.get('line')}")


def check_reject(rejected: Rejected, _raw: str) -> None:
    if rejected.reason.split(":")[0] not in REASONS:
        raise BrokenPromise(f"reject without a known reason: {rejected.reason[:120]!r}")


def test_one_input(data: bytes) -> None:
    """One libFuzzer input: the body after the header, read record by record."""
    SCRATCH.write_bytes(HEADER + data)
    for record in read_records(SCRATCH, Position(len(HEADER), 2), LAYOUT, WINDOW, check_reject):
        check_record(record)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
