"""The background reader of the alerts topic.

It assigns every partition itself (no consumer group: nothing to rebalance, no group
coordinator to wait for) at the offsets the store kept, or at the beginning when it kept
none, and writes each polled batch together with the offsets after it in one transaction.
Kafka's own committed offsets are never used, so the database alone says what was read.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from alert_desk.alerts import Alert, RefusedAlert, parse_alert
from alert_desk.store import Store
from transforms.contract import MaintenanceAlert
from transforms.kafka_settings import KafkaSettings

log = logging.getLogger("alert_desk.consumer")

GROUP_ID = "dronecop-alert-desk"
BATCH_RECORDS = 500
POLL_TIMEOUT_S = 0.2
# How long the broker may hold a fetch while waiting for data; short, for the page's sake
# (an idle desk then asks about 20 times a second, which a broker does not notice).
FETCH_WAIT_MS = 50


@dataclass
class ConsumerStatus:
    """What the status endpoint reports about the reader."""

    running: bool = False
    failed: str | None = None
    consumed_since_start: int = 0
    refused_since_start: int = 0
    refused_by_reason: dict[str, int] = field(default_factory=dict)
    at_end: set[int] = field(default_factory=set)


@dataclass
class Batch:
    """One poll's records sorted: violation alerts, maintenance alerts, refused records, and per partition the
    next offset to read."""

    alerts: list[Alert] = field(default_factory=list)
    maintenance: list[MaintenanceAlert] = field(default_factory=list)
    refused: list[RefusedAlert] = field(default_factory=list)
    next_offsets: dict[int, int] = field(default_factory=dict)


def split_batch(records: list[Message]) -> Batch:
    """Records of one poll → a :class:`Batch`."""
    batch = Batch()
    for record in records:
        parsed = parse_alert(record.value() or b"", record.partition(), record.offset())
        if isinstance(parsed, Alert):
            batch.alerts.append(parsed)
        elif isinstance(parsed, MaintenanceAlert):
            batch.maintenance.append(parsed)
        else:
            batch.refused.append(parsed)
        batch.next_offsets[record.partition()] = max(batch.next_offsets.get(record.partition(), 0), record.offset() + 1)
    return batch


def _next_batch(consumer: Consumer) -> list[Message]:
    """Wait for the first record only, then take whatever else is already fetched.

    ``consume(n, timeout)`` would hold the first record until n arrive or the timeout
    passes; an operator should see an alert as soon as it is there.
    """
    first = consumer.consume(num_messages=1, timeout=POLL_TIMEOUT_S)
    if not first:
        return []
    return first + consumer.consume(num_messages=BATCH_RECORDS - 1, timeout=0)


class AlertConsumer(threading.Thread):
    """Reads ``topic`` into ``store`` until :meth:`stop`; hands each batch's new alerts to ``on_new``."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        store: Store,
        on_new: Callable[[list[dict]], None],
    ) -> None:
        super().__init__(name="alert-desk-consumer", daemon=True)
        self._settings = settings
        self._topic = topic
        self._store = store
        self._on_new = on_new
        self._stopping = threading.Event()
        self.status = ConsumerStatus()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the reader to finish its current batch and close; wait for it."""
        self._stopping.set()
        if self.is_alive():
            self.join(timeout_s)

    def run(self) -> None:
        self.status.running = True
        try:
            self._consume()
        except Exception as error:  # noqa: BLE001 - reported on /api/status and /healthz, not lost
            self.status.failed = f"{type(error).__name__}: {error}"
            log.error("alert consumer stopped: %s", self.status.failed)
        finally:
            self.status.running = False

    def _consume(self) -> None:
        config = self._settings.consumer_config(GROUP_ID, log_level=0, **{"fetch.wait.max.ms": FETCH_WAIT_MS})
        consumer = Consumer(config)
        try:
            consumer.assign(self._assignment(consumer))
            while not self._stopping.is_set():
                self._keep([record for record in _next_batch(consumer) if self._is_data(record)])
        finally:
            consumer.close()

    def _assignment(self, consumer: Consumer) -> list[TopicPartition]:
        metadata = consumer.list_topics(self._topic, timeout=30).topics[self._topic]
        if metadata.error is not None:
            raise RuntimeError(f"topic {self._topic}: {metadata.error.str()}")
        stored = self._store.next_offsets(self._topic)
        return [
            TopicPartition(self._topic, partition, stored.get(partition, OFFSET_BEGINNING)) for partition in sorted(metadata.partitions)
        ]

    def _is_data(self, record: Message) -> bool:
        error = record.error()
        if error is None:
            self.status.at_end.discard(record.partition())
            return True
        if error.code() == KafkaError._PARTITION_EOF:
            self.status.at_end.add(record.partition())
        else:
            log.warning("alerts topic: %s", error.str())
        return False

    def _keep(self, records: list[Message]) -> None:
        if not records:
            return
        batch = split_batch(records)
        new = self._store.ingest(self._topic, batch.alerts, batch.refused, batch.next_offsets, batch.maintenance)
        self.status.consumed_since_start += len(records)
        self.status.refused_since_start += len(batch.refused)
        for item in batch.refused:
            self.status.refused_by_reason[item.reason] = self.status.refused_by_reason.get(item.reason, 0) + 1
            log.warning(
                "refused alert at %s/%d@%d: %s %s", self._topic, item.source_partition, item.source_offset, item.reason, item.detail
            )
        if new:
            self._on_new(new)
