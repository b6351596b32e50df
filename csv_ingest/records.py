"""The NYPD "Parking Violations Issued" record rules: the one place that says what a row means.

Every rule about a CSV row lives here, as pure functions over already-split fields:
which headers we recognise (the 43-column FY2017+ layout and the 51-column FY2014–FY2016
layout), when a row is rejected (wrong field count, a summons number that is not an
integer, an issue date that is not MM/DD/YYYY) and how odd but readable values are
normalised (violation times to ``HH:MM``, county spellings to the five boroughs,
improbable issue dates flagged). Rejection is a :class:`Rejected` value with a reason,
never an exception, so the loader can write it to the rejects file and carry on.

This is the loader's hot path: records are checked and typed a batch at a time, column
by column, with a quick whole-column test before any value-by-value work; dates, times
and counties are memoised (a year of tickets holds a few hundred distinct dates and
about three thousand distinct times), and no regular expression runs per field.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Any, Callable, Generic, Iterable, Sequence, TypedDict, TypeVar, Union

# Column names after trimming and snake-casing, in the order the city exports them.
FY2017_COLUMNS: tuple[str, ...] = (
    "summons_number",
    "plate_id",
    "registration_state",
    "plate_type",
    "issue_date",
    "violation_code",
    "vehicle_body_type",
    "vehicle_make",
    "issuing_agency",
    "street_code1",
    "street_code2",
    "street_code3",
    "vehicle_expiration_date",
    "violation_location",
    "violation_precinct",
    "issuer_precinct",
    "issuer_code",
    "issuer_command",
    "issuer_squad",
    "violation_time",
    "time_first_observed",
    "violation_county",
    "violation_in_front_of_or_opposite",
    "house_number",
    "street_name",
    "intersecting_street",
    "date_first_observed",
    "law_section",
    "sub_division",
    "violation_legal_code",
    "days_parking_in_effect",
    "from_hours_in_effect",
    "to_hours_in_effect",
    "vehicle_color",
    "unregistered_vehicle",
    "vehicle_year",
    "meter_number",
    "feet_from_curb",
    "violation_post_code",
    "violation_description",
    "no_standing_or_stopping_violation",
    "hydrant_violation",
    "double_parking_violation",
)
FY2014_EXTRA_COLUMNS: tuple[str, ...] = (
    "latitude",
    "longitude",
    "community_board",
    "community_council",
    "census_tract",
    "bin",
    "bbl",
    "nta",
)
FY2014_COLUMNS: tuple[str, ...] = FY2017_COLUMNS + FY2014_EXTRA_COLUMNS

INTEGER_COLUMNS = frozenset(
    {
        "violation_code",
        "street_code1",
        "street_code2",
        "street_code3",
        "violation_precinct",
        "issuer_precinct",
        "vehicle_year",
        "feet_from_curb",
    }
)
FLOAT_COLUMNS = frozenset({"latitude", "longitude"})

# Every spelling of a county the city has used, upper-cased, to one of the five boroughs.
BOROUGHS: dict[str, str] = {
    "NY": "Manhattan",
    "MN": "Manhattan",
    "MAN": "Manhattan",
    "MANHATTAN": "Manhattan",
    "K": "Brooklyn",
    "BK": "Brooklyn",
    "KINGS": "Brooklyn",
    "BROOKLYN": "Brooklyn",
    "Q": "Queens",
    "QN": "Queens",
    "QNS": "Queens",
    "QUEEN": "Queens",
    "QUEENS": "Queens",
    "BX": "Bronx",
    "BRONX": "Bronx",
    "R": "Staten Island",
    "ST": "Staten Island",
    "RICH": "Staten Island",
    "RICHMOND": "Staten Island",
    "STATEN ISLAND": "Staten Island",
}

# Columns whose values the rules type; every other column is text kept as the file has it.
_TYPED_COLUMNS = frozenset(
    {"line", "summons_number", "issue_date", "violation_time", "borough", "improbable_date"} | INTEGER_COLUMNS | FLOAT_COLUMNS
)
# What the loader sends of each record, column by column, and the JSON type of its values
# (None aside): the line, the typed columns, the borough and flag it derives, and the text
# of every other column of the widest layout.
SENT_COLUMNS: dict[str, type] = {
    "line": int,
    "summons_number": int,
    **{name: int for name in sorted(INTEGER_COLUMNS)},
    **{name: float for name in sorted(FLOAT_COLUMNS)},
    "improbable_date": bool,
    **{name: str for name in FY2014_COLUMNS if name not in _TYPED_COLUMNS},
    "issue_date": str,
    "violation_time": str,
    "borough": str,
}
_REASON_VALUE_CHARS = 40
# The city's summons numbers have 10 digits; any of 18 fits the lake's int64 column.
MAX_SUMMONS_DIGITS = 18
# Integers travel as JSON numbers of at most 64 bits.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Texts a column conversion remembers before it starts over (a few MB at most).
MAX_TEXTS_REMEMBERED = 20_000


Converted = TypeVar("Converted")


class Reason:
    """Why a record was rejected: the first word of every reject's reason."""

    FIELD_COUNT = "field_count"
    SUMMONS_NUMBER = "summons_number"
    ISSUE_DATE = "issue_date"
    CSV = "csv"


