"""A CSV file as batches of typed records: fast over regular stretches, exact everywhere.

Most of a city export is regular: valid UTF-8, one record per line, no line near the
record size limit. Such a stretch is read a chunk of :data:`CHUNK_BYTES` at a time,
decoded at once, cut into lines and handed to one :mod:`csv` reader, which gives a
batch's records in one call; byte positions come from the chunk's line lengths.
Anything else — a byte that is not UTF-8, a lone ``\\r`` or another character Python
counts as a line break, an overlong line, a record over several lines, an error from
the csv module — is read by :class:`~csv_ingest.source.RecordReader`, line by line with
every rule of :mod:`csv_ingest.source`, from the record where the irregularity begins to
the end of its chunk; then the fast reading resumes. Both feed the csv module the same
lines, so they give the same records, rejects, line numbers and positions.

Batches never cross a *region* boundary. Regions sit on a grid fixed in the file: one
starts at the first line that begins at or after each multiple of :data:`REGION_BYTES`,
and holds the records that start on its lines. So a batch is "the next ``size`` valid
records of the region", whoever reads the region and wherever a run resumed: the same
lines always make the same batches, and regions can be read by different processes
(:mod:`csv_ingest.workers`) and still give what one process reading them in turn gives.
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass, field
from itertools import accumulate, chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator

from csv_ingest.records import DateWindow, HistoryRecord, Layout, Rejected, TypedRows, type_rows
from csv_ingest.source import MAX_RECORD_BYTES, UTF8_BOM, Position, RecordReader, shaped_records

if TYPE_CHECKING:
    import _csv

CHUNK_BYTES = 1 << 18
# About 5,000 city records: the unit of work of a parsing worker. One batch in a hundred
# (of 50 records) ends short at a region's end.
REGION_BYTES = 1 << 20
NEWLINE_SCAN_BYTES = 1 << 20


@dataclass(slots=True)
class _Chunk:
    """A regular stretch of the file: its decoded lines and the byte offset after each."""

    first_index: int
    start: int
    lines: list[str]
    ends: list[int]


@dataclass(slots=True)
class Pull:
    """Records read in one go: the line each starts on, their fields and raw text, and shape rejects met on the way."""

    lines: list[int] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    raw: Callable[[int], str] = lambda index: ""
    shape_rejects: list[tuple[Rejected, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Batch:
    """Up to ``size`` valid records and where the next batch starts."""

    rows: TypedRows
    end: Position


OnReject = Callable[[Rejected, str], None]


@dataclass(frozen=True, slots=True)
class Region:
    """The records that start on lines ``start.line`` to ``stop.line - 1`` (``start`` may move on: see :func:`regions`)."""

    start: Position
    stop: Position


def regions(path: Path, start: Position, region_bytes: int = REGION_BYTES) -> Iterator[Region]:
    """The regions from ``start`` (a record's start) to the file's end, each starting where the one before stops.

    A region stops at the first line that begins at or after the next multiple of
    ``region_bytes``; its line number is counted from the newlines in between. That
    line is where the next record starts unless a record of this region runs over it
    (a quoted line break, a cut overlong line): then the next region really starts
    where that record ends, and a region whose stop it passed holds no record at all.
    """
    with open(path, "rb") as handle:
        size = handle.seek(0, io.SEEK_END)
        handle.seek(start.offset)
        here = start
        while here.offset < size:
            stop = _next_region_stop(handle, here, size, region_bytes)
            yield Region(here, stop)
            here = stop


def _next_region_stop(handle: BinaryIO, here: Position, size: int, region_bytes: int) -> Position:
    """Where the region starting at ``here`` stops; ``handle`` is at ``here`` and is left at the stop."""
    grid = (here.offset // region_bytes + 1) * region_bytes
    newlines = handle.read(max(0, min(grid, size) - 1 - here.offset)).count(b"\n")
    offset = min(grid, size) - 1
    while offset < size:
        piece = handle.read(NEWLINE_SCAN_BYTES)
        found = piece.find(b"\n")
        if found >= 0:
            handle.seek(offset + found + 1)
            return Position(offset + found + 1, here.line + newlines + 1)
        offset += len(piece)
    # The file's last line has no line ending: it is one more line, read up to the end.
    return Position(size, here.line + newlines + 1)


def regular_lines(body: bytes) -> tuple[list[str], list[int]] | None:
    """The lines of ``body`` (line endings kept) and their byte lengths, or None when it needs the exact reader."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.splitlines(keepends=True)
    if len(lines) != body.count(b"\n") + (not body.endswith(b"\n")):
        return None
    # An ASCII line has as many bytes as characters; counting them again is a tenth of the reading.
    lengths = list(map(len, lines if body.isascii() else body.splitlines(keepends=True)))
    if max(lengths, default=0) > MAX_RECORD_BYTES:
        return None
    return lines, lengths


class BatchReader:
    """Records ``count`` at a time from a position to a stop: see the module's docstring for the two ways of reading.

    The records read are those that start before ``stop`` (by default, the file's end);
    the last may run past it. Nothing is read from a start at or past the stop.
    """

    def __init__(self, path: Path, start: Position, width: int, chunk_bytes: int = CHUNK_BYTES, stop: Position | None = None):
        self._path = path
        self._width = width
        self._chunk_bytes = chunk_bytes
        self._stop = stop or Position(sys.maxsize, sys.maxsize)
        self._handle: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()/__exit__
        self._exact: RecordReader | None = None
        self._exact_records: Iterator[tuple[int, list[str], str] | tuple[Rejected, str]] = iter(())
        self._exact_until = 0
        self.finished = False
        self._read_fast_from(start)

    def __enter__(self) -> "BatchReader":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._handle.close()
        if self._exact is not None:
            self._exact.close()

    @property
    def position(self) -> Position:
        """Where the next record starts."""
        if self._exact is not None:
            return self._exact.position
        index = self._csv.line_num
        return Position(self._offset_after(index), self._base + index + 1)

    def take(self, count: int) -> Pull:
        """Up to ``count`` records (maybe fewer, even before the stop: ask again until :attr:`finished`)."""
        if self._exact is not None:
            return self._take_exact(count)
        return self._take_fast(count)

    def _read_fast_from(self, start: Position) -> None:
        offset = start.offset
        self._handle.seek(offset)
        if offset == 0 and self._handle.read(len(UTF8_BOM)) == UTF8_BOM:
            offset = len(UTF8_BOM)
        self._handle.seek(offset)
        self._next_offset = offset
        self._origin = offset
        self._carry = b""
        self._base = start.line - 1
        self._chunks: list[_Chunk] = []
        self._irregular_end: int | None = None
        self._feed_ended = False
        self._csv: _csv._reader = csv.reader(chain.from_iterable(self._regular_chunks()))

    def _regular_chunks(self) -> Iterator[list[str]]:
        """Lines of the regular chunks from the current offset on; stops at the file's end or an irregular chunk."""
        first_index = 0
        while True:
            # Fast reading ends at the stop: a record running over it is left to the exact reader.
            wanted = min(self._chunk_bytes, self._stop.offset - self._next_offset - len(self._carry))
            read = self._handle.read(wanted) if wanted > 0 else b""
            raw, at_end = self._carry + read, len(read) < self._chunk_bytes
            if not raw:
                self._feed_ended = True
                return
            cut = len(raw) if at_end else raw.rfind(b"\n") + 1
            body, self._carry = raw[:cut], raw[cut:]
            regular = regular_lines(body) if body else None
            if regular is None:
                self._irregular_end = self._next_offset + len(raw)
                self._feed_ended = True
                return
            lines, lengths = regular
            start = self._next_offset
            self._chunks.append(_Chunk(first_index, start, lines, list(accumulate(lengths, initial=start))[1:]))
            self._next_offset += len(body)
            first_index += len(lines)
            yield lines

    def _take_fast(self, count: int) -> Pull:
        reader = self._csv
        before = reader.line_num
        self._chunks = self._chunks[-1:]
        try:
            rows = list(islice(reader, count))
        except csv.Error:
            return self._switch_to_exact(before, count)
        if reader.line_num - before == len(rows) == count and not self._feed_ended:
            return self._single_line_pull(before, rows)
        # A record that took several lines, or was cut short where the fast reading stopped,
        # holds a line ending in a field: from there on, the exact reader takes over.
        spanning = next((index for index, row in enumerate(rows) if any("\n" in value for value in row)), None)
        if spanning is not None or reader.line_num - before != len(rows):
            keep = spanning or 0
            pull = self._single_line_pull(before, rows[:keep])
            self._switch_to_exact(before + keep, 0)
            return pull
        pull = self._single_line_pull(before, rows)
        if len(rows) == count:
            return pull
        if self._irregular_end is None:
            self.finished = True
        else:
            self._switch_to_exact(reader.line_num, 0)
        return pull

    def _single_line_pull(self, before: int, rows: list[list[str]]) -> Pull:
        """Rows that each took one line, from csv line ``before + 1`` on; blank lines dropped."""
        first = self._base + before + 1
        lines = list(range(first, first + len(rows)))
        if [] in rows:
            kept = [(line, row) for line, row in zip(lines, rows) if row]
            lines, rows = [line for line, _ in kept], [row for _, row in kept]
        base, line_text = self._base, self._line_text
        return Pull(lines, rows, lambda index: line_text(lines[index] - base))

    def _line_text(self, index: int) -> str:
        """The text of csv line ``index`` (1-based) without its line ending."""
        for chunk in self._chunks:
            if chunk.first_index < index <= chunk.first_index + len(chunk.lines):
                return chunk.lines[index - chunk.first_index - 1].removesuffix("\n").removesuffix("\r")
        raise LookupError(f"line {self._base + index} is no longer held")

    def _offset_after(self, index: int) -> int:
        """The byte offset after csv line ``index`` (0: where fast reading began)."""
        for chunk in reversed(self._chunks):
            if chunk.first_index < index <= chunk.first_index + len(chunk.lines):
                return chunk.ends[index - chunk.first_index - 1]
            if index == chunk.first_index:
                return chunk.start
        if index == 0:
            return self._origin
        raise LookupError(f"line {self._base + index} is no longer held")

    def _switch_to_exact(self, index: int, count: int) -> Pull:
        """Read exactly from after csv line ``index`` to the end of the trouble; then ``count`` records of it."""
        start = Position(self._offset_after(index), self._base + index + 1)
        self._exact_until = max(self._irregular_end or 0, self._chunks[-1].ends[-1] if self._chunks else 0)
        self._exact = RecordReader(self._path, start)
        self._exact_records = shaped_records(self._exact, self._width)
        return self._take_exact(count) if count else Pull()

    def _take_exact(self, count: int) -> Pull:
        assert self._exact is not None
        pull, raws = Pull(), []
        pull.raw = raws.__getitem__
        while len(pull.rows) < count and self._exact.position.offset < self._exact_until:
            item = next(self._exact_records, None)
            if item is None:
                self.finished = True
                break
            if len(item) == 3:
                line, fields, raw = item
                pull.lines.append(line)
                pull.rows.append(fields)
                raws.append(raw)
            else:
                pull.shape_rejects.append(item)  # type: ignore[arg-type]
        if not self.finished and self._exact.position.offset >= self._exact_until:
            resume = self._exact.position
            self._exact.close()
            self._exact = None
            self._read_fast_from(resume)
        return pull


def read_batches(
    path: Path,
    start: Position,
    layout: Layout,
    window: DateWindow,
    size: int,
    on_reject: OnReject,
    chunk_bytes: int = CHUNK_BYTES,
    region_bytes: int = REGION_BYTES,
) -> Iterator[Batch]:
    """Batches of ``size`` valid records from ``start`` to the end of the file, region after region.

    A region's last batch may hold fewer, or none but the rejects after its last record.
    Each reject goes to ``on_reject(rejected, raw)`` in line order as soon as it is met,
    so memory holds no more than a batch however many records are rejected. Reading
    again from any batch's end gives the same batches after it.
    """
    here = start
    for region in regions(path, start, region_bytes):
        for batch in region_batches(path, Region(here, region.stop), layout, window, size, on_reject, chunk_bytes):
            yield batch
            here = batch.end


def region_batches(
    path: Path, region: Region, layout: Layout, window: DateWindow, size: int, on_reject: OnReject, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[Batch]:
    """The batches of one region; a batch that holds no record still moves past rejects or blank lines."""
    with BatchReader(path, region.start, layout.width, chunk_bytes, region.stop) as reader:
        end = region.start
        while not reader.finished:
            parts: list[TypedRows] = []
            held = 0
            while held < size and not reader.finished:
                pull = reader.take(size - held)
                typed, rejected = type_rows(pull.lines, pull.rows, layout, window)
                rejects = pull.shape_rejects + [(reason, pull.raw(index)) for index, reason in rejected]
                for reason, raw in sorted(rejects, key=lambda pair: pair[0].line):
                    on_reject(reason, raw)
                parts.append(typed)
                held += len(typed)
            if held or reader.position != end:
                end = reader.position
                yield Batch(TypedRows.joined(parts), end)


def read_records(path: Path, start: Position, layout: Layout, window: DateWindow, on_reject: OnReject) -> Iterator[HistoryRecord]:
    """The valid records from ``start`` as dicts, each reject to ``on_reject(rejected, raw)``: the loader's reading, record by record."""
    for batch in read_batches(path, start, layout, window, 64, on_reject):
        yield from batch.rows.records()
