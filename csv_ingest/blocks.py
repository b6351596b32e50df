"""Read a CSV file a MiB at a time: plain lines typed together, every other line through the csv module.

Reading, checking and typing record by record in Python cost more than sending them, so
the loader reads blocks of whole lines and splits each into:

* plain lines — no quote, backslash or control character (a ``\\r`` only right before
  ``\\n``), valid UTF-8, not blank, no longer than a record may be. Such a line
  is one record whose fields are exactly its comma-separated pieces, whatever parser
  reads it, so Arrow parses them all at once and :mod:`csv_ingest.record_blocks` types
  them column by column;
* every other line: the csv module reads the record that starts there
  (:mod:`csv_ingest.source`), with everything that path knows — quoted commas and
  newlines, bytes that are not UTF-8, overlong records, stray quotes that swallow the lines
  after them. A record may run past the block; the next block starts where it ended.

A block never cuts a record: it ends after its last newline, or after a record the csv
module read past it. Both paths give the same records, rejects and physical line numbers
(the tests compare them on every quirk), so where a block starts — which depends on
where a resumed load picked up — changes nothing that is sent.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Generic, Iterator, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from csv_ingest.record_blocks import BlockTyper, Cells, written
from csv_ingest.records import DateWindow, Layout, Rejected, parse_record, row_json
from csv_ingest.source import MAX_RECORD_BYTES, Position, RecordReader, check_record, decode

BLOCK_BYTES = 1 << 20
NEWLINE, CARRIAGE_RETURN, QUOTE, BACKSLASH, FIRST_PRINTABLE = 10, 13, 34, 92, 32
T = TypeVar("T")


@dataclass(frozen=True)
class Rows:
    """The valid records of a stretch of the file, in file order, as JSON, and the rejects among them.

    Row ``i`` is ``json[starts[i]:starts[i + 1]]``, its JSON array followed by a comma;
    reading resumes after it at byte ``end_offsets[i]``, line ``end_lines[i]``. Each reject
    comes with how many of the rows precede it and its raw text.
    """

    json: memoryview
    starts: np.ndarray
    lines: np.ndarray
    end_offsets: np.ndarray
    end_lines: np.ndarray
    rejects: list[tuple[int, Rejected, str]]
    end: Position

    def __len__(self) -> int:
        return len(self.lines)


@dataclass(frozen=True)
class _LineScan:
    """Where each line of a block starts and stops, and which lines are plain or must go to the csv module."""

    starts: np.ndarray
    stops: np.ndarray
    plain: np.ndarray
    special: np.ndarray

    @property
    def count(self) -> int:
        return len(self.stops)


@dataclass
class _Found:
    """Records and rejects of a block that did not come out of Arrow, in any order."""

    records: list[tuple[int, bytes, int, int]] = field(default_factory=list)
    rejects: list[tuple[Rejected, str]] = field(default_factory=list)

    def reject(self, rejected: Rejected, raw: str) -> None:
        self.rejects.append((rejected, raw))

    def rows(self, json: pa.StringArray, lines: np.ndarray, end_offsets: np.ndarray, end_lines: np.ndarray,
             end: Position) -> Rows:  # fmt: skip
        """Everything found, merged with Arrow's rows in line order."""
        if self.records:
            more_lines, more_json, more_offsets, more_end_lines = zip(*self.records)
            json = pa.concat_arrays([json, pa.array([row.decode() + "," for row in more_json], pa.string())])
            lines = np.concatenate((lines, np.array(more_lines, np.int64)))
            end_offsets = np.concatenate((end_offsets, np.array(more_offsets, np.int64)))
            end_lines = np.concatenate((end_lines, np.array(more_end_lines, np.int64)))
            order = np.argsort(lines, kind="stable")
            json, lines, end_offsets, end_lines = json.take(order), lines[order], end_offsets[order], end_lines[order]
        self.rejects.sort(key=lambda found: found[0].line)
        before = np.searchsorted(lines, [rejected.line for rejected, _ in self.rejects]).tolist()
        rejects = [(count, rejected, raw) for count, (rejected, raw) in zip(before, self.rejects)]
        buffer, starts = _json_buffer(json)
        return Rows(buffer, starts, lines, end_offsets, end_lines, rejects, end)


@dataclass(frozen=True)
class _Parsed:
    """A block after the first stage: its lines sorted out, the csv module's records read, the plain lines parsed.

    ``plain`` are the indices of the lines Arrow was given, ``skipped`` the positions in
    ``plain`` of those it skipped for their field count, ``text_cells`` the cells of the
    columns that stay text.
    """

    start: Position
    end: Position
    data: bytes
    scan: _LineScan | None
    plain: np.ndarray
    skipped: list[int]
    table: pa.Table | None
    text_cells: dict[str, pa.Array]
    found: _Found


