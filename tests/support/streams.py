"""Drone traffic for the stream pipeline's tests: valid messages with invalid records among them, the pipeline's
topics and command line, and the message ids that reached the lake."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pyarrow.dataset as ds
import pytest

from transforms import lake
from transforms.contract import DroneMessage, encode_message
from transforms.kafka_settings import KafkaSettings

START = datetime(2026, 11, 28, 16, 55, tzinfo=timezone.utc)
OUT_OF_RANGE = {"message_id": "m", "drone_id": "d", "timestamp": "2026-11-28T17:00:00Z", "latitude": 95, "longitude": 0}
INVALID = [b"not json", b"[]", b'{"message_id": "x"}', orjson.dumps(OUT_OF_RANGE)]


def drone_message(index: int, start: datetime = START, step_s: float = 0.5) -> DroneMessage:
    code = 100 if index % 97 == 0 else (21 if index % 10 == 0 else None)
    return DroneMessage(
        message_id=f"msg-{index}",
        drone_id=f"drone-{index % 7}",
        timestamp=start + timedelta(seconds=index * step_s),
        latitude=40.7 + (index % 100) / 1000,
        longitude=-73.95,
        violation_code=code,
        image_id=f"img-{index}" if code else None,
        battery_pct=80.0,
    )


def traffic(
    count: int, invalid_every: int = 50, start: datetime = START, step_s: float = 0.5
) -> tuple[list[tuple[bytes, bytes]], list[DroneMessage], list[bytes]]:
    """Interleaved valid and invalid records, with the expected valid messages and invalid bytes.

    Message ``n`` is stamped ``start + n × step_s``.
    """
    records, valid, invalid = [], [], []
    for index in range(count):
        if index % invalid_every == 7:
            raw = INVALID[len(invalid) % len(INVALID)]
            invalid.append(raw)
            records.append((b"bad", raw))
        else:
            message = drone_message(index, start, step_s)
            valid.append(message)
            records.append((message.drone_id.encode(), encode_message(message)))
    return records, valid, invalid


def stream_args(settings: KafkaSettings, names: dict[str, str], lake_root: Path | str) -> list[str]:
    return [
        f"--bootstrap_servers={settings.bootstrap_servers}",
        f"--topic={names['messages']}",
        f"--alerts_topic={names['alerts']}",
        f"--dead_letter_topic={names['dead']}",
        f"--group_id={names['messages']}-group",
        f"--output={lake_root}",
        "--drain",
    ]


def lake_message_ids(lake_root: Path) -> list[str]:
    if not (lake_root / lake.DRONE).exists():
        return []
    table = ds.dataset(lake_root / lake.DRONE, format="parquet", partitioning="hive").to_table(columns=["message_id"])
    return table.column("message_id").to_pylist()


@pytest.fixture
def topics(topic_name: str) -> dict[str, str]:
    return {"messages": topic_name, "alerts": f"{topic_name}-alerts", "dead": f"{topic_name}-dead"}
