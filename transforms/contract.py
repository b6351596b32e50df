"""The drone message contract, version 1: the one place that says what a valid message is.

Every component imports this module: the simulator builds messages with it, the stream
pipeline validates with it and encodes alerts, the alert desk decodes those alerts and
publishes corrections with it. A message is either a :class:`DroneMessage` or an
:class:`InvalidMessage` with a machine-readable reason, never an exception, so that bad
input ends in the dead letter instead of a crash; an alert likewise.
``schemas/drone_message_v1.schema.json`` states the same rules for other languages; a
test keeps the two in agreement.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

MAX_MESSAGE_BYTES = 64 * 1024
HUMAN_REVIEW_CODE = 100
MIN_DOF_CODE, MAX_DOF_CODE = 1, 99
# What a drone says of its own health; vibration_g and flight_hours (hours flown since its last
# maintenance) are what predictive maintenance reads beside the battery and the motors' heat.
HEALTH_FIELDS = ("battery_pct", "altitude_m", "speed_mps", "motor_temp_c", "vibration_g", "flight_hours")
# A message's kind: a routine report (the default, when ``kind`` is absent) or a drone's last word before
# it goes silent: a fault, which is what the maintenance model learns to see coming.
REPORT, FAULT = "report", "fault"
MESSAGE_KINDS = (REPORT, FAULT)
MAX_IMAGE_ID_LENGTH = 128
# An image id names the photo's file in the lake's object store (transforms/lake.py), so it is a
# file name on every store and never a path: letters, digits, '.', '_' and '-', not starting with
# a '.', '_' or '-' (no "..", no hidden or temporary file, no option-like name).
IMAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
IMAGE_ID_RULE = "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
# What no text field may hold: C0 and C1 control characters and line separators, and the
# bidirectional marks and overrides that make text display in another order than it is stored,
# so an id reads the same in the desk, a report and a log as in the message.
UNSAFE_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class Reason:
    """Machine-readable reasons an invalid message carries into the dead letter."""

    OVERSIZE = "oversize"
    NOT_UTF8 = "not_utf8"
    BAD_JSON = "bad_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_LENGTH = "bad_length"
    BAD_TIMESTAMP = "bad_timestamp"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    CODE_WITHOUT_IMAGE = "code_without_image"
    IMAGE_WITHOUT_CODE = "image_without_code"
    BAD_CHARACTERS = "bad_characters"
    UNKNOWN_KIND = "unknown_kind"


@dataclass(frozen=True, slots=True)
class InvalidMessage:
    """Why a message was refused: ``reason`` is one of :class:`Reason`, ``detail`` names the field."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class DroneMessage:
    """A valid v1 message. ``timestamp`` is timezone-aware and normalised to UTC."""

    message_id: str
    drone_id: str
    timestamp: datetime
    latitude: float
    longitude: float
    violation_code: int | None = None
    image_id: str | None = None
    battery_pct: float | None = None
    altitude_m: float | None = None
    speed_mps: float | None = None
    motor_temp_c: float | None = None
    vibration_g: float | None = None
    flight_hours: float | None = None
    resolves_message_id: str | None = None
    kind: str | None = None

    @property
    def is_fault(self) -> bool:
        """The drone reported a failure: its last message before it goes silent for repair."""
        return self.kind == FAULT

    @property
    def is_violation(self) -> bool:
        return self.violation_code is not None

    @property
    def needs_human(self) -> bool:
        """The drone could not classify what it saw: an operator must look at the picture."""
        return self.violation_code == HUMAN_REVIEW_CODE

    @property
    def event_ms(self) -> int:
        """The event time in milliseconds since the epoch: what producers stamp the Kafka record with."""
        return int(self.timestamp.timestamp() * 1000)