class BlockReader:
    """Iterate :class:`Rows` block by block from a position; :attr:`position` is where the next block starts.

    Two threads work ahead of the consumer, a block each: one reads, sorts out and parses
    lines and makes their text cells, the other types the rest and writes the JSON (the
    split that gives both about the same work). Arrow and numpy release the GIL, so both
    stages and the consumer's sending overlap on a machine with two cores; a third stage
    measured slower, costing more in handing blocks over than it gained.
    """

    def __init__(self, path: Path, start: Position, layout: Layout, window: DateWindow):
        self._handle: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()/__exit__
        self._records = RecordReader(path, start)
        self._typer = BlockTyper(layout, window)
        self._layout = layout
        self._window = window
        self._read_options = pa_csv.ReadOptions(column_names=list(layout.columns), use_threads=False,
                                                block_size=BLOCK_BYTES + 1)  # fmt: skip
        self._convert_options = pa_csv.ConvertOptions(column_types=dict.fromkeys(layout.columns, pa.string()),
                                                      strings_can_be_null=True, null_values=[""])  # fmt: skip
        self.position = start
        self._stages: list[_Ahead[Any]] = []

    def __enter__(self) -> "BlockReader":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the threads working ahead, then close the file."""
        self._stop_stages()
        self._handle.close()
        self._records.close()

    def __iter__(self) -> Iterator[Rows]:
        parsed = _Ahead(self._parsed_blocks(self.position), "csv_ingest-parse")
        rows = _Ahead((self._rows(block, self._cells(block)) for block in parsed), "csv_ingest-write")
        self._stages = [rows, parsed]  # downstream first: each stops after the item it is making
        try:
            for block_rows in rows:
                self.position = block_rows.end
                yield block_rows
        finally:
            self._stop_stages()

    def _stop_stages(self) -> None:
        for stage in self._stages:
            stage.close()
        self._stages = []

    def _parsed_blocks(self, start: Position) -> Iterator[_Parsed]:
        while data := os.pread(self._handle.fileno(), BLOCK_BYTES, start.offset):
            block = self._parsed(data, start)
            start = block.end
            yield block

    def _parsed(self, data: bytes, start: Position) -> _Parsed:
        """The whole lines of ``data``, read at ``start``: special ones read by the csv module, plain ones parsed."""
        found = _Found()
        cut = len(data) if len(data) < BLOCK_BYTES else data.rfind(b"\n") + 1
        if cut == 0:  # one line longer than a block: the csv module reads it, or rejects it as overlong
            end = self._through_csv_module(start, found)
            return _Parsed(start, end, b"", None, np.zeros(0, np.int64), [], None, {}, found)
        data = data[:cut]
        scan = _scan_lines(data)
        plain, end = self._csv_module_lines(scan, start, found)
        lines = np.flatnonzero(plain)
        if not lines.size:
            return _Parsed(start, end, data, scan, lines, [], None, {}, found)
        skipped: list[int] = []
        parse_options = pa_csv.ParseOptions(quote_char=False, invalid_row_handler=_skip_noting(skipped))
        table = pa_csv.read_csv(pa.py_buffer(_gather(data, scan.starts, lines)), read_options=self._read_options,
                                parse_options=parse_options, convert_options=self._convert_options)  # fmt: skip
        return _Parsed(start, end, data, scan, lines, skipped, table, self._typer.text_cells(table), found)

    def _csv_module_lines(self, scan: _LineScan, start: Position, found: _Found) -> tuple[np.ndarray, Position]:
        """Read the records at special lines with the csv module; the plain lines it did not read, and the block's end."""
        plain = scan.plain.copy()
        end = Position(start.offset + int(scan.starts[-1]), start.line + scan.count)
        next_line = 0
        for index in np.flatnonzero(scan.special).tolist():
            if index < next_line:
                continue
            after = self._through_csv_module(Position(start.offset + int(scan.starts[index]), start.line + index), found)
            next_line = after.line - start.line
            plain[index:next_line] = False
            if after.offset >= end.offset:
                return plain, max(end, after, key=lambda position: position.offset)
        return plain, end

    def _through_csv_module(self, at: Position, found: _Found) -> Position:
        """Read the record at ``at`` with the csv module; where reading goes on after it."""
        reader = self._records
        reader.seek(at)
        first = next(iter(reader), None)  # None: only blank lines were left
        if first is not None:
            line, fields = first
            record = check_record(reader, line, fields, self._layout, self._window, found.reject)
            if record is not None:
                found.records.append((line, row_json(record), reader.position.offset, reader.position.line))
        return reader.position

    def _cells(self, block: _Parsed) -> Cells | None:
        """The parsed lines typed together (None when the block had no plain line)."""
        if block.table is None:
            return None
        return self._typer.cells(block.table, block.text_cells, block.start.line + np.delete(block.plain, block.skipped))

    def _rows(self, block: _Parsed, cells: Cells | None) -> Rows:
        """The typed lines' JSON, merged with the rows the block rules left to the scalar rules, which go one by one.

        A plain line with the wrong number of fields was skipped by Arrow: the scalar rules reject it.
        """
        found, start, scan = block.found, block.start, block.scan
        if cells is None or scan is None:
            return found.rows(pa.array([], pa.string()), *(np.zeros(0, np.int64),) * 3, block.end)
        parsed = np.delete(block.plain, block.skipped)
        for index in np.concatenate((block.plain[block.skipped], parsed[cells.scalar])).tolist():
            self._scalar_line(block, scan, index)
        kept = parsed[~cells.scalar]
        lines = start.line + kept
        json = written(cells)
        if cells.scalar.any():
            json = json.filter(pa.array(~cells.scalar))
        return found.rows(json, lines, start.offset + scan.starts[kept + 1], lines + 1, block.end)

    def _scalar_line(self, block: _Parsed, scan: _LineScan, index: int) -> None:
        """One plain line through :func:`parse_record`: its fields are its comma-separated pieces."""
        start = block.start
        text = decode(block.data[scan.starts[index] : scan.stops[index]]).removesuffix("\r")
        line = start.line + index
        result = parse_record(text.split(","), line, self._layout, self._window)
        if isinstance(result, Rejected):
            block.found.reject(result, text)
        else:
            block.found.records.append((line, row_json(result), start.offset + int(scan.starts[index + 1]), line + 1))


