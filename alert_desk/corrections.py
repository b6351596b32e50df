"""Resolving an alert: the corrected v1 message and its publication to the messages topic.

The correction is an ordinary drone message (same drone, picture, position and time, the
code the operator chose, ``resolves_message_id`` pointing at the original), so it flows into
the lake like any other. Its id is derived from the alert and the code: if the desk stops
after the broker took the correction but before the database recorded it, resolving again
sends the very same message, which the lake keeps once.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace

from confluent_kafka import KafkaError, Producer

from transforms.contract import DroneMessage, encode_message
from transforms.kafka_settings import KafkaSettings

_CORRECTION_NAMESPACE = uuid.UUID("2b0f6a52-8c1e-4d7a-b0f3-61c9d4a7e215")
ACK_TIMEOUT_S = 10.0


class PublishFailed(RuntimeError):
    """The broker did not acknowledge the correction; the message is meant for the operator."""


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
        self._producer = Producer(
            settings.producer_config(
                log_level=0, **{"linger.ms": 0, "message.timeout.ms": int(ACK_TIMEOUT_S * 1000)}
            )
        )
        self._lock = threading.Lock()

    def publish(self, message: DroneMessage) -> tuple[int, int]:
        """Produce keyed by drone, wait for acks=all; return (partition, offset) or raise PublishFailed."""
        outcome: dict[str, object] = {}
        delivered = threading.Event()

        def on_delivery(error: KafkaError | None, record: object) -> None:
            outcome["error"] = error
            outcome["record"] = record
            delivered.set()

        with self._lock:
            self._producer.produce(
                self.topic,
                key=message.drone_id.encode("utf-8"),
                value=encode_message(message),
                on_delivery=on_delivery,
                timestamp=message.event_ms,
            )
            deadline = time.monotonic() + ACK_TIMEOUT_S + 2
            while not delivered.is_set() and time.monotonic() < deadline:
                self._producer.poll(0.05)
        if not delivered.is_set():
            raise PublishFailed(f"the broker did not acknowledge the correction within {ACK_TIMEOUT_S:.0f} s")
        if outcome["error"] is not None:
            raise PublishFailed(f"the broker refused the correction: {outcome['error'].str()}")  # type: ignore[union-attr]
        record = outcome["record"]
        return record.partition(), record.offset()  # type: ignore[attr-defined]

    def close(self) -> None:
        self._producer.flush(ACK_TIMEOUT_S)
