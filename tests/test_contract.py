"""The message contract v1: one test per rule, the JSON Schema agreeing with the code, and alerts
that decode to what was encoded."""

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
    MAX_ALERT_BYTES,
    MAX_MESSAGE_BYTES,
    AlertReason,
    DroneAlert,
    DroneMessage,
    InvalidAlert,
    InvalidMessage,
    MaintenanceAlert,
    Reason,
    alert_id_for,
    decode_alert,
    decode_any_alert,
    decode_maintenance_alert,
    encode_alert,
    encode_maintenance_alert,
    encode_message,
    is_image_id,
    maintenance_alert_id,
    parse_message,
)

SCHEMA = json.loads((Path(__file__).parents[1] / "transforms" / "schemas" / "drone_message_v1.schema.json").read_text())
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


def test_wear_readings_and_a_fault_are_typed_and_round_trip() -> None:
    message = parse_message(with_fields(vibration_g=0.42, flight_hours=12, kind="fault", motor_temp_c=61.5))
    assert isinstance(message, DroneMessage)
    assert (message.vibration_g, message.flight_hours, message.kind, message.is_fault) == (0.42, 12.0, "fault", True)
    assert parse_message(encode_message(message)) == message
    report = parse_message(with_fields(kind="report"))
    assert isinstance(report, DroneMessage) and not report.is_fault
    plain = parse_message(with_fields())
    assert isinstance(plain, DroneMessage) and plain.kind is None and not plain.is_fault
    assert b"kind" not in encode_message(plain), "a routine report is sent as before, without a kind"


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
        (with_fields(violation_code=21, image_id="../../etc/passwd"), Reason.BAD_CHARACTERS, "image_id"),
        (with_fields(violation_code=21, image_id="img 1"), Reason.BAD_CHARACTERS, "image_id"),
        (with_fields(violation_code=21, image_id=".hidden"), Reason.BAD_CHARACTERS, "image_id"),
        (with_fields(violation_code=21, image_id="img-1\n"), Reason.BAD_CHARACTERS, "image_id"),
        (with_fields(drone_id="drone-7\n# forged heading"), Reason.BAD_CHARACTERS, "drone_id"),
        (with_fields(drone_id="drone-\u202e7"), Reason.BAD_CHARACTERS, "drone_id"),  # displays reversed
        (with_fields(message_id="m\x00"), Reason.BAD_CHARACTERS, "message_id"),
        (with_fields(resolves_message_id="m\x85"), Reason.BAD_CHARACTERS, "resolves_message_id"),
        (with_fields(battery_pct="full"), Reason.WRONG_TYPE, "battery_pct"),
        (with_fields(vibration_g="high"), Reason.WRONG_TYPE, "vibration_g"),
        (with_fields(flight_hours=True), Reason.WRONG_TYPE, "flight_hours"),
        (b'{"flight_hours": 1e400}', Reason.BAD_JSON, None),
        (with_fields(kind="crash"), Reason.UNKNOWN_KIND, "kind"),
        (with_fields(kind=1), Reason.WRONG_TYPE, "kind"),
        (with_fields(resolves_message_id=5), Reason.WRONG_TYPE, "resolves_message_id"),
    ],
)
def test_each_rule_refuses_with_its_reason(raw: bytes, reason: str, detail: str | None) -> None:
    got_reason, got_detail = reason_of(raw)
    assert got_reason == reason
    if detail is not None:
        assert got_detail == detail


def test_an_image_id_is_a_file_name_never_a_path() -> None:
    """What the desk checks a photo request's image id with: the same rule as the message's."""
    assert all(is_image_id(text) for text in ("img-1", "i", "IMG_2026.11.28-a", "9" * 128))
    assert not any(is_image_id(text) for text in ("", "..", ".", "-x", "_tmp", "a/b", "a\\b", "9" * 129, "é", "img\n"))


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
    "vibration_g": numbers,
    "flight_hours": numbers,
    "kind": st.one_of(st.none(), st.sampled_from(["report", "fault", "Fault", ""]), st.integers(0, 2)),
    "resolves_message_id": texts,
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


