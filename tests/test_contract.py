"""The message contract v1: one test per rule, and the JSON Schema agreeing with the code."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.contract import (
    HUMAN_REVIEW_CODE,
    MAX_MESSAGE_BYTES,
    DroneMessage,
    InvalidMessage,
    Reason,
    encode_message,
    parse_message,
)

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "transforms" / "schemas" / "drone_message_v1.schema.json").read_text()
)
VALID = {
    "message_id": "m-1",
    "drone_id": "drone-007",
    "timestamp": "2026-11-28T17:00:00.123Z",
    "latitude": 40.7128,
    "longitude": -74.006,
}


def with_fields(**changes: object) -> bytes:
    fields = {**VALID, **changes}
    return orjson.dumps({name: value for name, value in fields.items() if value is not ...})


def reason_of(raw: bytes) -> tuple[str, str]:
    result = parse_message(raw)
    assert isinstance(result, InvalidMessage), result
    return result.reason, result.detail


def test_minimal_message_is_valid_and_typed() -> None:
    message = parse_message(with_fields())
    assert isinstance(message, DroneMessage)
    assert message.timestamp == datetime(2026, 11, 28, 17, 0, 0, 123000, tzinfo=timezone.utc)
    assert message.violation_code is None and not message.is_violation and not message.needs_human


def test_violation_with_image_and_health_fields() -> None:
    message = parse_message(
        with_fields(violation_code=21, image_id="img-1", battery_pct=80, altitude_m=30.5, speed_mps=4, motor_temp_c=41.2)
    )
    assert isinstance(message, DroneMessage)
    assert (message.violation_code, message.image_id, message.battery_pct) == (21, "img-1", 80.0)


def test_code_100_needs_a_human() -> None:
    message = parse_message(with_fields(violation_code=HUMAN_REVIEW_CODE, image_id="img-2"))
    assert isinstance(message, DroneMessage) and message.needs_human


def test_timezone_offsets_are_normalised_to_utc() -> None:
    message = parse_message(with_fields(timestamp="2026-11-28T12:00:00-05:00"))
    assert isinstance(message, DroneMessage)
    assert message.timestamp == datetime(2026, 11, 28, 17, 0, tzinfo=timezone.utc)


def test_unknown_fields_are_ignored() -> None:
    assert isinstance(parse_message(with_fields(firmware="1.2.3", extra={"a": 1})), DroneMessage)


def test_null_violation_code_means_no_violation() -> None:
    message = parse_message(with_fields(violation_code=None, image_id=None))
    assert isinstance(message, DroneMessage) and message.violation_code is None


def test_encode_round_trips() -> None:
    message = parse_message(with_fields(violation_code=14, image_id="i", resolves_message_id="m-0"))
    assert isinstance(message, DroneMessage)
    assert parse_message(encode_message(message)) == message


@pytest.mark.parametrize(
    ("raw", "reason", "detail"),
    [
        (b"{not json", Reason.BAD_JSON, None),
        (b'{"latitude": NaN}', Reason.BAD_JSON, None),
        (b"[1, 2]", Reason.NOT_AN_OBJECT, "list"),
        (b'"text"', Reason.NOT_AN_OBJECT, "str"),
        (b'{"message_id": "\xff"}', Reason.NOT_UTF8, None),
        (with_fields(message_id=...), Reason.MISSING_FIELD, "message_id"),
        (with_fields(drone_id=...), Reason.MISSING_FIELD, "drone_id"),
        (with_fields(timestamp=...), Reason.MISSING_FIELD, "timestamp"),
        (with_fields(latitude=...), Reason.MISSING_FIELD, "latitude"),
        (with_fields(longitude=None), Reason.MISSING_FIELD, "longitude"),
        (with_fields(message_id=""), Reason.BAD_LENGTH, "message_id"),
        (with_fields(message_id="x" * 65), Reason.BAD_LENGTH, "message_id"),
        (with_fields(drone_id="d" * 65), Reason.BAD_LENGTH, "drone_id"),
        (with_fields(drone_id=7), Reason.WRONG_TYPE, "drone_id"),
        (with_fields(timestamp=1732813200), Reason.WRONG_TYPE, "timestamp"),
        (with_fields(timestamp="2026-11-28T17:00:00"), Reason.BAD_TIMESTAMP, "timestamp"),
        (with_fields(timestamp="2026-11-28 17:00:00Z"), Reason.BAD_TIMESTAMP, "timestamp"),
        (with_fields(timestamp="2026-02-30T17:00:00Z"), Reason.BAD_TIMESTAMP, "timestamp"),
        (with_fields(timestamp="yesterday"), Reason.BAD_TIMESTAMP, "timestamp"),
        (with_fields(latitude="40.7"), Reason.WRONG_TYPE, "latitude"),
        (with_fields(latitude=True), Reason.WRONG_TYPE, "latitude"),
        (with_fields(latitude=90.0001), Reason.OUT_OF_RANGE, "latitude"),
        (with_fields(longitude=-180.5), Reason.OUT_OF_RANGE, "longitude"),
        (with_fields(violation_code=0, image_id="i"), Reason.OUT_OF_RANGE, "violation_code"),
        (with_fields(violation_code=101, image_id="i"), Reason.OUT_OF_RANGE, "violation_code"),
        (with_fields(violation_code="21", image_id="i"), Reason.WRONG_TYPE, "violation_code"),
        (with_fields(violation_code=21.5, image_id="i"), Reason.WRONG_TYPE, "violation_code"),
        (with_fields(violation_code=21), Reason.CODE_WITHOUT_IMAGE, "image_id"),
        (with_fields(image_id="img"), Reason.IMAGE_WITHOUT_CODE, "violation_code"),
        (with_fields(violation_code=21, image_id="i" * 129), Reason.BAD_LENGTH, "image_id"),
        (with_fields(battery_pct="full"), Reason.WRONG_TYPE, "battery_pct"),
        (with_fields(resolves_message_id=5), Reason.WRONG_TYPE, "resolves_message_id"),
    ],
)
def test_each_rule_refuses_with_its_reason(raw: bytes, reason: str, detail: str | None) -> None:
    got_reason, got_detail = reason_of(raw)
    assert got_reason == reason
    if detail is not None:
        assert got_detail == detail


def test_huge_number_is_refused() -> None:
    assert reason_of(b'{"latitude": 1e400}')[0] == Reason.BAD_JSON


def test_oversize_message_is_refused_before_parsing() -> None:
    raw = with_fields(padding="x" * MAX_MESSAGE_BYTES)
    assert reason_of(raw) == (Reason.OVERSIZE, f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}")


def test_message_at_the_size_limit_is_accepted() -> None:
    base = with_fields(padding="")
    raw = with_fields(padding="x" * (MAX_MESSAGE_BYTES - len(base)))
    assert len(raw) == MAX_MESSAGE_BYTES
    assert isinstance(parse_message(raw), DroneMessage)


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


# Agreement between the schema and the code, over generated objects near the rules' edges.
# Timestamps are drawn from real calendar dates: JSON Schema's date-time format is
# advisory, so impossible dates are the one rule only the code enforces.
texts = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.text(min_size=0, max_size=70))
numbers = st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.floats(-200, 200), st.integers(-200, 200))
codes = st.one_of(st.none(), st.integers(-1, 102), st.floats(0, 101), st.just("21"))
timestamps = st.one_of(
    st.datetimes(timezones=st.just(timezone.utc)).map(lambda moment: moment.isoformat().replace("+00:00", "Z")),
    st.datetimes().map(lambda moment: moment.isoformat()),
    st.integers(0, 2**40),
)
field_values = {
    "message_id": texts,
    "drone_id": texts,
    "timestamp": timestamps,
    "latitude": numbers,
    "longitude": numbers,
    "violation_code": codes,
    "image_id": texts,
    "battery_pct": numbers,
}


@st.composite
def candidate_messages(draw: st.DrawFn) -> dict[str, object]:
    candidate = {}
    for name, strategy in field_values.items():
        if draw(st.booleans()) or name in ("message_id", "timestamp"):
            candidate[name] = draw(strategy)
    return candidate


@settings(max_examples=400, deadline=None)
@given(candidate_messages())
def test_schema_and_code_agree(candidate: dict[str, object]) -> None:
    schema_valid = jsonschema.Draft202012Validator(SCHEMA).is_valid(candidate)
    code_valid = isinstance(parse_message(orjson.dumps(candidate)), DroneMessage)
    assert schema_valid == code_valid, candidate


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_a_record_or_a_reason(raw: bytes) -> None:
    assert isinstance(parse_message(raw), (DroneMessage, InvalidMessage))