class UnknownHeader(ValueError):
    """The header is neither layout; the message is one line meant for the user as is."""


class HistoryRecord(TypedDict, total=False):
    """One parking ticket as the loader sends it; empty source fields are ``None``.

    ``line`` is the physical line the record starts on, ``violation_county`` the raw
    county code and ``borough`` its normalised name. The last eight fields exist only in
    the FY2014–FY2016 layout. Any other column is kept as text under its snake_case name.
    """

    line: int
    summons_number: int
    plate_id: str | None
    registration_state: str | None
    plate_type: str | None
    issue_date: str
    violation_code: int | None
    street_code1: int | None
    street_code2: int | None
    street_code3: int | None
    violation_precinct: int | None
    issuer_precinct: int | None
    violation_time: str | None
    violation_county: str | None
    borough: str | None
    vehicle_year: int | None
    feet_from_curb: int | None
    latitude: float | None
    longitude: float | None
    improbable_date: bool


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that is not sent: the physical line it starts on and why."""

    line: int
    reason: str


ParsedRecord = Union[HistoryRecord, Rejected]


@dataclass(frozen=True, slots=True)
class Layout:
    """A recognised header: which columns the file has, in its order, and where the key ones are.

    ``record_keys`` are the keys of a record of this layout, in the order they are sent.
    """

    name: str
    columns: tuple[str, ...]
    summons_at: int
    issue_date_at: int
    violation_time_at: int
    county_at: int
    integer_at: tuple[tuple[str, int], ...]
    float_at: tuple[tuple[str, int], ...]
    record_keys: tuple[str, ...]
    width: int


@dataclass(frozen=True, slots=True)
class DateWindow:
    """Issue dates outside ``[earliest, latest]`` (ISO strings, compared as text) are improbable."""

    earliest: str
    latest: str

    @classmethod
    def for_fiscal_year(cls, fiscal_year: int, today: date) -> "DateWindow":
        """A year either side of NYC fiscal year N (1 July N-1 … 30 June N), and never after today."""
        earliest, latest = date(fiscal_year - 2, 7, 1), date(fiscal_year + 1, 6, 30)
        return cls(earliest.isoformat(), min(latest, today).isoformat())


def snake_case(header_name: str) -> str:
    """``'Days Parking In Effect    '`` → ``days_parking_in_effect``; ``'Unregistered Vehicle?'`` → ``unregistered_vehicle``.

    Lower-cased before the filter, so that a letter whose lower case adds a combining mark
    (``İ``) loses it now rather than on a second pass: a snake_case name is its own snake_case.
    """
    words = "".join(char if char.isalnum() else " " for char in header_name.lower()).split()
    return "_".join(words)


def layout_for_header(header: list[str]) -> Layout:
    """The layout a header row announces, in any column order; UnknownHeader otherwise."""
    names = tuple(snake_case(name) for name in header)
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise UnknownHeader(f"unknown header: duplicate columns {', '.join(duplicates)}")
    layouts = {"FY2017+ (43 columns)": FY2017_COLUMNS, "FY2014-FY2016 (51 columns)": FY2014_COLUMNS}
    for name, columns in layouts.items():
        if set(names) == set(columns):
            return _layout(name, names)
    missing = [column for column in FY2017_COLUMNS if column not in names]
    unexpected = [name for name in names if name not in FY2014_COLUMNS]
    problems = [f"missing {', '.join(missing)}" if missing else "", f"unexpected {', '.join(unexpected)}" if unexpected else ""]
    summary = "; ".join(problem for problem in problems if problem) or f"{len(names)} columns"
    raise UnknownHeader(f"unknown header ({summary}): expected the FY2017+ 43-column or the FY2014-FY2016 51-column layout")


def _layout(name: str, columns: tuple[str, ...]) -> Layout:
    position = {column: index for index, column in enumerate(columns)}
    return Layout(
        name=name,
        columns=columns,
        summons_at=position["summons_number"],
        issue_date_at=position["issue_date"],
        violation_time_at=position["violation_time"],
        county_at=position["violation_county"],
        integer_at=tuple((column, position[column]) for column in columns if column in INTEGER_COLUMNS),
        float_at=tuple((column, position[column]) for column in columns if column in FLOAT_COLUMNS),
        record_keys=("line", *columns, "borough", "improbable_date"),
        width=len(columns),
    )


@dataclass(frozen=True, slots=True)
class TypedRows:
    """Valid records of one batch, column by column, as the history topic carries them.

    ``columns`` holds ``line``, every column of the layout, ``borough`` and
    ``improbable_date``. Typed columns hold ints, ISO dates, ``HH:MM`` times, borough
    names and None for what is empty or unreadable; text columns hold the field exactly
    as the file has it, ``""`` when empty (the lake stores that as null). Columns rather
    than one dict per record: typing and encoding a column at a time is what lets the
    loader keep pace with the broker.
    """

    columns: dict[str, Sequence[Any]]

    def __len__(self) -> int:
        return len(self.columns["line"])

    @classmethod
    def joined(cls, parts: list["TypedRows"]) -> "TypedRows":
        """One batch's parts (at least one) as one: a batch is read in several parts when some of its records are rejected."""
        if len(parts) == 1:
            return parts[0]
        return cls({name: [value for part in parts for value in part.columns[name]] for name in parts[0].columns})

    def records(self) -> list[HistoryRecord]:
        """One dict per record, empty text as None: the rules' view of a row, for people and tests."""
        names = list(self.columns)
        return [
            {name: value if name in _TYPED_COLUMNS or value != "" else None for name, value in zip(names, values)}  # type: ignore[misc]
            for values in zip(*self.columns.values())
        ]


