"""What the desk makes of an alerts-topic record: an :class:`Alert` to keep, or a :class:`RefusedAlert` with why.

The alert format is the contract's: :func:`transforms.contract.decode_alert` decodes and
checks it, beside the encoder the stream pipeline writes with. This module adds only what
the desk needs: the borough, where the record sits in the alerts topic, and a refusal of text
the desk cannot keep or show safely (PostgreSQL's text columns cannot hold a NUL character,
and a reason is printed to the log, so it is made of printable characters only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from transforms.contract import DroneMessage, InvalidAlert, MaintenanceAlert, decode_any_alert
from transforms.geo import borough_of

RAW_KEPT_BYTES = 4096


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
    """A record of the alerts topic that is not a valid alert; kept so nothing vanishes silently.

    ``reason`` is one of :class:`transforms.contract.AlertReason`.
    """

    reason: str
    detail: str
    source_partition: int
    source_offset: int
    raw: bytes


def parse_alert(raw: bytes, partition: int, offset: int) -> Alert | MaintenanceAlert | RefusedAlert:
    """Decode one alerts-topic record, of either kind (a violation's or a maintenance alert); never raises."""
    decoded = decode_any_alert(raw)
    if isinstance(decoded, InvalidAlert):
        return RefusedAlert(decoded.reason, printable(decoded.detail), partition, offset, raw[:RAW_KEPT_BYTES])
    if isinstance(decoded, MaintenanceAlert):
        return decoded  # its texts, like a message's, hold no NUL (which no database takes) nor other control character
    message = decoded.message  # its text holds no NUL (which no database takes) nor other control character
    return Alert(
        alert_id=decoded.alert_id,
        raised_at=decoded.raised_at,
        message=message,
        borough=borough_of(message.latitude, message.longitude),
        source_partition=partition,
        source_offset=offset,
    )


def printable(text: str) -> str:
    """``text`` with control and other unprintable characters escaped, so a log line stays one line."""
    return "".join(character if character.isprintable() else f"\\x{ord(character):02x}" for character in text)
