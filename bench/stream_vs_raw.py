"""Stream pipeline vs a plain confluent-kafka → pyarrow loop, side by side on the same data.

    python bench/stream_vs_raw.py [--messages 500000] [--modes streaming,drain] [--bootstrap_servers HOST:PORT]

Loads simulated messages, stamped with their event time as the simulator stamps them,
into a topic (starting an embedded broker on a free port when no --bootstrap_servers is
given) and one message an hour of event time later, which closes the backlog's windows.
Then times (a) ``pipelines.stream --streaming`` on Prism, started on the backlog, until
the lake holds every valid message (the job keeps running: it is stopped afterwards);
(b) ``pipelines.stream --drain``; and (c) a plain loop that consumes the same topic,
validates with the same contract and writes the same per-window Parquet files. Prints
each rate and its ratio to the plain loop.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
from confluent_kafka import Consumer, KafkaError, TopicPartition

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.common import embedded_broker, print_side_by_side, simulated_messages  # noqa: E402
from tests.support.kafka_io import produce_all  # noqa: E402
from transforms import lake  # noqa: E402
from transforms.contract import DroneMessage, encode_message, parse_message  # noqa: E402
from transforms.event_time import EventWindows  # noqa: E402
from transforms.kafka_settings import KafkaSettings, ensure_topics  # noqa: E402
from transforms.messages import messages_to_table  # noqa: E402

WINDOWS = EventWindows(5 * 60_000)
LAKE_POLL_S = 0.5


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
                rows[(WINDOWS.start_ms(message.event_ms), record.partition())].append((message, record.offset()))
    consumer.close()
    written = 0
    for (window_ms, partition), group in rows.items():
        table = messages_to_table([m for m, _ in group], [partition] * len(group), [offset for _, offset in group], str(lake_root))
        folder = Path(lake.drone_partition(str(lake_root), group[0][0].timestamp))
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"part-{window_ms}-p{partition}.parquet", compression="zstd")
        written += table.num_rows
    return written


def closing_message(records: list[tuple[bytes, bytes, int]]) -> tuple[bytes, bytes, int]:
    """A valid message an hour of event time after the backlog: its watermark closes every backlog window."""
    newest_ms = max(event_ms for _, _, event_ms in records)
    moment = datetime.fromtimestamp(newest_ms / 1000 + 3600, tz=timezone.utc)
    message = DroneMessage("bench-closing", "drone-bench", moment, 40.75, -73.99)
    return message.drone_id.encode(), encode_message(message), message.event_ms


def lake_rows(lake_root: Path) -> int:
    drone = lake_root / lake.DRONE
    return ds.dataset(drone, format="parquet").count_rows() if drone.exists() else 0


def stream_command(bootstrap: str, topic: str, group: str, output: Path, mode: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipelines.stream",
        f"--bootstrap_servers={bootstrap}",
        f"--topic={topic}",
        f"--alerts_topic={topic}-alerts",
        f"--dead_letter_topic={topic}-dead",
        f"--group_id={group}",
        f"--output={output}",
        f"--{mode}",
    ]


def time_streaming(bootstrap: str, topic: str, output: Path, valid: int) -> float:
    """Seconds from starting ``--streaming`` on the backlog until the lake holds ``valid`` rows."""
    started = time.perf_counter()
    job = subprocess.Popen(
        stream_command(bootstrap, topic, f"{topic}-streaming", output, "streaming"),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while lake_rows(output) < valid:
            if job.poll() is not None:
                raise SystemExit(f"the streaming job exited ({job.returncode}) with {lake_rows(output):,} of {valid:,} rows")
            time.sleep(LAKE_POLL_S)  # polling the lake: the condition itself is what is waited for
        return time.perf_counter() - started
    finally:
        os.killpg(job.pid, signal.SIGINT)
        job.wait(60)


def time_drain(bootstrap: str, topic: str, output: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        stream_command(bootstrap, topic, f"{topic}-drain", output, "drain"), cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--modes", default="streaming,drain", help="which of our modes to time, comma-separated")
    parser.add_argument("--bootstrap_servers", default=None)
    args = parser.parse_args()
    modes = [mode for mode in args.modes.split(",") if mode]
    with contextlib.ExitStack() as stack:
        bootstrap = args.bootstrap_servers or stack.enter_context(embedded_broker())
        settings = KafkaSettings.from_env(bootstrap)
        topic = f"bench-stream-{uuid.uuid4().hex[:8]}"
        ensure_topics(settings, [topic], partitions={topic: 4})
        records = list(simulated_messages(args.messages))
        produce_all(settings, topic, [*records, closing_message(records)])
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))

        started = time.perf_counter()
        plain_rows = plain_loop(settings, topic, work / "plain")
        plain_seconds = time.perf_counter() - started
        timings = {}
        if "streaming" in modes:
            timings["stream --streaming"] = time_streaming(bootstrap, topic, work / "streaming", plain_rows - 1)
        if "drain" in modes:
            timings["stream --drain"] = time_drain(bootstrap, topic, work / "drain")

    print(f"messages {args.messages:,} ({plain_rows - 1:,} valid, and one that closes their windows); target ratio ≥ 0.5")
    for name, seconds in timings.items():
        print_side_by_side(args.messages, (name, seconds), ("plain kafka→arrow", plain_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