def parse_record(fields: list[str], line: int, layout: Layout, window: DateWindow) -> ParsedRecord:
    """One CSV record → a typed :class:`HistoryRecord`, or :class:`Rejected` with the reason (see :func:`type_rows`)."""
    typed, rejects = type_rows([line], [fields], layout, window)
    return rejects[0][1] if rejects else typed.records()[0]


def type_rows(lines: list[int], rows: list[list[str]], layout: Layout, window: DateWindow) -> tuple[TypedRows, list[tuple[int, Rejected]]]:
    """CSV records (with the physical line each starts on) → the valid ones typed, and ``(index, Rejected)`` for the rest.

    Only three things reject a record: the wrong number of fields, a summons number that
    is not an integer of at most 18 digits and an issue date that is not a real
    MM/DD/YYYY date. Anything else odd is kept: unreadable numbers and times become
    None, unknown counties get no borough, improbable dates are flagged. Each check
    runs over a whole column first and falls back to value by value only where the
    column's quick test fails.
    """
    texts, issue_dates, rejects = _valid_columns(lines, rows, layout)
    if rejects:
        dropped = {index for index, _ in rejects}
        lines = [line for index, line in enumerate(lines) if index not in dropped]
        texts, issue_dates, _ = _valid_columns(lines, [row for index, row in enumerate(rows) if index not in dropped], layout)
    columns: dict[str, Sequence[Any]] = {"line": lines, **dict(zip(layout.columns, texts))}
    columns["summons_number"] = list(map(int, texts[layout.summons_at]))
    columns["issue_date"] = issue_dates
    for column, index in layout.integer_at:
        columns[column] = integers(texts[index])
    for column, index in layout.float_at:
        columns[column] = [float_or_none(text) for text in texts[index]]
    columns["violation_time"] = clock_times(texts[layout.violation_time_at])
    columns["borough"] = boroughs(texts[layout.county_at])
    earliest, latest = window.earliest, window.latest
    columns["improbable_date"] = [not (earliest <= iso <= latest) for iso in issue_dates]
    return TypedRows(columns), rejects


