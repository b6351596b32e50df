"""The record rules of :mod:`csv_ingest.records` applied to a whole block of rows at once.

Checking and typing a record field by field in Python costs more than reading, parsing and
sending it together, so the block reader (:mod:`csv_ingest.blocks`) parses runs of plain
lines with Arrow and this module types whole columns: summons numbers and integer columns
by one cast where every value is plain ASCII digits, and issue dates, violation times,
boroughs, coordinates and any unusual integer column by running the scalar rule of
:mod:`csv_ingest.records` once per distinct value of the block (a block holds a few
hundred dates and a few thousand times). The rules themselves are never restated here.

What this module cannot vouch for, it does not decide: a row whose summons number is not
plain digits, whose issue date is not a date or whose number does not fit 64 bits is
flagged, and the reader runs it through :func:`~csv_ingest.records.parse_record` instead,
which also writes its reject.

Every row is then written as JSON by Arrow's CSV writer, which is the only native writer
Arrow has: each cell already holds its JSON text (text values wrapped in
:data:`JSON_QUOTE`, ``null`` for a missing value, typed values rendered by orjson per
distinct value), the writer joins cells with commas, and one ``bytes.translate`` turns the
stand-in quotes into quotes and each line end into the comma that follows a row. That is
exact only because a plain line's values hold no quote, backslash, control character or
comma — nothing JSON would escape — which is what makes a line plain.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from csv_ingest.records import (
    MAX_SUMMONS_DIGITS,
    DateWindow,
    Layout,
    borough,
    clock_time,
    float_or_none,
    integer_or_none,
    iso_date,
)

# Any number of up to 18 decimal digits fits a signed 64-bit integer.
MAX_CAST_DIGITS = 18
INT64_RANGE = (-(1 << 63), (1 << 63) - 1)
# Stands for '"' in written cells: the CSV writer refuses a real quote in an unquoted cell.
JSON_QUOTE = "\x01"
_TO_JSON = bytes.maketrans(JSON_QUOTE.encode() + b"\n", b'",')
_END = 1 << 30  # a slice start past any value's end: appends
_WRITE_OPTIONS = pa_csv.WriteOptions(include_header=False, quoting_style="none")


@dataclass(frozen=True)
class Cells:
    """A block's rows typed: each field's JSON text per row, and which rows only the scalar rules may decide.

    The cells of a ``scalar`` row mean nothing. :func:`written` turns the cells into JSON.
    """

    table: pa.Table
    scalar: np.ndarray


class BlockTyper:
    """Types blocks of one layout's rows and writes them as JSON arrays."""

    def __init__(self, layout: Layout, window: DateWindow):
        self._layout = layout
        self._window = window
        typed = {"summons_number", "issue_date", "violation_time", *(name for name, _ in (*layout.integer_at, *layout.float_at))}
        self._text_columns = [name for name in layout.columns if name not in typed]
        self._issue_days = _Memo(self._issue_day_cells)
        self._times = _Memo(lambda text: _json_text(clock_time(text)))
        self._boroughs = _Memo(lambda text: _json_text(borough(text)))
        self._coordinates = _Memo(lambda text: _json_text(float_or_none(text)))

    def text_cells(self, table: pa.Table) -> dict[str, pa.Array]:
        """The cells of the columns that stay text; a separate step so that another thread can make them."""
        return {name: _quoted(_array(table.column(name))) for name in self._text_columns}

    def cells(self, table: pa.Table, text_cells: dict[str, pa.Array], lines: np.ndarray) -> Cells:
        """Every cell of each row of ``table`` (string columns, null for empty), the rows starting at ``lines``."""
        layout = self._layout
        texts = {name: _array(table.column(name)) for name in layout.columns}
        cells = dict(text_cells)
        cells["line"] = pc.binary_join_element_wise("[", pc.cast(pa.array(lines, pa.int64()), pa.string()), "")
        cells["summons_number"], certain = _summons(texts["summons_number"])
        cells["issue_date"], cells["improbable_date"], is_date = self._issue_dates(texts["issue_date"])
        certain = pc.and_(certain, is_date)
        for name, _ in layout.integer_at:
            cells[name], fits = _integers(texts[name])
            certain = pc.and_(certain, fits)
        for name, _ in layout.float_at:
            cells[name] = _per_distinct(texts[name], self._coordinates)
        cells["violation_time"] = _per_distinct(texts["violation_time"], self._times)
        cells["borough"] = _per_distinct(texts["violation_county"], self._boroughs)
        typed = pa.table([cells[name] for name in layout.fields], names=list(layout.fields))
        return Cells(typed, ~certain.to_numpy(zero_copy_only=False))

    def _issue_dates(self, column: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
        """ISO date cells, improbable flags (ending the row: the last field), and which rows have a date."""
        indices, texts = _distinct(column)
        days = self._issue_days.of(texts)
        iso_cells, flags, is_date = ([day[part] for day in days] for part in range(3))
        return (pa.array(iso_cells, pa.string()).take(indices), pa.array(flags, pa.string()).take(indices),
                pa.array(is_date, pa.bool_()).take(indices))  # fmt: skip

    def _issue_day_cells(self, text: str) -> tuple[str, str, bool]:
        iso = iso_date(text)
        return _json_text(iso), _json_text(iso is not None and self._window.improbable(iso)) + "]", iso is not None


def _array(column: pa.ChunkedArray) -> pa.Array:
    """The column's one chunk (the block reader parses a block in one), or its chunks put together."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def written(cells: Cells) -> pa.StringArray:
    """Each row written as its JSON array followed by a comma, so the rows of a batch are one contiguous slice."""
    sink = io.BytesIO()
    pa_csv.write_csv(cells.table, sink, _WRITE_OPTIONS)
    written = sink.getvalue()
    row_ends = np.flatnonzero(np.frombuffer(written, np.uint8) == ord("\n")) + 1
    offsets = np.concatenate(([0], row_ends)).astype(np.int32)
    return pa.StringArray.from_buffers(len(row_ends), pa.py_buffer(offsets), pa.py_buffer(written.translate(_TO_JSON)))


def _quoted(column: pa.Array) -> pa.Array:
    """Text cells: the value between stand-in quotes, ``null`` where the field was empty."""
    if column.null_count == len(column):
        return pa.repeat("null", len(column))
    quoted = pc.binary_replace_slice(pc.binary_replace_slice(column, 0, 0, JSON_QUOTE), _END, _END, JSON_QUOTE)
    return pc.fill_null(quoted, "null") if column.null_count else quoted


def _distinct(column: pa.Array) -> tuple[pa.Array, list[str]]:
    """Each row's index into the block's distinct values, and those values (a null read as "")."""
    encoded = pc.dictionary_encode(column, null_encoding="encode")
    return encoded.indices, [text or "" for text in encoded.dictionary.to_pylist()]


def _json_text(value: Any) -> str:
    """A value as orjson writes it, with stand-in quotes."""
    return orjson.dumps(value).decode().replace('"', JSON_QUOTE)


class _Memo(dict[str, Any]):
    """``memo[text]`` is ``make(text)``, made once: a file repeats the same few thousand times and dates all along.

    Past :data:`LIMIT` entries it starts afresh, so a column of mostly distinct values
    (coordinates) costs no more memory than a block of them.
    """

    LIMIT = 1 << 16

    def __init__(self, make: Callable[[str], Any]):
        super().__init__()
        self._make = make

    def __missing__(self, text: str) -> Any:
        if len(self) >= self.LIMIT:
            self.clear()
        made = self[text] = self._make(text)
        return made

    def of(self, texts: list[str]) -> list[Any]:
        return list(map(self.__getitem__, texts))


def _per_distinct(column: pa.Array, cells: _Memo) -> pa.Array:
    """The memo's cell for every row, looked up once per distinct value."""
    indices, texts = _distinct(column)
    return pa.array(cells.of(texts), pa.string()).take(indices)


def _plain_digits(column: pa.Array, most: int) -> pa.Array:
    """Per row: non-empty ASCII digits, at most ``most`` of them (null where the field is empty)."""
    return pc.and_(pc.ascii_is_decimal(column), pc.less_equal(pc.binary_length(column), most))


def _summons(column: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Summons numbers that are plain digits, and which rows have one; the rest are the scalar rules' call."""
    plain = pc.fill_null(_plain_digits(column, MAX_SUMMONS_DIGITS), False)
    return pc.cast(pc.if_else(plain, column, None), pa.int64()), plain


def _integers(column: pa.Array) -> tuple[pa.Array, pa.Array]:
    """An integer column's cells, and which rows' numbers fit int64 (a larger one is the scalar rules' call).

    A column of plain digits is cast at once; anything else (signs, spaces, Unicode digits,
    words) goes through ``integer_or_none`` per distinct value, as ``int()`` reads it.
    """
    if pc.all(_plain_digits(column, MAX_CAST_DIGITS), min_count=0).as_py():
        numbers = pc.cast(column, pa.int64())
        cells = pc.fill_null(pc.cast(numbers, pa.string()), "null") if numbers.null_count else numbers
        return cells, pa.repeat(True, len(column))
    indices, texts = _distinct(column)
    numbers = [integer_or_none(text) for text in texts]
    fits = [number is None or INT64_RANGE[0] <= number <= INT64_RANGE[1] for number in numbers]
    cells = pa.array([_json_text(number if fit else None) for number, fit in zip(numbers, fits)], pa.string())
    return cells.take(indices), pa.array(fits, pa.bool_()).take(indices)
