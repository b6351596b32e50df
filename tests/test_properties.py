"""Property tests: the message contract and the CSV record rules never raise, whatever they are fed.

Both are DroneCop's borders with the outside world (drones on Kafka, the city's CSV
exports), and both promise a typed record or a reason, never an exception. These tests
hold them to it on generated input — arbitrary bytes, arbitrary JSON, valid input with
one field broken — and check that valid input survives encoding and that the
normalisations are fixed points. ``HYPOTHESIS_PROFILE=fuzz`` runs many more examples
(minutes instead of seconds); the default keeps ``make test`` quick.
"""

from __future__ import annotations

import csv
import io
import re
import string
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from csv_ingest import records as csv_records
from csv_ingest.batches import CHUNK_BYTES, REGION_BYTES, read_batches, read_records, regions
from csv_ingest.records import (
    BOROUGHS,
    FY2014_COLUMNS,
    FY2017_COLUMNS,
    HistoryRecord,
    Layout,
    Rejected,
    TypedRows,
    borough,
    clock_time,
    float_or_none,
    integer_or_none,
    iso_date,
    layout_for_header,
    parse_record,
    snake_case,
)
from csv_ingest.source import MAX_RECORD_BYTES, Position, decode, read_header
from tests.support.csv_files import FY2017_HEADER, LAYOUT_FY2017, WINDOW_FY2017, fields
from tests.support.hypothesis_profiles import PROFILE
from transforms import contract
from transforms.contract import (
    DroneMessage,
    InvalidMessage,
    encode_message,
    format_timestamp,
    message_to_fields,
    parse_message,
    parse_timestamp,
    validate_fields,
)
from transforms.history_contract import CLOCK_TIME, decode_history_batch, encode_history_batch

CONTRACT_REASONS = frozenset(value for name, value in vars(contract.Reason).items() if name.isupper())
CSV_REASONS = frozenset(value for name, value in vars(csv_records.Reason).items() if name.isupper())
MESSAGE_FIELDS = (
    "message_id",
    "drone_id",
    "timestamp",
    "latitude",
    "longitude",
    "violation_code",
    "image_id",
    *contract.HEALTH_FIELDS,
    "resolves_message_id",
    "kind",
)
DELETE = object()

# --- strategies -------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=80),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=20,
)
# Python callers of validate_fields can hand over what JSON cannot carry: ints of any size, nan.
python_values = st.one_of(json_values, st.integers(), st.floats(), st.tuples(), st.binary(max_size=4))
# Valid ids: any text without control or bidirectional formatting characters (Cf holds the latter).
ids = st.text(st.characters(exclude_categories=("Cc", "Cf", "Cs")), min_size=1, max_size=64)
FILE_NAME_CHARACTERS = string.ascii_letters + string.digits
image_ids = st.tuples(st.sampled_from(FILE_NAME_CHARACTERS), st.text(FILE_NAME_CHARACTERS + "._-", max_size=127)).map("".join)
moments = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999_999))
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda minutes: timezone(timedelta(minutes=minutes)))


def rfc3339(moment: datetime, offset: timezone, digits: int) -> str:
    """``moment`` (naive, taken as that offset's local time) written with ``digits`` fraction digits."""
    fraction = f".{moment.microsecond:06d}"[: digits + 1] if digits else ""
    zone = "Z" if offset.utcoffset(None) == timedelta(0) else moment.replace(tzinfo=offset).strftime("%z")
    zone = zone if zone == "Z" else f"{zone[:3]}:{zone[3:]}"
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}{fraction}{zone}"


@st.composite
def timestamp_texts(draw: st.DrawFn) -> str:
    """RFC 3339 timestamps at any offset and precision, then sometimes cut short or with one character changed."""
    text = rfc3339(draw(moments), draw(offsets), draw(st.integers(0, 6)))
    edit = draw(st.sampled_from(("keep", "cut", "replace")))
    if edit == "cut":
        return text[: draw(st.integers(0, len(text)))]
    if edit == "replace":
        at = draw(st.integers(0, len(text) - 1))
        return text[:at] + draw(st.characters()) + text[at + 1 :]
    return text


