"""Stream pipeline vs a plain confluent-kafka → pyarrow loop, side by side on the same data.

    python bench/stream_vs_raw.py [--messages 500000] [--bootstrap_servers HOST:PORT]

Loads simulated messages into a topic (starting an embedded broker on a free port when
no --bootstrap_servers is given), then times (a) ``pipelines.stream --drain`` into one
lake and (b) a plain loop that consumes the same topic, validates with the same
contract and writes the same per-window Parquet files into another. Prints both rates
and their ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
from confluent_kafka import Consumer, KafkaError, TopicPartition

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.common import embedded_broker, print_side_by_side, simulated_messages  # noqa: E402
from tests.kafka_io import produce_all  # noqa: E402
from transforms import lake  # noqa: E402
from transforms.contract import DroneMessage, parse_message  # noqa: E402
from transforms.kafka_settings import KafkaSettings, ensure_topics  # noqa: E402
from transforms.messages import event_ms, messages_to_table, window_start_ms  # noqa: E402

WINDOW_MS = 5 * 60_000


def plain_loop(settings: KafkaSettings, topic: str, lake_root: Path) -> int:
    """Consume to EOF, validate, and write one Parquet file per window and partition."""
    consumer = Consumer(settings.consumer_config(f"plain-{uuid.uuid4().hex}", log_level=0))
    partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    consumer.assign([TopicPartition(topic, partition, 0) for partition in partitions])
    rows: dict[tuple[int, int], list[tuple[DroneMessage, int]]] = defaultdict(list)
    waiting = set(partitions)
    while waiting:
        for record in consumer.consume(num_messages=20_000, timeout=0.2):
            if record.error() is not None:
                if record.error().code() == KafkaError._PARTITION_EOF:
                    waiting.discard(record.partition())
                continue
            message = parse_message(record.value())
            if isinstance(message, DroneMessage):
                rows[(window_start_ms(event_ms(message), WINDOW_MS), record.partition())].append((message, record.offset()))
    consumer.close()
    written = 0
    for (window_ms, partition), group in rows.items():
        table = messages_to_table([m for m, _ in group], [partition] * len(group), [offset for _, offset in group])
        folder = Path(lake.drone_partition(str(lake_root), group[0][0].timestamp))
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"part-{window_ms}-p{partition}.parquet", compression="zstd")
        written += table.num_rows
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--bootstrap_servers", default=None)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        bootstrap = args.bootstrap_servers or stack.enter_context(embedded_broker())
        settings = KafkaSettings.from_env(bootstrap)
        topic = f"bench-stream-{uuid.uuid4().hex[:8]}"
        ensure_topics(settings, [topic], partitions={topic: 4})
        produce_all(settings, topic, simulated_messages(args.messages))
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))

        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pipelines.stream", f"--bootstrap_servers={bootstrap}", f"--topic={topic}",
             f"--alerts_topic={topic}-alerts", f"--dead_letter_topic={topic}-dead", f"--group_id={topic}",
             f"--output={work / 'beam'}", "--drain"],
            cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL,
        )
        beam_seconds = time.perf_counter() - started

        started = time.perf_counter()
        plain_rows = plain_loop(settings, topic, work / "plain")
        plain_seconds = time.perf_counter() - started

    print(f"messages {args.messages:,} ({plain_rows:,} valid); target ratio ≥ 0.5")
    print_side_by_side(args.messages, ("pipelines.stream", beam_seconds), ("plain kafka→arrow", plain_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
