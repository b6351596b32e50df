"""Stream CSV records out of a file with the physical line each starts on and the byte offset after it.

Resuming a load means seeking to the byte offset where the last acknowledged batch
ended, so the reader must know byte positions; a text stream cannot tell them cheaply.
So the file is read in binary, one physical line (up to ``\\n``) at a time, each line is
decoded and handed to the :mod:`csv` module, which does all the RFC 4180 work (quoted
commas, doubled quotes, quoted newlines) exactly as over a text stream opened with
``newline=''``. The csv reader never reads ahead, so right after it returns a record
the binary file's ``tell()`` is where that record ends.

What no CSV parser can survive is kept from spreading:

* bytes that are not UTF-8 are decoded one by one as Latin-1 (``é`` from a Windows export
  stays ``é``); the rest of the line stays UTF-8 and the row is kept;
* a record longer than :data:`MAX_RECORD_BYTES` is cut where it passes the limit and
  rejected; the rest of an overlong line is skipped in pieces of :data:`MAX_LINE_BYTES`,
  so memory stays flat even on a file without newlines, and no field reaches
  ``csv.field_size_limit`` (a process-wide setting any library may change);
* a record the rules reject for its shape while it spans several lines (typically a stray
  quote that swallowed the lines after it) can be re-read from its second line, so the
  rows it swallowed are not lost (:meth:`RecordReader.reread_after_first_line`).
"""

from __future__ import annotations

import codecs
import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator

from csv_ingest.records import Reason, Rejected, field_count_reason

if TYPE_CHECKING:
    import _csv

UTF8_BOM = codecs.BOM_UTF8
MAX_LINE_BYTES = 1 << 20
# A city record is under 600 bytes. At 8 KiB, a batch of 50 records (the loader's default)
# stays under its 1 MB Kafka message even when every byte decodes to two.
MAX_RECORD_BYTES = 8 * 1024
MAX_RAW_REJECT_BYTES = 64 * 1024
DECODE_ERRORS = "csv_ingest.latin1"


def _latin1_fallback(error: UnicodeError) -> tuple[str, int]:
    """Decode the bytes UTF-8 could not as Latin-1: every byte is a character there."""
    assert isinstance(error, UnicodeDecodeError)
    return error.object[error.start : error.end].decode("latin-1"), error.end


codecs.register_error(DECODE_ERRORS, _latin1_fallback)


@dataclass(frozen=True, slots=True)
class Position:
    """Where reading resumes: a byte offset at a record boundary and the physical line found there."""

    offset: int
    line: int

    def __reduce__(self) -> tuple[type["Position"], tuple[int, int]]:
        # Workers hand positions over by the thousand; dataclasses' own unpickling is ten times slower.
        return Position, (self.offset, self.line)


def decode(raw: bytes) -> str:
    """UTF-8, with any byte that is not UTF-8 taken as Latin-1 instead of failing."""
    return raw.decode("utf-8", DECODE_ERRORS)


def read_header(path: Path) -> tuple[list[str], Position]:
    """The first record of ``path`` (a UTF-8 BOM ignored) and the position right after it.

    An empty file has no header: the list is empty.
    """
    with RecordReader(path, Position(0, 1)) as reader:
        for _line, fields in reader:
            return (fields if isinstance(fields, list) else []), reader.position
        return [], reader.position