def _valid_columns(
    lines: list[int], rows: list[list[str]], layout: Layout
) -> tuple[list[Sequence[str]], list[str], list[tuple[int, Rejected]]]:
    """The rows' fields column by column and their ISO issue dates when every row is valid; else ``(index, Rejected)`` for the invalid ones.

    The quick test looks at whole columns; only a batch that fails it is checked row by row.
    """
    if not rows:
        return [()] * layout.width, [], []
    if list(map(len, rows)).count(layout.width) == len(rows):
        texts: list[Sequence[str]] = list(zip(*rows))
        issue_dates = iso_dates(texts[layout.issue_date_at])
        if _all_summons_numbers(texts[layout.summons_at]) and None not in issue_dates:
            return texts, issue_dates, []  # type: ignore[return-value]
    found = ((index, rejection(row, line, layout)) for index, (line, row) in enumerate(zip(lines, rows)))
    return [], [], [(index, rejected) for index, rejected in found if rejected is not None]


def _all_summons_numbers(texts: Sequence[str]) -> bool:
    joined = "".join(texts)
    lengths = list(map(len, texts))
    return joined.isdigit() and joined.isascii() and min(lengths, default=1) > 0 and max(lengths, default=0) <= MAX_SUMMONS_DIGITS


def rejection(fields: list[str], line: int, layout: Layout) -> Rejected | None:
    """Why one record must not be sent, or None: its field count, summons number and issue date, in that order."""
    if len(fields) != layout.width:
        return Rejected(line, field_count_reason(fields, layout.width))
    summons_text = fields[layout.summons_at]
    if not (summons_text.isdigit() and summons_text.isascii()):
        return Rejected(line, f"{Reason.SUMMONS_NUMBER}: not an integer: {_shown(summons_text)}")
    if len(summons_text) > MAX_SUMMONS_DIGITS:
        return Rejected(line, f"{Reason.SUMMONS_NUMBER}: more than {MAX_SUMMONS_DIGITS} digits: {_shown(summons_text)}")
    issue_text = fields[layout.issue_date_at]
    if iso_date(issue_text) is None:
        return Rejected(line, f"{Reason.ISSUE_DATE}: not a MM/DD/YYYY date: {_shown(issue_text)}")
    return None


