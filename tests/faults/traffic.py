"""Invalid input the fault scenarios mix into real traffic, so the dead-letter paths are under fire too.

Each record is unique (it carries a tag naming its scenario, round and position), so a dead
letter in the lake can only be the one record it came from.
"""

from __future__ import annotations

import sys
import uuid
from datetime import datetime
from typing import Callable

import orjson

from simulator.fleet import FleetSettings
from transforms.kafka_settings import KafkaSettings, ensure_topics

INVALID_KEY = b"invalid"
MESSAGE_PARTITIONS = 4
FLEET_DRONES = 20
# Many violations, a tenth of them for a human: about 2 % of the messages raise an alert.
VIOLATION_RATIO, HUMAN_RATIO = 0.3, 0.1
_TIMESTAMP = "2026-11-28T17:00:00Z"

# One record per reason the contract gives, each built around a unique tag.
_INVALID_MESSAGES: tuple[Callable[[str], bytes], ...] = (
    lambda tag: f"not json {tag}".encode(),  # bad_json
    lambda tag: orjson.dumps([tag]),  # not_an_object
    lambda tag: orjson.dumps({"message_id": tag}),  # missing_field
    lambda tag: orjson.dumps(
        {"message_id": tag, "drone_id": "d-1", "timestamp": _TIMESTAMP, "latitude": 95.0, "longitude": -73.9}
    ),  # out_of_range
    lambda tag: orjson.dumps(
        {"message_id": tag, "drone_id": "d-1", "timestamp": _TIMESTAMP, "latitude": 40.7, "longitude": -73.9, "violation_code": 21}
    ),  # code_without_image
    lambda tag: b"\xff\xfe" + tag.encode(),  # not_utf8
)

# What the alerts topic may carry that is no alert: the desk keeps each as refused, with its reason.
_JUNK_ALERTS: tuple[Callable[[str], bytes], ...] = (
    lambda tag: f"no alert {tag}".encode(),  # bad_json
    lambda tag: orjson.dumps({"alert_id": tag}),  # bad_field
)
# What the desk must refuse each junk alert for, said here, not asked of the desk's own parser.
_JUNK_ALERT_REASONS = ("bad_json", "bad_field")

# What the history topic may carry that is no loader batch: the history pipeline dead-letters each.
_JUNK_HISTORY: tuple[Callable[[str], bytes], ...] = (
    lambda tag: f"no batch {tag}".encode(),  # bad_json
    lambda tag: orjson.dumps({"file": tag}),  # not_a_history_batch
)


def _records(makers: tuple[Callable[[str], bytes], ...], tag: str, count: int) -> list[tuple[bytes, bytes]]:
    return [(INVALID_KEY, makers[index % len(makers)](f"{tag}-{index}")) for index in range(count)]


def invalid_messages(tag: str, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` invalid drone messages, cycling through the contract's reasons."""
    return _records(_INVALID_MESSAGES, tag, count)


JUNK_ALERT_KEY = b"junk-alert:"


def junk_alerts(tag: str, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` records that are no alert, each keyed by the reason the desk must refuse it for."""
    kinds = [(_JUNK_ALERTS[index % len(_JUNK_ALERTS)], _JUNK_ALERT_REASONS[index % len(_JUNK_ALERTS)]) for index in range(count)]
    return [(JUNK_ALERT_KEY + reason.encode(), make(f"{tag}-{index}")) for index, (make, reason) in enumerate(kinds)]


def junk_alert_reason(key: bytes | None) -> str | None:
    """The refusal reason of a record :func:`junk_alerts` made, by its key; None for any other record."""
    return key[len(JUNK_ALERT_KEY) :].decode() if key and key.startswith(JUNK_ALERT_KEY) else None


def junk_history(tag: str, count: int) -> list[tuple[bytes, bytes]]:
    return _records(_JUNK_HISTORY, tag, count)


def stream_topics(settings: KafkaSettings, prefix: str) -> dict[str, str]:
    """A fresh set of the stream pipeline's topics (messages in MESSAGE_PARTITIONS partitions), made on the broker."""
    base = f"{prefix}-{uuid.uuid4().hex[:8]}"
    names = {"messages": base, "alerts": f"{base}-alerts", "dead": f"{base}-dead"}
    ensure_topics(settings, list(names.values()), partitions={base: MESSAGE_PARTITIONS})
    return names


def fleet(seed: int, start: datetime, rate: float) -> FleetSettings:
    """The fleet :func:`simulator_command` runs, for computing in-process what it sends."""
    return FleetSettings(FLEET_DRONES, seed, round(start.timestamp() * 1000), rate, VIOLATION_RATIO, HUMAN_RATIO)


def simulator_command(settings: KafkaSettings, topic: str, seed: int, count: int, start: datetime, rate: float) -> list[str]:
    """``python -m simulator`` sending the first ``count`` messages of :func:`fleet` to ``topic``, without photos
    (the faults are the messages'; photos would land in the checkout's ./lake)."""
    return [
        sys.executable,
        "-m",
        "simulator",
        f"--bootstrap_servers={settings.bootstrap_servers}",
        f"--topic={topic}",
        f"--count={count}",
        f"--rate={rate}",
        f"--seed={seed}",
        f"--start_time={start:%Y-%m-%dT%H:%M:%SZ}",
        f"--drones={FLEET_DRONES}",
        f"--violation_ratio={VIOLATION_RATIO}",
        f"--human_ratio={HUMAN_RATIO}",
        "--photos=none",
    ]