class _Ahead(Generic[T]):
    """Runs an iterator in a thread, one item ahead of whoever iterates this; its errors are raised here."""

    _END = object()

    def __init__(self, items: Iterator[T], name: str):
        self._queue: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), name=name, daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[T]:
        while True:
            ok, item = self._queue.get()
            if not ok:
                raise item
            if item is self._END:
                return
            yield item

    def close(self) -> None:
        """Stop working ahead; returns once the thread has let go of the item it was making."""
        self._stopped.set()
        self._thread.join()

    def _run(self, items: Iterator[T]) -> None:
        try:
            for item in items:
                if not self._put((True, item)):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put((False, error))
            return
        self._put((True, self._END))

    def _put(self, entry: tuple[bool, Any]) -> bool:
        while not self._stopped.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


def _skip_noting(skipped: list[int]) -> Callable[[Any], str]:
    """An Arrow invalid-row handler that notes the row's index (single-threaded parsing numbers rows) and skips it."""

    def handle(row: Any) -> str:
        skipped.append(row.number - 1)
        return "skip"

    return handle


def _scan_lines(data: bytes) -> _LineScan:
    """Split a block of whole lines (the last one may lack its newline at the end of the file)."""
    bytes_ = np.frombuffer(data, np.uint8)
    stops = np.flatnonzero(bytes_ == NEWLINE)
    if data[-1] != NEWLINE:
        stops = np.append(stops, len(data))
    starts = np.minimum(np.concatenate(([0], stops + 1)), len(data))
    lengths = stops - starts[:-1]
    special = np.zeros(len(stops), bool)
    special[np.searchsorted(stops, _odd_bytes(bytes_))] = True
    special |= np.diff(starts) > MAX_RECORD_BYTES  # the csv module cuts such a record and rejects it
    special |= _not_utf8(data, starts, stops)
    blank = (lengths == 0) | ((lengths == 1) & (bytes_[starts[:-1]] == CARRIAGE_RETURN))
    return _LineScan(starts, stops, ~(special | blank), special)


def _odd_bytes(bytes_: np.ndarray) -> np.ndarray:
    """Where a quote, a backslash or a control character is, other than a newline and the ``\\r`` before one."""
    odd = np.flatnonzero((bytes_ < FIRST_PRINTABLE) | (bytes_ == QUOTE) | (bytes_ == BACKSLASH))
    odd = odd[bytes_[odd] != NEWLINE]
    following = bytes_[np.minimum(odd + 1, len(bytes_) - 1)]
    line_end = (bytes_[odd] == CARRIAGE_RETURN) & (following == NEWLINE) & (odd + 1 < len(bytes_))
    return odd[~line_end]


def _not_utf8(data: bytes, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Per line: not valid UTF-8 (looked at line by line only when the block as a whole is not)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return np.array([not _is_utf8(data[begin:stop]) for begin, stop in zip(starts[:-1].tolist(), stops.tolist())], bool)
    return np.zeros(len(stops), bool)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _gather(data: bytes, starts: np.ndarray, lines: np.ndarray) -> bytes:
    """The bytes of these lines (ascending indices), newlines included, without the lines between."""
    if len(lines) == len(starts) - 1:
        return data
    breaks = np.flatnonzero(np.diff(lines) != 1) + 1
    firsts = lines[np.concatenate(([0], breaks))].tolist()
    lasts = lines[np.concatenate((breaks - 1, [len(lines) - 1]))].tolist()
    view = memoryview(data)
    return b"".join(view[starts[first] : starts[last + 1]] for first, last in zip(firsts, lasts))


def _json_buffer(json: pa.StringArray) -> tuple[memoryview, np.ndarray]:
    """The bytes of a string array's values, back to back, and where each value starts (plus the end)."""
    if not len(json):
        return memoryview(b""), np.zeros(1, np.int64)
    _validity, offsets_buffer, data = json.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int32)[json.offset : json.offset + len(json) + 1].astype(np.int64)
    return memoryview(data)[offsets[0] : offsets[-1]], offsets - offsets[0]
