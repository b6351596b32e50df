"""Ground truth from the topics, and what the lake and the consumer groups hold, for the fault checks.

A killed producer may or may not have delivered its last messages, so the ground truth
of the drone stream is what the messages topic holds once every producer is gone, read
back by assignment; every record there is either a valid message (expected in the lake
once, and in the desk once if it needs a human) or an invalid one (expected in the dead
letter once, with the reason the contract gives it).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

import pyarrow.dataset as ds
from confluent_kafka import Consumer, TopicPartition

from tests.support.kafka_io import ReadRecord, read_all
from transforms import lake
from transforms.contract import DroneMessage, alert_id_for, parse_message
from transforms.kafka_settings import KafkaSettings
from transforms.kafka_source import committed_offsets, watermark_offsets

TIMEOUT_S = 30.0


@dataclass
class DroneTruth:
    """What the messages topic holds: valid message ids, invalid records' reasons, alerts due, partition ends."""

    valid: dict[str, None] = field(default_factory=dict)
    invalid: dict[tuple[int, int], str] = field(default_factory=dict)
    alerts: dict[str, None] = field(default_factory=dict)
    ends: dict[int, int] = field(default_factory=dict)
    copies_in_topic: int = 0


def drone_truth(settings: KafkaSettings, topic: str) -> DroneTruth:
    """Read the whole messages topic and judge each record by the contract.

    A message id the topic holds twice would be a producer that doubled a message (the
    simulator's producer is idempotent): counted in ``copies_in_topic``.
    """
    records = read_all(settings, topic)
    truth = DroneTruth(ends=partition_ends(settings, topic, records))
    seen: Counter = Counter()
    for record in records:
        parsed = parse_message(record.value)
        if isinstance(parsed, DroneMessage):
            seen[parsed.message_id] += 1
            truth.valid[parsed.message_id] = None
            if parsed.needs_human:
                truth.alerts[alert_id_for(parsed.message_id)] = None
        else:
            truth.invalid[(record.partition, record.offset)] = parsed.reason
    truth.copies_in_topic = sum(count - 1 for count in seen.values())
    return truth


def partition_ends(settings: KafkaSettings, topic: str, records: Iterable[ReadRecord]) -> dict[int, int]:
    """Each partition's end, one past its last record (0 when empty), from ``records``: the whole topic, read back."""
    consumer = Consumer(settings.consumer_config("dronecop-fault-ends", log_level=0))
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=TIMEOUT_S).topics[topic].partitions)
    finally:
        consumer.close()
    ends = {partition: 0 for partition in partitions}
    for record in records:
        ends[record.partition] = max(ends[record.partition], record.offset + 1)
    return ends


def caught_up(settings: KafkaSettings, group: str, topic: str, ends: dict[int, int]) -> bool:
    """Whether ``group`` committed every partition of ``topic`` up to ``ends``: its pipeline has drained it all."""
    consumer = Consumer(settings.consumer_config(group, log_level=0))
    try:
        positions = committed_offsets(consumer, [TopicPartition(topic, partition) for partition in ends], TIMEOUT_S)
    finally:
        consumer.close()
    return all(max(position.offset, 0) >= ends[position.partition] for position in positions)


def lake_table(root: str, dataset: str, columns: list[str], filesystem: Any = None) -> list[dict[str, Any]]:
    """The rows of one lake dataset (``drone``, ``dead_letter``, ``history``); none while it holds no file yet."""
    path = lake.join(root, dataset)
    exists = filesystem.exists(path) if filesystem is not None else os.path.isdir(path)
    if not exists:
        return []
    found = ds.dataset(path, format="parquet", partitioning="hive", filesystem=filesystem)
    # A writer makes a partition's folder just before renaming its first file into it.
    return found.to_table(columns=columns).to_pylist() if found.files else []


def lake_message_ids(root: str, filesystem: Any = None) -> list[tuple[str, None]]:
    return [(row["message_id"], None) for row in lake_table(root, lake.DRONE, ["message_id"], filesystem)]


def lake_dead_letters(root: str, topic: str, filesystem: Any = None) -> list[tuple[tuple[int, int], str]]:
    """Dead letters of ``topic`` in the lake, keyed by where they sat in it, with their reasons."""
    rows = lake_table(root, lake.DEAD_LETTER, ["kafka_topic", "kafka_partition", "kafka_offset", "reason"], filesystem)
    mine = [row for row in rows if row["kafka_topic"] == topic]
    return [((row["kafka_partition"], row["kafka_offset"]), row["reason"]) for row in mine]


class TopicSize:
    """How many records a topic holds now (sum of high watermarks): the trigger for "kill after N records"."""

    def __init__(self, settings: KafkaSettings, topic: str):
        self._consumer = Consumer(settings.consumer_config("dronecop-fault-size", log_level=0))
        self._topic = topic
        self._partitions = sorted(self._consumer.list_topics(topic, timeout=TIMEOUT_S).topics[topic].partitions)

    def __call__(self) -> int:
        return sum(
            watermark_offsets(self._consumer, TopicPartition(self._topic, partition), TIMEOUT_S)[1] for partition in self._partitions
        )

    def close(self) -> None:
        self._consumer.close()
