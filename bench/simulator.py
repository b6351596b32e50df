"""Simulator throughput vs a plain producer of the same bytes, side by side on one broker.

    python bench/simulator.py [--messages 500000] [--bootstrap_servers HOST:PORT | --engine kafka|tansu]

(a) ``python -m simulator --rate 0`` generating and sending N messages (one process, one
core for Python); (b) a plain confluent-kafka loop producing N pre-built identical byte
strings. Prints both rates and their ratio; the simulator must hold 20,000 messages/s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.common import BENCH_START, embedded_broker, print_side_by_side, simulated_messages  # noqa: E402
from transforms.kafka_settings import KafkaSettings, ensure_topics  # noqa: E402


def plain_producer(settings: KafkaSettings, topic: str, records: list[tuple[bytes, bytes, int]]) -> float:
    from confluent_kafka import Producer

    producer = Producer(settings.producer_config(log_level=0))
    started = time.perf_counter()
    for index, (key, value, event_ms) in enumerate(records):
        while True:
            try:
                producer.produce(topic, value, key, timestamp=event_ms)
                break
            except BufferError:
                producer.poll(0.05)
        if index % 500 == 0:
            producer.poll(0)
    producer.flush(120)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--bootstrap_servers", default=None, help="a running broker (default: start one on a free port)")
    parser.add_argument("--engine", choices=("kafka", "tansu"), default=None,
                        help="which broker to start without --bootstrap_servers (default: the local stack's)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        bootstrap = args.bootstrap_servers or stack.enter_context(embedded_broker(args.engine))
        settings = KafkaSettings.from_env(bootstrap)
        topics = [f"bench-sim-{uuid.uuid4().hex[:8]}" for _ in range(2)]
        ensure_topics(settings, topics, partitions={topic: 4 for topic in topics})
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "simulator", "--rate=0", f"--count={args.messages}", f"--topic={topics[0]}",
             f"--bootstrap_servers={bootstrap}", f"--start_time={BENCH_START.isoformat()}"],
            cwd=REPO_ROOT, check=True, capture_output=True, text=True,
        )
        simulator_seconds = time.perf_counter() - started
        report = json.loads(result.stdout.strip().splitlines()[-1])
        records = list(simulated_messages(args.messages))
        plain_seconds = plain_producer(settings, topics[1], records)
    print(f"messages {args.messages:,} (simulator reported {report['sent']:,} sent, {report['failed']} failed); "
          "the simulator's time includes its process start; target ≥ 20,000 msg/s")
    print_side_by_side(args.messages, ("python -m simulator", simulator_seconds), ("plain producer", plain_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
