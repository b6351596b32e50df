"""What the desk reads from the alerts topic: one :class:`Alert`, or a :class:`RefusedAlert` with why.

The stream pipeline writes alerts with :func:`transforms.contract.encode_alert`; this module
is its reader. The message inside is checked by the contract itself, and the alert id must be
the one the contract derives from the message id, so a resent alert is recognised as the same
alert and a forged id cannot shadow another alert. Text the desk cannot keep or show safely is
refused here too: PostgreSQL's text columns cannot hold a NUL character, and a reason is
printed to the log, so it is made of printable characters only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson

from alert_desk.geo import borough_of
from transforms.contract import (
    MAX_MESSAGE_BYTES,
    DroneMessage,
    InvalidMessage,
    alert_id_for,
    parse_timestamp,
    validate_fields,
)

# An alert is a message plus a few fields; anything much larger is not an alert.
MAX_ALERT_BYTES = MAX_MESSAGE_BYTES + 1024


class AlertReason:
    """Machine-readable reasons an alert record is refused (stored with the record's offset)."""

    OVERSIZE = "oversize"
    BAD_JSON = "bad_json"
    NOT_AN_OBJECT = "not_an_object"
    BAD_FIELD = "bad_field"
    BAD_MESSAGE = "bad_message"
    NOT_FOR_HUMANS = "not_for_humans"
    ALERT_ID_MISMATCH = "alert_id_mismatch"
    NUL_IN_TEXT = "nul_in_text"


@dataclass(frozen=True, slots=True)
class Alert:
    """A code-100 message an operator must look at, with where it sits in the alerts topic."""

    alert_id: str
    raised_at: datetime
    message: DroneMessage
    borough: str | None
    source_partition: int
    source_offset: int


@dataclass(frozen=True, slots=True)
class RefusedAlert:
    """A record of the alerts topic that is not a valid alert; kept so nothing vanishes silently."""

    reason: str
    detail: str
    source_partition: int
    source_offset: int
    raw: bytes


def parse_alert(raw: bytes, partition: int, offset: int) -> Alert | RefusedAlert:
    """Decode one alerts-topic record; never raises."""

    def refused(reason: str, detail: str) -> RefusedAlert:
        return RefusedAlert(reason, printable(detail), partition, offset, raw[:4096])

    if len(raw) > MAX_ALERT_BYTES:
        return refused(AlertReason.OVERSIZE, f"{len(raw)} bytes > {MAX_ALERT_BYTES}")
    try:
        fields = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return refused(AlertReason.BAD_JSON, str(error)[:200])
    if not isinstance(fields, dict):
        return refused(AlertReason.NOT_AN_OBJECT, type(fields).__name__)
    alert_id, raised_at_text = fields.get("alert_id"), fields.get("raised_at")
    if not isinstance(alert_id, str) or not isinstance(raised_at_text, str):
        return refused(AlertReason.BAD_FIELD, "alert_id and raised_at must be strings")
    try:
        raised_at = parse_timestamp(raised_at_text)
    except ValueError:
        return refused(AlertReason.BAD_FIELD, "raised_at")
    message = validate_fields(fields.get("message"))
    if isinstance(message, InvalidMessage):
        return refused(AlertReason.BAD_MESSAGE, f"{message.reason}: {message.detail}")
    if not message.needs_human:
        return refused(AlertReason.NOT_FOR_HUMANS, f"violation_code {message.violation_code}")
    if alert_id != alert_id_for(message.message_id):
        return refused(AlertReason.ALERT_ID_MISMATCH, alert_id[:64])
    with_nul = [name for name in ("message_id", "drone_id", "image_id") if "\x00" in (getattr(message, name) or "")]
    if with_nul:
        return refused(AlertReason.NUL_IN_TEXT, ", ".join(with_nul))
    return Alert(
        alert_id=alert_id,
        raised_at=raised_at,
        message=message,
        borough=borough_of(message.latitude, message.longitude),
        source_partition=partition,
        source_offset=offset,
    )


def printable(text: str) -> str:
    """``text`` with control and other unprintable characters escaped, so a log line stays one line."""
    return "".join(character if character.isprintable() else f"\\x{ord(character):02x}" for character in text)