@st.composite
def drone_messages(draw: st.DrawFn) -> DroneMessage:
    """A valid message: what the simulator and the alert desk encode."""
    code = draw(st.none() | st.integers(contract.MIN_DOF_CODE, contract.MAX_DOF_CODE) | st.just(contract.HUMAN_REVIEW_CODE))
    health = st.none() | st.floats(allow_nan=False, allow_infinity=False)
    return DroneMessage(
        message_id=draw(ids),
        drone_id=draw(ids),
        timestamp=draw(moments).replace(microsecond=draw(st.integers(0, 999)) * 1000, tzinfo=timezone.utc),
        latitude=draw(st.floats(-90, 90)),
        longitude=draw(st.floats(-180, 180)),
        violation_code=code,
        image_id=None if code is None else draw(image_ids),
        battery_pct=draw(health),
        altitude_m=draw(health),
        speed_mps=draw(health),
        motor_temp_c=draw(health),
        vibration_g=draw(health),
        flight_hours=draw(health),
        resolves_message_id=draw(st.none() | ids),
        kind=draw(st.none() | st.sampled_from(contract.MESSAGE_KINDS)),
    )


@st.composite
def near_valid_fields(draw: st.DrawFn, values: st.SearchStrategy[Any] = json_values) -> tuple[str, dict[str, Any]]:
    """The fields of a valid message with one of them removed or replaced; returns its name and the fields."""
    fields_ = message_to_fields(draw(drone_messages()))
    name = draw(st.sampled_from((*MESSAGE_FIELDS, "unknown_field")))
    value = draw(st.one_of(values, st.just(DELETE), timestamp_texts()))
    if value is DELETE:
        fields_.pop(name, None)
    else:
        fields_[name] = value
    return name, fields_


# --- the message contract ---------------------------------------------------------------------


def assert_message_or_reason(result: object) -> None:
    assert isinstance(result, (DroneMessage, InvalidMessage)), result
    if isinstance(result, InvalidMessage):
        assert result.reason in CONTRACT_REASONS and isinstance(result.detail, str), result


def assert_blames(result: DroneMessage | InvalidMessage, name: str) -> None:
    """A refusal after breaking one field names that field (or its partner: a code needs an image)."""
    if isinstance(result, DroneMessage):
        encoded = encode_message(result)  # milliseconds: a finer timestamp is cut once, then stays
        assert encode_message(parse_message(encoded)) == encoded  # type: ignore[arg-type]
        return
    partners = {"violation_code": {"image_id"}, "image_id": {"violation_code"}}.get(name, set())
    assert result.detail in {name, *partners}, (name, result)


@PROFILE
@given(st.binary(max_size=2048))
def test_any_bytes_give_a_message_or_a_reason(raw: bytes) -> None:
    assert_message_or_reason(parse_message(raw))


@PROFILE
@given(json_values)
def test_any_json_gives_a_message_or_a_reason(value: object) -> None:
    assert_message_or_reason(parse_message(orjson.dumps(value)))


@PROFILE
@given(near_valid_fields())
def test_one_broken_field_is_refused_by_name(case: tuple[str, dict[str, Any]]) -> None:
    name, fields_ = case
    result = parse_message(orjson.dumps(fields_))
    assert_message_or_reason(result)
    assert_blames(result, name)


@PROFILE
@given(near_valid_fields(python_values))
def test_validate_fields_takes_any_python_value(case: tuple[str, dict[str, Any]]) -> None:
    name, fields_ = case
    result = validate_fields(fields_)
    assert_message_or_reason(result)
    if isinstance(result, InvalidMessage):
        assert_blames(result, name)


@PROFILE
@given(drone_messages())
def test_valid_messages_round_trip(message: DroneMessage) -> None:
    raw = encode_message(message)
    assert len(raw) <= contract.MAX_MESSAGE_BYTES
    assert parse_message(raw) == message


