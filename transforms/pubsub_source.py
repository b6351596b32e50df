"""Pub/Sub as the stream's source on Dataflow (``--source=pubsub --subscription=…``), with Beam's own IO.

Pub/Sub has no partitions or offsets; to keep one downstream path, each message becomes
a record of partition 0 whose "offset" is a stable number derived from its Pub/Sub
message id, so dead letters and lake rows still say where a record came from.
"""

from __future__ import annotations

import hashlib

import apache_beam as beam

from transforms.kafka_source import RawBatch

MAX_BATCH = 5_000


def stable_offset(message_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(message_id.encode(), digest_size=7).digest(), "big")


def messages_to_batch(subscription: str, messages: list) -> RawBatch:
    return RawBatch(
        subscription,
        0,
        [stable_offset(message.message_id) for message in messages],
        [message.data for message in messages],
        [int(message.publish_time.micros // 1000) for message in messages],
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
            | "ToRawBatches" >> beam.Map(lambda messages: messages_to_batch(self._subscription, messages))
        )
