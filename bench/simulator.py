"""Simulator throughput, with and without photos, vs a plain producer of the same bytes, on one broker.

    python bench/simulator.py [--messages 500000] [--photo_messages 200000] [--violations 10000]
                              [--photos_under DIR] [--bootstrap_servers HOST:PORT | --engine kafka|tansu]

(a) ``python -m simulator --rate 0 --photos none`` generating and sending N messages (one
process, one core for Python): it must hold 20,000 messages/s; (b) the same with photos on
(the default, one photo per violation, about 5 % of the messages) for ``--photo_messages``,
and its ratio to (a); (c) photos on with ``--violation_ratio 1``, every message a violation:
the photos' own pace, which must be at least 2,000 violations/s; (d) a plain confluent-kafka
loop producing N pre-built identical byte strings. The photos go to a temporary folder
(under ``--photos_under``, e.g. /dev/shm to take the disk out of the figures), deleted at
the end (about 40 KB each).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
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


def timed_simulator(bootstrap: str, topic: str, count: int, *flags: str) -> tuple[float, dict]:
    """Seconds of ``python -m simulator`` sending ``count`` messages, process start included, and its report."""
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator",
            "--rate=0",
            f"--count={count}",
            f"--topic={topic}",
            f"--bootstrap_servers={bootstrap}",
            f"--start_time={BENCH_START.isoformat()}",
            *flags,
        ],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - started, json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--photo_messages", type=int, default=200_000, help="messages of the run with photos (b)")
    parser.add_argument("--violations", type=int, default=10_000, help="messages, all violations, of run (c)")
    parser.add_argument(
        "--photos_under", default=None, help="where the photos' temporary folder is made (default: the system's temporary folder)"
    )
    parser.add_argument("--bootstrap_servers", default=None, help="a running broker (default: start one on a free port)")
    parser.add_argument(
        "--engine",
        choices=("kafka", "tansu"),
        default=None,
        help="which broker to start without --bootstrap_servers (default: the local stack's)",
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        bootstrap = args.bootstrap_servers or stack.enter_context(embedded_broker(args.engine))
        photos = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-photos-", dir=args.photos_under))
        settings = KafkaSettings.from_env(bootstrap)
        topics = [f"bench-sim-{uuid.uuid4().hex[:8]}" for _ in range(5)]
        ensure_topics(settings, topics, partitions={topic: 4 for topic in topics})
        off_seconds, off = timed_simulator(bootstrap, topics[0], args.messages, "--photos=none")
        off_short, _ = timed_simulator(bootstrap, topics[1], args.photo_messages, "--photos=none")
        on_seconds, on = timed_simulator(bootstrap, topics[2], args.photo_messages, f"--lake={photos}/b")
        all_seconds, every = timed_simulator(bootstrap, topics[3], args.violations, "--violation_ratio=1", f"--lake={photos}/c")
        records = list(simulated_messages(args.messages))
        plain_seconds = plain_producer(settings, topics[4], records)
    print(
        f"messages {args.messages:,} (simulator reported {off['sent']:,} sent, {off['failed']} failed); "
        "the simulator's time includes its process start; target ≥ 20,000 msg/s"
    )
    print_side_by_side(args.messages, ("python -m simulator", off_seconds), ("plain producer", plain_seconds))
    print(
        f"\nphotos on, {args.photo_messages:,} messages ({on['photos']:,} photos, {on['failed']} failed), "
        "beside the same run with photos off"
    )
    print_side_by_side(args.photo_messages, ("photos on", on_seconds), ("photos off", off_short))
    print(f"  {on['violations'] / on_seconds:,.0f} violations/s with their photos")
    print(
        f"\nevery message a violation (--violation_ratio 1): {every['photos']:,} photos in {all_seconds:.2f} s, "
        f"{every['violations'] / all_seconds:,.0f} violations/s (target ≥ 2,000)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