class ColumnConversion(Generic[Converted]):
    """A value rule applied to a whole column, each distinct text converted once.

    The city's columns repeat a few thousand values (codes, precincts, street codes,
    dates, times, counties), so looking a text up is cheaper than converting it again.
    What is remembered is bounded: past :data:`MAX_TEXTS_REMEMBERED` texts it starts over.
    """

    def __init__(self, convert: Callable[[str], Converted]):
        self._convert = convert
        self._seen: dict[str, Converted] = {}
        self.limit = MAX_TEXTS_REMEMBERED

    def __len__(self) -> int:
        return len(self._seen)

    def __call__(self, texts: Sequence[str]) -> list[Converted]:
        seen = self._seen
        try:
            return list(map(seen.__getitem__, texts))
        except KeyError:
            unseen = set(texts).difference(seen)
            if len(seen) + len(unseen) > self.limit:
                seen.clear()
                unseen = set(texts)
            seen.update(zip(unseen, map(self._convert, unseen)))
            return list(map(seen.__getitem__, texts))


def integer_of_64_bits(text: str) -> int | None:
    """A whole number, None where it is empty, unreadable or beyond 64 bits (no message could carry it)."""
    value = integer_or_none(text)
    return value if value is None or _INT64_MIN <= value <= _INT64_MAX else None


def field_count_reason(fields: list[str], width: int) -> str:
    """Say how many fields there were, and spot the common case of a whole line wrapped in quotes."""
    reason = f"{Reason.FIELD_COUNT}: expected {width} fields, got {len(fields)}"
    if len(fields) == 1 and fields[0].count(",") >= width - 1:
        reason += " (the whole record is one quoted field)"
    return reason


def iso_date(text: str) -> str | None:
    """``'07/10/2016'`` → ``'2016-07-10'``; anything that is not a real MM/DD/YYYY date → None."""
    if len(text) != 10 or text[2] != "/" or text[5] != "/":
        return None
    month, day, year = text[:2], text[3:5], text[6:]
    if not (month.isdigit() and day.isdigit() and year.isdigit() and text.isascii()):
        return None
    try:
        return date(int(year), int(month), int(day)).isoformat()
    except ValueError:
        return None


def clock_time(text: str) -> str | None:
    """``HHMM`` + ``A``/``P`` (12-hour clock) → ``'HH:MM'``: ``0015A`` 00:15, ``1240P`` 12:40, ``1205A`` 00:05.

    Hour ``00`` with ``P`` is read as 12 (``0010P`` is 12:10), as the city's devices write
    it. Anything else — other lengths, hours past 12, minutes past 59 — is None.
    """
    if len(text) != 5 or not (text[:4].isdigit() and text.isascii()):
        return None
    hour, minute, half = int(text[:2]), int(text[2:4]), text[4].upper()
    if hour > 12 or minute > 59 or half not in ("A", "P"):
        return None
    hour %= 12
    if half == "P":
        hour += 12
    return f"{hour:02d}:{minute:02d}"


def borough(county: str) -> str | None:
    """A county code in any of the city's spellings → one of the five boroughs, else None."""
    return BOROUGHS.get(county) or BOROUGHS.get(county.strip().upper())


def integer_or_none(text: str) -> int | None:
    """A whole number, or None for empty or unreadable text, or over 4,300 digits (the row is kept either way)."""
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def float_or_none(text: str) -> float | None:
    """A finite number, or None for empty, unreadable or non-finite text."""
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number - number == 0 else None


def fiscal_year(iso: str) -> int:
    """The NYC fiscal year of an ISO date: FY N runs from 1 July N-1 to 30 June N."""
    year, month = int(iso[:4]), int(iso[5:7])
    return year + 1 if month >= 7 else year


def likely_fiscal_year(iso_dates: Iterable[str]) -> int | None:
    """The fiscal year most of these dates fall in (ties go to the later year); None without dates."""
    counts = Counter(fiscal_year(iso) for iso in iso_dates)
    if not counts:
        return None
    return max(counts.items(), key=lambda item: (item[1], item[0]))[0]


integers = ColumnConversion(integer_of_64_bits)
iso_dates = ColumnConversion(iso_date)
clock_times = ColumnConversion(clock_time)
boroughs = ColumnConversion(borough)


def _shown(value: str) -> str:
    return repr(value if len(value) <= _REASON_VALUE_CHARS else value[:_REASON_VALUE_CHARS] + "…")