class _Refused(Exception):
    """Internal signal carrying an InvalidMessage out of the nested field checks."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.invalid = InvalidMessage(reason, detail)


def parse_message(raw: bytes) -> DroneMessage | InvalidMessage:
    """Decode and validate one message; return the typed record or why it was refused."""
    try:
        return _parse(raw)
    except _Refused as refused:
        return refused.invalid


def validate_fields(fields: dict[str, Any]) -> DroneMessage | InvalidMessage:
    """Validate an already-decoded JSON object (used where JSON was parsed in bulk)."""
    try:
        return _from_fields(fields)
    except _Refused as refused:
        return refused.invalid


def is_image_id(text: str) -> bool:
    """Whether ``text`` may be an image id: 1-128 characters of :data:`IMAGE_ID`, a file name on every store.

    The one rule for messages and for anyone who is handed an image id (the alert desk's photo requests).
    """
    return len(text) <= MAX_IMAGE_ID_LENGTH and IMAGE_ID.fullmatch(text) is not None


def encode_message(message: DroneMessage) -> bytes:
    """Compact JSON for a message; absent optional fields are left out."""
    return orjson.dumps(message_to_fields(message))


def message_to_fields(message: DroneMessage) -> dict[str, Any]:
    """The JSON object of a message, with the timestamp in RFC 3339 (milliseconds, ``Z``)."""
    fields: dict[str, Any] = {
        "message_id": message.message_id,
        "drone_id": message.drone_id,
        "timestamp": format_timestamp(message.timestamp),
        "latitude": message.latitude,
        "longitude": message.longitude,
    }
    for name in ("violation_code", "image_id", *HEALTH_FIELDS, "resolves_message_id", "kind"):
        value = getattr(message, name)
        if value is not None:
            fields[name] = value
    return fields


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision, e.g. ``2026-11-28T17:00:00.123Z``.

    ``isoformat`` rather than ``strftime``: glibc's ``%Y`` drops the leading zeros of
    years before 1000, which :func:`parse_timestamp` then refuses.
    """
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def parse_timestamp(text: str) -> datetime:
    """Parse RFC 3339 with a mandatory offset (the schema's pattern); raise ValueError otherwise.

    A positional check of the layout first, then ``datetime.fromisoformat``: several times
    faster than a regular expression on this hot path.
    """
    if not _looks_like_rfc3339(text):
        raise ValueError("not RFC 3339 with a timezone")
    moment = datetime.fromisoformat(text.replace("t", "T").replace("z", "Z"))
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:30:00+01:00 is in year 0 in UTC
        raise ValueError("outside the years 1 to 9999 in UTC") from None


def _looks_like_rfc3339(text: str) -> bool:
    """The separators of ``YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`` in place.

    ``fromisoformat`` then checks the digits and values; this check refuses the other
    ISO 8601 forms it would accept (basic format, no seconds, no offset).
    """
    return (
        len(text) >= 20
        and text[4] == "-"
        and text[7] == "-"
        and text[10] in "Tt"
        and text[13] == ":"
        and text[16] == ":"
        and (text[19] in "Zz+-" or (text[19] == "." and text[20:21].isdigit()))
        and (text[-1] in "Zz" or (text[-6] in "+-" and text[-3] == ":"))
        and text.isascii()
    )


def _parse(raw: bytes) -> DroneMessage:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise _Refused(Reason.OVERSIZE, f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _Refused(Reason.NOT_UTF8, f"byte {error.start}") from None
    try:
        fields = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise _Refused(Reason.BAD_JSON, str(error)[:200]) from None
    return _from_fields(fields)


def _from_fields(fields: Any) -> DroneMessage:
    if not isinstance(fields, dict):
        raise _Refused(Reason.NOT_AN_OBJECT, type(fields).__name__)
    violation_code = _optional_code(fields, "violation_code")
    image_id = _optional_image_id(fields, "image_id")
    if violation_code is not None and image_id is None:
        raise _Refused(Reason.CODE_WITHOUT_IMAGE, "image_id")
    if image_id is not None and violation_code is None:
        raise _Refused(Reason.IMAGE_WITHOUT_CODE, "violation_code")
    return DroneMessage(
        message_id=_required_text(fields, "message_id", 64),
        drone_id=_required_text(fields, "drone_id", 64),
        timestamp=_required_timestamp(fields, "timestamp"),
        latitude=_required_number(fields, "latitude", -90.0, 90.0),
        longitude=_required_number(fields, "longitude", -180.0, 180.0),
        violation_code=violation_code,
        image_id=image_id,
        battery_pct=_optional_number(fields, "battery_pct"),
        altitude_m=_optional_number(fields, "altitude_m"),
        speed_mps=_optional_number(fields, "speed_mps"),
        motor_temp_c=_optional_number(fields, "motor_temp_c"),
        vibration_g=_optional_number(fields, "vibration_g"),
        flight_hours=_optional_number(fields, "flight_hours"),
        resolves_message_id=_optional_text(fields, "resolves_message_id", 64),
        kind=_optional_kind(fields, "kind"),
    )


def _present(fields: dict[str, Any], name: str) -> Any:
    value = fields.get(name)
    if value is None:
        raise _Refused(Reason.MISSING_FIELD, name)
    return value


def _required_text(fields: dict[str, Any], name: str, max_length: int) -> str:
    return _checked_text(_present(fields, name), name, max_length)


def _optional_text(fields: dict[str, Any], name: str, max_length: int) -> str | None:
    value = fields.get(name)
    return None if value is None else _checked_text(value, name, max_length)


def _optional_image_id(fields: dict[str, Any], name: str) -> str | None:
    image_id = _optional_text(fields, name, MAX_IMAGE_ID_LENGTH)
    if image_id is not None and not is_image_id(image_id):
        raise _Refused(Reason.BAD_CHARACTERS, name)
    return image_id


def _checked_text(value: Any, name: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise _Refused(Reason.WRONG_TYPE, name)
    if not 1 <= len(value) <= max_length:
        raise _Refused(Reason.BAD_LENGTH, name)
    if UNSAFE_TEXT.search(value):
        raise _Refused(Reason.BAD_CHARACTERS, name)
    return value


def _required_timestamp(fields: dict[str, Any], name: str) -> datetime:
    value = _present(fields, name)
    if not isinstance(value, str):
        raise _Refused(Reason.WRONG_TYPE, name)
    try:
        return parse_timestamp(value)
    except ValueError:
        raise _Refused(Reason.BAD_TIMESTAMP, name) from None


def _required_number(fields: dict[str, Any], name: str, low: float, high: float) -> float:
    value = _checked_number(_present(fields, name), name)
    if not low <= value <= high:
        raise _Refused(Reason.OUT_OF_RANGE, name)
    return value


def _optional_number(fields: dict[str, Any], name: str) -> float | None:
    value = fields.get(name)
    return None if value is None else _checked_number(value, name)


def _checked_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Refused(Reason.WRONG_TYPE, name)
    try:
        number = float(value)
    except OverflowError:  # an int past a double's range: only Python callers of validate_fields have those
        raise _Refused(Reason.OUT_OF_RANGE, name) from None
    if not math.isfinite(number):
        raise _Refused(Reason.NOT_FINITE, name)
    return number


def _optional_kind(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Refused(Reason.WRONG_TYPE, name)
    if value not in MESSAGE_KINDS:
        raise _Refused(Reason.UNKNOWN_KIND, name)
    return value


def _optional_code(fields: dict[str, Any], name: str) -> int | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Refused(Reason.WRONG_TYPE, name)
    if not (MIN_DOF_CODE <= value <= MAX_DOF_CODE or value == HUMAN_REVIEW_CODE):
        raise _Refused(Reason.OUT_OF_RANGE, name)
    return value


# Alerts: what the stream pipeline publishes on the alerts topic for every code-100 message.
# The alert id is derived from the message id, so a resent alert is recognisably the same.
_ALERT_NAMESPACE = uuid.UUID("6f1c1b1e-3d2a-4a51-9a3c-5b0e2d7c9f10")


def alert_id_for(message_id: str) -> str:
    return str(uuid.uuid5(_ALERT_NAMESPACE, message_id))


def encode_alert(message: DroneMessage, raised_at: datetime, kafka_partition: int, kafka_offset: int) -> bytes:
    """The alert for a message that needs a human: the message itself, an ``alert_id`` and ``raised_at``."""
    return orjson.dumps(
        {
            "alert_id": alert_id_for(message.message_id),
            "raised_at": format_timestamp(raised_at),
            "message": message_to_fields(message),
            "kafka_partition": kafka_partition,
            "kafka_offset": kafka_offset,
        }
    )


# The alert's reader lives here too, beside its writer, so the two cannot drift apart: the
# desk decodes with it. An alert is a message plus a few fields; anything much larger is not
# an alert, and is refused before it is parsed.
MAX_ALERT_BYTES = MAX_MESSAGE_BYTES + 1024


class AlertReason:
    """Machine-readable reasons an alerts-topic record is not an alert."""

    OVERSIZE = "oversize"
    BAD_JSON = "bad_json"
    NOT_AN_OBJECT = "not_an_object"
    BAD_FIELD = "bad_field"
    BAD_MESSAGE = "bad_message"
    NOT_FOR_HUMANS = "not_for_humans"
    ALERT_ID_MISMATCH = "alert_id_mismatch"


@dataclass(frozen=True, slots=True)
class DroneAlert:
    """A decoded alert: a code-100 message, its derived id, when it was raised and where the message
    sat in the messages topic (``None`` where a writer left that out)."""

    alert_id: str
    raised_at: datetime
    message: DroneMessage
    kafka_partition: int | None = None
    kafka_offset: int | None = None


@dataclass(frozen=True, slots=True)
class InvalidAlert:
    """Why a record is not an alert: ``reason`` is one of :class:`AlertReason`, ``detail`` says more."""

    reason: str
    detail: str


def decode_alert(raw: bytes) -> DroneAlert | InvalidAlert:
    """Decode and check what :func:`encode_alert` wrote; never raises.

    The alert id must be the one derived from the message id, so a resent alert is known as the
    same alert and a forged id cannot shadow another one.
    """
    fields = _alert_object(raw)
    if isinstance(fields, InvalidAlert):
        return fields
    header = _alert_header(fields)
    if isinstance(header, InvalidAlert):
        return header
    message = validate_fields(fields.get("message"))
    if isinstance(message, InvalidMessage):
        return InvalidAlert(AlertReason.BAD_MESSAGE, f"{message.reason}: {message.detail}")
    if not message.needs_human:
        return InvalidAlert(AlertReason.NOT_FOR_HUMANS, f"violation_code {message.violation_code}")
    alert_id, raised_at, kafka_partition, kafka_offset = header
    if alert_id != alert_id_for(message.message_id):
        return InvalidAlert(AlertReason.ALERT_ID_MISMATCH, alert_id[:64])
    return DroneAlert(alert_id, raised_at, message, kafka_partition, kafka_offset)


def _alert_object(raw: bytes) -> dict[str, Any] | InvalidAlert:
    if len(raw) > MAX_ALERT_BYTES:
        return InvalidAlert(AlertReason.OVERSIZE, f"{len(raw)} bytes > {MAX_ALERT_BYTES}")
    try:
        fields = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return InvalidAlert(AlertReason.BAD_JSON, str(error)[:200])
    if not isinstance(fields, dict):
        return InvalidAlert(AlertReason.NOT_AN_OBJECT, type(fields).__name__)
    return fields


def _alert_header(fields: dict[str, Any]) -> tuple[str, datetime, int | None, int | None] | InvalidAlert:
    """The alert's own fields around the message: id, raised_at, the message's topic position."""
    alert_id, raised_at_text = fields.get("alert_id"), fields.get("raised_at")
    if not isinstance(alert_id, str) or not isinstance(raised_at_text, str):
        return InvalidAlert(AlertReason.BAD_FIELD, "alert_id and raised_at must be strings")
    try:
        raised_at = parse_timestamp(raised_at_text)
    except ValueError:
        return InvalidAlert(AlertReason.BAD_FIELD, "raised_at")
    position = [fields.get(name) for name in ("kafka_partition", "kafka_offset")]
    for name, value in zip(("kafka_partition", "kafka_offset"), position):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            return InvalidAlert(AlertReason.BAD_FIELD, name)
    return alert_id, raised_at, position[0], position[1]


# Maintenance alerts: the stream's warning that a drone is likely to fail soon, on the same alerts topic as the
# violations' alerts and told apart by ``"kind": "maintenance"`` (a violation's alert has no kind). One per drone
# per episode: its id is derived from the message whose health first crossed the threshold, so a resent alert
# is recognisably the same one.
MAINTENANCE = "maintenance"
_MAINTENANCE_NAMESPACE = uuid.UUID("2a7d4c3e-81f0-4b6a-9e55-c0d9b8a71f42")


@dataclass(frozen=True, slots=True)
class MaintenanceAlert:
    """A drone whose failure risk crossed ``threshold``: ``message_id`` is the message it was scored on
    (``scored_at`` its event time), ``failure_risk`` the model's probability of failure within its horizon."""

    alert_id: str
    raised_at: datetime
    drone_id: str
    message_id: str
    scored_at: datetime
    failure_risk: float
    threshold: float


def maintenance_alert_id(message_id: str) -> str:
    return str(uuid.uuid5(_MAINTENANCE_NAMESPACE, message_id))


def encode_maintenance_alert(alert: MaintenanceAlert) -> bytes:
    return orjson.dumps(
        {
            "kind": MAINTENANCE,
            "alert_id": alert.alert_id,
            "raised_at": format_timestamp(alert.raised_at),
            "drone_id": alert.drone_id,
            "message_id": alert.message_id,
            "scored_at": format_timestamp(alert.scored_at),
            "failure_risk": alert.failure_risk,
            "threshold": alert.threshold,
        }
    )


def decode_maintenance_alert(raw: bytes) -> MaintenanceAlert | InvalidAlert:
    """Decode and check what :func:`encode_maintenance_alert` wrote; never raises."""
    fields = _alert_object(raw)
    return fields if isinstance(fields, InvalidAlert) else _maintenance_from_fields(fields)


def decode_any_alert(raw: bytes) -> DroneAlert | MaintenanceAlert | InvalidAlert:
    """An alerts-topic record of either kind: what the desk's reader takes."""
    fields = _alert_object(raw)
    if isinstance(fields, InvalidAlert):
        return fields
    if fields.get("kind") == MAINTENANCE:
        return _maintenance_from_fields(fields)
    return decode_alert(raw)


def _maintenance_from_fields(fields: dict[str, Any]) -> MaintenanceAlert | InvalidAlert:
    if fields.get("kind") != MAINTENANCE:
        return InvalidAlert(AlertReason.BAD_FIELD, "kind")
    try:
        texts = {name: _checked_text(fields.get(name), name, 64) for name in ("alert_id", "drone_id", "message_id")}
        moments = {name: _required_timestamp(fields, name) for name in ("raised_at", "scored_at")}
        risk = _required_number(fields, "failure_risk", 0.0, 1.0)
        threshold = _required_number(fields, "threshold", 0.0, 1.0)
    except _Refused as refused:
        return InvalidAlert(AlertReason.BAD_FIELD, f"{refused.invalid.detail}: {refused.invalid.reason}")
    if texts["alert_id"] != maintenance_alert_id(texts["message_id"]):
        return InvalidAlert(AlertReason.ALERT_ID_MISMATCH, texts["alert_id"])
    return MaintenanceAlert(
        texts["alert_id"], moments["raised_at"], texts["drone_id"], texts["message_id"], moments["scored_at"], risk, threshold
    )