@PROFILE
@given(moments, offsets, st.integers(0, 6))
def test_timestamps_normalise_once(moment: datetime, offset: timezone, digits: int) -> None:
    """Parsing then formatting is a fixed point: a second pass changes nothing, or the first refused."""
    try:
        parsed = parse_timestamp(rfc3339(moment, offset, digits))
    except ValueError:
        return
    formatted = format_timestamp(parsed)
    assert format_timestamp(parse_timestamp(formatted)) == formatted
    assert abs(parse_timestamp(formatted) - parsed) < timedelta(milliseconds=1)


# --- the CSV record rules ---------------------------------------------------------------------

digit_runs = st.builds(lambda digit, count: digit * count, st.sampled_from(string.digits), st.integers(1, 5000))
cell_texts = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"-?[0-9]{1,22}", fullmatch=True),
    digit_runs,
    st.from_regex(r"[0-9]{2}/[0-9]{2}/[0-9]{4}", fullmatch=True),
    st.from_regex(r"[0-9]{4}[AaPp]", fullmatch=True),
)


def assert_well_typed(record: HistoryRecord, layout: Layout) -> None:
    """Every key of the layout, numbers that fit a 64-bit column, and only the normalised forms."""
    assert list(record) == list(layout.record_keys)
    assert isinstance(record["summons_number"], int) and 0 <= record["summons_number"] < 2**63
    assert date.fromisoformat(record["issue_date"]).isoformat() == record["issue_date"]
    time_ = record["violation_time"]
    assert time_ is None or (len(time_) == 5 and 0 <= int(time_[:2]) < 24 and 0 <= int(time_[3:]) < 60)
    assert record["borough"] in {None, *BOROUGHS.values()}
    assert isinstance(record["improbable_date"], bool)
    for column, _ in layout.integer_at:
        assert record[column] is None or isinstance(record[column], int), column
    for column, _ in layout.float_at:
        value = record[column]
        assert value is None or (isinstance(value, float) and value - value == 0), column


@PROFILE
@given(st.lists(cell_texts, max_size=60), st.integers(1, 10**9))
def test_any_row_gives_a_record_or_a_reason(row: list[str], line: int) -> None:
    result = parse_record(row, line, LAYOUT_FY2017, WINDOW_FY2017)
    if isinstance(result, Rejected):
        assert result.line == line and result.reason.split(":")[0] in CSV_REASONS, result
    else:
        assert_well_typed(result, LAYOUT_FY2017)


@PROFILE
@given(st.sampled_from(FY2017_COLUMNS), cell_texts)
def test_one_odd_cell_rejects_only_for_the_key_columns(column: str, text: str) -> None:
    """Only the summons number and the issue date may reject a row; any other odd cell is kept."""
    result = parse_record(fields(**{column: text}), 7, LAYOUT_FY2017, WINDOW_FY2017)
    if isinstance(result, Rejected):
        assert column in ("summons_number", "issue_date") and result.reason.startswith(column), (column, result)
    else:
        assert_well_typed(result, LAYOUT_FY2017)


