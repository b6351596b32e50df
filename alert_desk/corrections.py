"""Resolving an alert: the corrected v1 message and its publication to the messages topic.

The correction is an ordinary drone message (same drone, picture, position and time, the
code the operator chose, ``resolves_message_id`` pointing at the original), so it flows into
the lake like any other. Its id is derived from the alert and the code: if the desk stops
after the broker took the correction but before the database recorded it, resolving again
sends the very same message, which the lake keeps once.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from transforms.contract import DroneMessage, encode_message
from transforms.kafka_producer import AcknowledgedProducer
from transforms.kafka_settings import KafkaSettings

_CORRECTION_NAMESPACE = uuid.UUID("2b0f6a52-8c1e-4d7a-b0f3-61c9d4a7e215")
ACK_TIMEOUT_S = 10.0


def correction_message_id(alert_id: str, violation_code: int) -> str:
    return str(uuid.uuid5(_CORRECTION_NAMESPACE, f"{alert_id}:{violation_code}"))


def build_correction(original: DroneMessage, alert_id: str, violation_code: int) -> DroneMessage:
    """The original sighting, classified by a human: health readings stay with the original."""
    return replace(
        original,
        message_id=correction_message_id(alert_id, violation_code),
        violation_code=violation_code,
        battery_pct=None,
        altitude_m=None,
        speed_mps=None,
        motor_temp_c=None,
        resolves_message_id=original.message_id,
    )


class CorrectionPublisher:
    """One idempotent producer; :meth:`publish` returns only once the broker has the message."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.topic = topic
        overrides = {"log_level": 0, "linger.ms": 0, "message.timeout.ms": int(ACK_TIMEOUT_S * 1000)}
        self._producer = AcknowledgedProducer(settings, topic, **overrides)

    def publish(self, message: DroneMessage) -> tuple[int, int]:
        """Produce keyed by drone, wait for acks=all; return (partition, offset) or raise DeliveryFailed."""
        key, value = message.drone_id.encode("utf-8"), encode_message(message)
        return self._producer.send_and_wait(key, value, ACK_TIMEOUT_S + 2, "the correction", message.event_ms)

    def close(self) -> None:
        self._producer.close(ACK_TIMEOUT_S)
