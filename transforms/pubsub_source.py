"""Pub/Sub as the stream's source (``--source=pubsub --subscription=…``), with Beam's own IO.

Dataflow runs it natively; locally Beam's BundleBasedDirectRunner (the DirectRunner with
``--streaming``) pulls it, e.g. from an emulator named by ``PUBSUB_EMULATOR_HOST``. Prism
cannot: it has no ``beam:transform:pubsub_read:v1``.

Pub/Sub has no partitions or offsets; to keep one downstream path, each message becomes
a record of partition 0 whose "offset" is a stable number derived from its Pub/Sub
message id, so dead letters and lake rows still say where a record came from.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import apache_beam as beam

from transforms.kafka_source import RawBatch

MAX_BATCH = 5_000


def stable_offset(message_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(message_id.encode(), digest_size=7).digest(), "big")


def messages_to_batch(messages: Sequence[Any], subscription: str) -> RawBatch:
    """Beam ``PubsubMessage``s (``publish_time`` a datetime) as one batch of partition 0."""
    return RawBatch(
        topic=subscription,
        partition=0,
        offsets=[stable_offset(message.message_id) for message in messages],
        values=[message.data for message in messages],
        timestamps_ms=[int(message.publish_time.timestamp() * 1000) for message in messages],
    )


class ReadPubSubBatches(beam.PTransform):
    def __init__(self, subscription: str):
        super().__init__()
        self._subscription = subscription

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "ReadPubSub" >> beam.io.ReadFromPubSub(subscription=self._subscription, with_attributes=True)
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=MAX_BATCH)
            | "ToRawBatches" >> beam.Map(messages_to_batch, self._subscription)
        )