csv_pieces = st.one_of(
    st.sampled_from(['"', '""', ",", "\n", "\r\n", "\r", "\x00", "\ufeff", "é"]),
    st.just(",".join(fields(1))),
    st.text(max_size=20),
)
csv_bodies = st.one_of(
    st.binary(max_size=4096),
    st.lists(csv_pieces, max_size=40).map(lambda pieces: "".join(pieces).encode()),
    st.lists(st.sampled_from([b"\xff", b"\xe9", b"\xed\xa0\x80", b"\n", b'"', b"x" * (MAX_RECORD_BYTES // 2)]), max_size=8).map(b"".join),
)


def read_body(folder: Path, body: bytes) -> tuple[list[HistoryRecord], list[Rejected]]:
    """The records and rejects of a FY2017 file with ``body`` after its header, read as the loader reads."""
    path = folder / "body.csv"
    path.write_bytes(FY2017_HEADER.encode() + b"\r\n" + body)
    rejects: list[Rejected] = []
    records = list(read_records(path, read_header(path)[1], LAYOUT_FY2017, WINDOW_FY2017, lambda rejected, _raw: rejects.append(rejected)))
    return records, rejects


valid_lines = st.builds(
    lambda summons, county, time, newline: ",".join(fields(summons, county=county, time=time)) + newline,
    st.integers(1, 10**12),
    st.sampled_from(["NY", "K", "", "zz"]),
    st.sampled_from(["0845A", "1240P", "", "99"]),
    st.sampled_from(["\n", "\r\n"]),
)
mostly_valid_bodies = st.lists(st.one_of(valid_lines, valid_lines, valid_lines, csv_pieces), max_size=60).map(
    lambda pieces: "".join(pieces).encode()
)


ChunkedRead = tuple[list[tuple[list[HistoryRecord], Position]], list[tuple[Rejected, str]]]


def read_in_chunks(path: Path, start: Position, size: int, chunk_bytes: int, region_bytes: int = REGION_BYTES) -> ChunkedRead:
    """Every batch (records, end) and every reject (with its raw text) of a file read in chunks of ``chunk_bytes``."""
    rejects: list[tuple[Rejected, str]] = []
    batches = [
        (encodable(batch.rows).records(), batch.end)
        for batch in read_batches(
            path, start, LAYOUT_FY2017, WINDOW_FY2017, size, lambda *reject: rejects.append(reject), chunk_bytes, region_bytes
        )
    ]
    return batches, rejects


def encodable(rows: TypedRows) -> TypedRows:
    """``rows``, once they were shown to make a history message (or to be none)."""
    if len(rows):
        assert decode_history_batch(encode_history_batch("f" * 64, rows.columns)[1])[1] == [
            dict(zip(rows.columns, values)) for values in zip(*rows.columns.values())
        ]
    return rows


VALID_LINE = (",".join(fields(7)) + "\r\n").encode()


@PROFILE
@given(body=st.one_of(csv_bodies, mostly_valid_bodies), size=st.integers(1, 5))
@example(body=VALID_LINE + b"x" * (MAX_RECORD_BYTES + 1) + b"\n" + VALID_LINE, size=2)
@example(body=VALID_LINE + b'1,"a\r\nb' + VALID_LINE * 2 + b'",' + VALID_LINE, size=2)
@example(body=",".join(fields(3, street_code1="9" * 25, vehicle_year="-" + "9" * 19)).encode(), size=1)
@example(body=VALID_LINE + b"\xe9" + VALID_LINE + b"2,\r3\n\n" + VALID_LINE, size=3)
def test_fast_and_exact_reading_give_the_same_batches(scratch: Path, body: bytes, size: int) -> None:
    """However the file is cut into chunks — one byte (read almost all exactly) up to the default (almost all fast) —
    the batches are the same."""
    path = scratch / "chunks.csv"
    path.write_bytes(FY2017_HEADER.encode() + b"\r\n" + body)
    start = read_header(path)[1]
    outcomes = [read_in_chunks(path, start, size, chunk_bytes) for chunk_bytes in (1, 7, 100, 1000, CHUNK_BYTES)]
    assert all(outcome == outcomes[0] for outcome in outcomes[1:])
    end = outcomes[0][0][-1][1] if outcomes[0][0] else start
    assert end.offset == path.stat().st_size


@PROFILE
@given(body=st.one_of(csv_bodies, mostly_valid_bodies), size=st.integers(1, 5), region_bytes=st.sampled_from([1, 7, 100, 1000]))
@example(body=VALID_LINE + b'1,"a\r\nb' + VALID_LINE * 2 + b'",' + VALID_LINE, size=2, region_bytes=100)
def test_regions_cut_batches_but_change_nothing_read(scratch: Path, body: bytes, size: int, region_bytes: int) -> None:
    """Cut into regions of any size, a file gives the same records and rejects, and resuming at a batch's end the same batches after it."""
    path = scratch / "regions.csv"
    path.write_bytes(FY2017_HEADER.encode() + b"\r\n" + body)
    start = read_header(path)[1]
    whole_batches, whole_rejects = read_in_chunks(path, start, size, CHUNK_BYTES)
    batches, rejects = read_in_chunks(path, start, size, CHUNK_BYTES, region_bytes)
    assert [record for records, _ in batches for record in records] == [record for records, _ in whole_batches for record in records]
    assert rejects == whole_rejects
    stops = [region.stop.line for region in regions(path, start, region_bytes)]
    for records, _ in batches:
        assert not records or not [stop for stop in stops if records[0]["line"] < stop <= records[-1]["line"]]
    if batches:
        middle = len(batches) // 2
        assert read_in_chunks(path, batches[middle][1], size, 7, region_bytes)[0] == batches[middle + 1 :]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("properties")


@PROFILE
@given(body=csv_bodies)
def test_any_file_body_gives_records_or_rejects(scratch: Path, body: bytes) -> None:
    records, rejects = read_body(scratch, body)
    physical_lines = body.count(b"\n") + 2
    for record in records:
        assert_well_typed(record, LAYOUT_FY2017)
    lines = [record["line"] for record in records]
    assert lines == sorted(lines) and all(2 <= line <= physical_lines for line in lines)
    for rejected in rejects:
        assert rejected.reason.split(":")[0] in CSV_REASONS and 2 <= rejected.line <= physical_lines, rejected


free_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
TEXT_COLUMNS = ("plate_id", "street_name", "house_number", "intersecting_street", "violation_description")


@PROFILE
@given(rows=st.lists(st.fixed_dictionaries({column: free_text for column in TEXT_COLUMNS}), min_size=1, max_size=6))
def test_rows_written_by_csv_writer_read_back_unchanged(scratch: Path, rows: list[dict[str, str]]) -> None:
    """Quotes, commas, CR, LF and any character in text columns survive the reader, on the right line."""
    written = [csv_line(fields(number, **row)) for number, row in enumerate(rows, 1)]
    records, rejects = read_body(scratch, "".join(written).encode())
    assert rejects == []
    assert [{column: record[column] or "" for column in TEXT_COLUMNS} for record in records] == rows
    starts = [2 + sum(line.count("\n") for line in written[:index]) for index in range(len(written))]
    assert [record["line"] for record in records] == starts


def csv_line(row: list[str]) -> str:
    """One row as Python's csv writer (and the city's exports) write it, CRLF included."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(row)
    return buffer.getvalue()


# --- normalisations that must be fixed points ---------------------------------------------------


@PROFILE
@given(st.text(max_size=40))
def test_snake_case_is_idempotent(name: str) -> None:
    once = snake_case(name)
    assert snake_case(once) == once


@PROFILE
@given(st.permutations(FY2014_COLUMNS), st.data())
def test_any_spelling_and_order_of_a_header_finds_its_layout(columns: list[str], data: st.DataObject) -> None:
    spelled = [data.draw(st.sampled_from((str.upper, str.title, str.lower)))(column.replace("_", " ")) + " " for column in columns]
    layout = layout_for_header(spelled)
    assert layout.columns == tuple(columns) and layout.width == len(FY2014_COLUMNS)


@PROFILE
@given(st.text(max_size=15) | st.sampled_from(sorted(BOROUGHS)))
def test_borough_names_map_to_themselves(county: str) -> None:
    name = borough(county)
    assert name is None or borough(name) == name


clock_texts = st.builds("{:02d}{:02d}{}".format, st.integers(0, 12), st.integers(0, 59), st.sampled_from("AaPp"))


@PROFILE
@given(clock_texts)
def test_a_clock_time_written_back_reads_the_same(text: str) -> None:
    clock = clock_time(text)
    assert clock is not None
    hour, minute = int(clock[:2]), int(clock[3:])
    assert clock_time(f"{hour % 12 or 12:02d}{minute:02d}{'A' if hour < 12 else 'P'}") == clock
    assert re.fullmatch(CLOCK_TIME, clock), "the history pipeline would store this time as null"


@PROFILE
@given(st.dates(min_value=date(1000, 1, 1)))
def test_every_real_date_reads_as_itself(day: date) -> None:
    assert iso_date(day.strftime("%m/%d/%Y")) == day.isoformat()


@PROFILE
@given(cell_texts | st.text(max_size=30))
def test_numbers_are_read_or_none(text: str) -> None:
    number = float_or_none(text)
    assert number is None or number - number == 0
    assert integer_or_none(text) is None or isinstance(integer_or_none(text), int)


@PROFILE
@given(st.binary(max_size=200))
def test_decoding_twice_changes_nothing(raw: bytes) -> None:
    """The Latin-1 fallback yields valid text: decoding its UTF-8 again does not compound the mojibake."""
    text = decode(raw)
    assert decode(text.encode("utf-8")) == text


# --- regressions: what the properties above found, pinned with the exact outcome -----------------

MINIMAL = {"message_id": "m", "drone_id": "d", "timestamp": "2026-11-28T17:00:00Z", "latitude": 0, "longitude": 0}


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-11-28T17:00:00.",  # IndexError: the fraction's first digit was read past the end
        "0001-01-01T00:30:00+01:00",
        "9999-12-31T23:59:59-01:00",
    ],  # OverflowError: year 0 / 10000 in UTC
)
def test_timestamps_that_used_to_raise_are_refused(timestamp: str) -> None:
    assert parse_message(orjson.dumps({**MINIMAL, "timestamp": timestamp})) == InvalidMessage("bad_timestamp", "timestamp")


def test_a_timestamp_before_year_1000_round_trips() -> None:
    """strftime's %Y wrote year 999 as ``999``, which the contract then refused."""
    message = parse_message(orjson.dumps({**MINIMAL, "timestamp": "0999-01-01T00:00:00Z"}))
    assert isinstance(message, DroneMessage)
    assert orjson.loads(encode_message(message))["timestamp"] == "0999-01-01T00:00:00.000Z"
    assert parse_message(encode_message(message)) == message


@pytest.mark.parametrize("name", ["latitude", "battery_pct"])
def test_an_int_past_a_doubles_range_is_out_of_range(name: str) -> None:
    assert validate_fields({**MINIMAL, name: 10**400}) == InvalidMessage("out_of_range", name)


@pytest.mark.parametrize(
    ("summons", "outcome"),
    [
        ("9" * 18, 999_999_999_999_999_999),
        ("9" * 19, "summons_number: more than 18 digits: '9999999999999999999'"),
        ("9" * 5000, f"summons_number: more than 18 digits: '{'9' * 40}…'"),
    ],
)
def test_summons_numbers_past_18_digits_are_rejected(summons: str, outcome: int | str) -> None:
    """5,000 digits raised int()'s ValueError; 19 and more do not fit the lake's int64 column."""
    result = parse_record(fields(summons), 4, LAYOUT_FY2017, WINDOW_FY2017)
    if isinstance(outcome, str):
        assert result == Rejected(4, outcome)
    else:
        assert not isinstance(result, Rejected) and result["summons_number"] == outcome


def test_integers_beyond_64_bits_are_kept_as_none() -> None:
    """Numbers a message cannot carry (5,000 or 30 digits) are unreadable as that column; the row is kept."""
    result = parse_record(
        fields(street_code1="9" * 5000, street_code2="9" * 30, street_code3="-" + "9" * 18, vehicle_year=str(2**63 - 1)),
        4,
        LAYOUT_FY2017,
        WINDOW_FY2017,
    )
    assert not isinstance(result, Rejected)
    assert [result[name] for name in ("street_code1", "street_code2", "street_code3", "vehicle_year")] == [
        None,
        None,
        -int("9" * 18),
        2**63 - 1,
    ]


def test_snake_case_drops_the_combining_mark_a_lower_case_adds() -> None:
    assert snake_case("İ Code") == "i_code" == snake_case(snake_case("İ Code"))