# Alerts: the reader beside the writer.


def human_review(**changes: object) -> DroneMessage:
    message = parse_message(with_fields(violation_code=HUMAN_REVIEW_CODE, image_id="img-9", battery_pct=55.5, **changes))
    assert isinstance(message, DroneMessage), message
    return message


def alert_fields(alerted: DroneMessage, **changes: object) -> bytes:
    """The alert of ``alerted`` as encode_alert writes it, with fields changed (``...`` leaves one out)."""
    fields = {**orjson.loads(encode_alert(alerted, datetime(2026, 11, 28, 17, 1, tzinfo=timezone.utc), 0, 9)), **changes}
    return orjson.dumps({name: value for name, value in fields.items() if value is not ...})


def test_an_alert_decodes_to_what_was_encoded() -> None:
    message = human_review(resolves_message_id="m-0")
    raised_at = datetime(2026, 11, 28, 17, 0, 5, 678901, tzinfo=timezone.utc)
    decoded = decode_alert(encode_alert(message, raised_at, 3, 2**40))
    assert decoded == DroneAlert(alert_id_for(message.message_id), raised_at.replace(microsecond=678000), message, 3, 2**40)


@settings(max_examples=200, deadline=None)
@given(
    raised_at=st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(timezone.utc)),
    partition=st.integers(0, 2**31 - 1),
    offset=st.integers(0, 2**63 - 1),
    message_id=st.text(st.characters(exclude_categories=("Cc", "Cf", "Cs")), min_size=1, max_size=64),
    latitude=st.floats(-90, 90),
    longitude=st.floats(-180, 180),
)
def test_any_alert_round_trips(
    raised_at: datetime, partition: int, offset: int, message_id: str, latitude: float, longitude: float
) -> None:
    message = human_review(message_id=message_id, latitude=latitude, longitude=longitude)
    decoded = decode_alert(encode_alert(message, raised_at, partition, offset))
    assert isinstance(decoded, DroneAlert), decoded
    assert (decoded.message, decoded.kafka_partition, decoded.kafka_offset) == (message, partition, offset)
    assert decoded.alert_id == alert_id_for(message_id)
    assert decoded.raised_at == raised_at.replace(microsecond=raised_at.microsecond // 1000 * 1000)


def test_an_alert_without_the_message_position_still_decodes() -> None:
    message = human_review()
    decoded = decode_alert(alert_fields(message, kafka_partition=..., kafka_offset=...))
    assert isinstance(decoded, DroneAlert) and (decoded.kafka_partition, decoded.kafka_offset) == (None, None)


@pytest.mark.parametrize(
    ("raw", "reason", "detail"),
    [
        (b"[1, 2]", AlertReason.NOT_AN_OBJECT, "list"),
        (b"{oops", AlertReason.BAD_JSON, None),
        (b'{"alert_id": 1}', AlertReason.BAD_FIELD, "alert_id and raised_at must be strings"),
        (alert_fields(human_review(), raised_at="yesterday"), AlertReason.BAD_FIELD, "raised_at"),
        (alert_fields(human_review(), kafka_offset=-1), AlertReason.BAD_FIELD, "kafka_offset"),
        (alert_fields(human_review(), kafka_partition=True), AlertReason.BAD_FIELD, "kafka_partition"),
        (alert_fields(human_review(), message={"message_id": "m-1"}), AlertReason.BAD_MESSAGE, "missing_field: drone_id"),
        (alert_fields(human_review(), message=[]), AlertReason.BAD_MESSAGE, "not_an_object: list"),
        (alert_fields(human_review(), message=...), AlertReason.BAD_MESSAGE, "not_an_object: NoneType"),
        (
            encode_alert(parse_message(with_fields(violation_code=21, image_id="i")), datetime.now(timezone.utc), 0, 0),  # type: ignore[arg-type]
            AlertReason.NOT_FOR_HUMANS,
            "violation_code 21",
        ),
        (
            alert_fields(human_review(), alert_id="00000000-0000-0000-0000-000000000000"),
            AlertReason.ALERT_ID_MISMATCH,
            "00000000-0000-0000-0000-000000000000",
        ),
        (b" " * (MAX_ALERT_BYTES + 1), AlertReason.OVERSIZE, f"{MAX_ALERT_BYTES + 1} bytes > {MAX_ALERT_BYTES}"),
    ],
)
def test_each_alert_rule_refuses_with_its_reason(raw: bytes, reason: str, detail: str | None) -> None:
    refused = decode_alert(raw)
    assert isinstance(refused, InvalidAlert), refused
    assert refused.reason == reason
    if detail is not None:
        assert refused.detail == detail


def test_an_alert_at_the_size_limit_is_decoded() -> None:
    base = alert_fields(human_review(), padding="")
    at_limit = alert_fields(human_review(), padding="x" * (MAX_ALERT_BYTES - len(base)))
    assert len(at_limit) == MAX_ALERT_BYTES and isinstance(decode_alert(at_limit), DroneAlert)
    assert decode_alert(at_limit.replace(b'"padding":"', b'"padding":"x')).reason == AlertReason.OVERSIZE  # type: ignore[union-attr]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_an_alert_or_a_reason(raw: bytes) -> None:
    assert isinstance(decode_alert(raw), (DroneAlert, InvalidAlert))


# Maintenance alerts: the same topic, their own kind.


def maintenance(**changes: object) -> MaintenanceAlert:
    fields = {
        "alert_id": maintenance_alert_id("m-7"),
        "raised_at": datetime(2026, 11, 28, 17, 0, 1, 500000, tzinfo=timezone.utc),
        "drone_id": "drone-0003",
        "message_id": "m-7",
        "scored_at": datetime(2026, 11, 28, 16, 59, 58, tzinfo=timezone.utc),
        "failure_risk": 0.83,
        "threshold": 0.5,
        **changes,
    }
    return MaintenanceAlert(**fields)  # type: ignore[arg-type]


def test_a_maintenance_alert_decodes_to_what_was_encoded_and_is_told_from_a_violations_alert() -> None:
    alert = maintenance()
    raw = encode_maintenance_alert(alert)
    assert orjson.loads(raw)["kind"] == "maintenance"
    assert decode_maintenance_alert(raw) == decode_any_alert(raw) == alert
    violation = encode_alert(human_review(), datetime(2026, 11, 28, 17, 1, tzinfo=timezone.utc), 0, 9)
    assert isinstance(decode_any_alert(violation), DroneAlert)
    assert decode_maintenance_alert(violation) == InvalidAlert(AlertReason.BAD_FIELD, "kind")
    assert decode_alert(raw).reason == AlertReason.BAD_MESSAGE  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("changes", "reason", "detail"),
    [
        ({"failure_risk": 1.5}, AlertReason.BAD_FIELD, "failure_risk: out_of_range"),
        ({"threshold": "high"}, AlertReason.BAD_FIELD, "threshold: wrong_type"),
        ({"scored_at": "yesterday"}, AlertReason.BAD_FIELD, "scored_at: bad_timestamp"),
        ({"drone_id": ""}, AlertReason.BAD_FIELD, "drone_id: bad_length"),
        ({"alert_id": "forged"}, AlertReason.ALERT_ID_MISMATCH, "forged"),
    ],
)
def test_each_maintenance_alert_rule_refuses_with_its_reason(changes: dict, reason: str, detail: str) -> None:
    fields = {**orjson.loads(encode_maintenance_alert(maintenance())), **changes}
    assert decode_any_alert(orjson.dumps(fields)) == InvalidAlert(reason, detail)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_an_alert_of_either_kind_or_a_reason(raw: bytes) -> None:
    assert isinstance(decode_any_alert(raw), (DroneAlert, MaintenanceAlert, InvalidAlert))