class RecordReader:
    """Iterate ``(first_line, fields)`` from a position; ``fields`` is a :class:`Rejected` when csv gave up.

    Blank lines are skipped. After each record, :attr:`position` is where the next one
    starts and :attr:`last_line` the physical line the record ended on.
    """

    def __init__(self, path: Path, start: Position):
        self._handle: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()/__exit__
        self._restart(start)

    def __enter__(self) -> "RecordReader":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._handle.close()

    def _restart(self, start: Position) -> None:
        self._handle.seek(start.offset)
        if start.offset == 0 and self._handle.read(len(UTF8_BOM)) != UTF8_BOM:
            self._handle.seek(0)
        self._base = start.line - 1
        self._consumed = 0
        self._cut_at: int | None = None
        self._reader: _csv._reader = csv.reader(self._lines())
        self._record_start = self._handle.tell()

    def _lines(self) -> Iterator[str]:
        """Decoded physical lines; a line that would take its record past MAX_RECORD_BYTES ends the record instead.

        That line is skipped and csv gets the end of a record in its place: ``"\\n`` when
        the record began on an earlier line (csv is then inside a quoted field, since a
        newline outside quotes ends a record, and the quote closes it), else ``\\n``.
        """
        readline, offset = self._handle.readline, self._handle.tell()
        while True:
            record_bytes = offset - self._record_start
            raw = readline(MAX_LINE_BYTES)
            offset += len(raw)
            if not raw:
                return
            if record_bytes + len(raw) > MAX_RECORD_BYTES:
                self._cut_at = self._base + self._reader.line_num + 1
                while raw and not raw.endswith(b"\n"):
                    raw = readline(MAX_LINE_BYTES)
                    offset += len(raw)
                yield '"\n' if record_bytes else "\n"
                continue
            yield raw.decode("utf-8", DECODE_ERRORS)

    def __iter__(self) -> Iterator[tuple[int, list[str] | Rejected]]:
        while True:
            reader = self._reader
            try:
                yield from self._records(reader)
            except csv.Error as error:
                first = self._base + self._consumed + 1
                self._consumed = reader.line_num
                yield first, self._cut_reject(first) or Rejected(first, f"{Reason.CSV}: {error}")
                if reader is self._reader:
                    self._record_start = self._handle.tell()
                continue
            if reader is self._reader:
                return

    def _records(self, reader: _csv._reader) -> Iterator[tuple[int, list[str] | Rejected]]:
        """The hot loop: records of one csv reader until the file ends or the reader is replaced."""
        tell, base, consumed = self._handle.tell, self._base, self._consumed
        for fields in reader:
            first = base + consumed + 1
            consumed = self._consumed = reader.line_num
            if self._cut_at is not None:
                yield first, self._cut_reject(first)  # type: ignore[misc]
            elif fields:
                yield first, fields
            if reader is not self._reader:
                return
            self._record_start = tell()

    def _cut_reject(self, first: int) -> Rejected | None:
        if self._cut_at is None:
            return None
        cut_at, self._cut_at = self._cut_at, None
        return Rejected(first, f"{Reason.CSV}: record longer than {MAX_RECORD_BYTES} bytes (cut at line {cut_at})")

    @property
    def position(self) -> Position:
        """Where the next record starts (the byte offset and physical line)."""
        return Position(self._handle.tell(), self._base + self._consumed + 1)

    @property
    def last_line(self) -> int:
        """The physical line the last record ended on."""
        return self._base + self._consumed

    def raw_record(self) -> str:
        """The last record as it is in the file, without its line ending (cut at 64 KiB)."""
        end = self._handle.tell()
        size = min(end - self._record_start, MAX_RAW_REJECT_BYTES)
        raw = os.pread(self._handle.fileno(), size, self._record_start)
        return decode(raw).lstrip("\r\n").removesuffix("\n").removesuffix("\r")

    def first_line_of_record(self) -> str:
        """The first physical line of the last record, without its line ending."""
        raw = os.pread(self._handle.fileno(), MAX_RAW_REJECT_BYTES, self._record_start).lstrip(b"\r\n")
        return decode(raw.split(b"\n", 1)[0]).removesuffix("\r")

    def reread_after_first_line(self, first_line: int) -> None:
        """Go back to the second line of the last record: its lines are read again as records."""
        self._handle.seek(self._record_start)
        raw = self._handle.readline(MAX_LINE_BYTES)
        while raw and not raw.endswith(b"\n"):
            raw = self._handle.readline(MAX_LINE_BYTES)
        self._restart(Position(self._handle.tell(), first_line + 1))


def shaped_records(reader: RecordReader, width: int) -> Iterator[tuple[int, list[str], str] | tuple[Rejected, str]]:
    """``(line, fields, raw)`` for each record of ``reader`` with ``width`` fields; ``(Rejected, raw)`` for the others.

    A record rejected for its shape (wrong field count, or the csv module giving up) that
    ran over several physical lines is usually a stray quote that swallowed the lines
    after it: the reject keeps only its first line, and the lines after it are read
    again, so the good rows it swallowed are still loaded. The reader has moved on
    before anything is yielded, so its position is always where the next record starts.
    """
    for line, fields in reader:
        if isinstance(fields, Rejected):
            rejected = fields
        elif len(fields) == width:
            yield line, fields, reader.raw_record()
            continue
        else:
            rejected = Rejected(line, field_count_reason(fields, width))
        last_line = reader.last_line
        if last_line > line:
            raw = reader.first_line_of_record()
            reader.reread_after_first_line(line)
            yield Rejected(line, f"{rejected.reason} (ran on to line {last_line}; the lines after {line} are read again)"), raw
        else:
            yield rejected, reader.raw_record()
