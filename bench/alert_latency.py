"""Alert latency in ``--follow`` mode: from a drone's send to the alert on the alerts topic.

    python bench/alert_latency.py [--rate 1000] [--seconds 60] [--poll_seconds 0.5] [--bootstrap_servers HOST:PORT]

The simulator sends ``--rate`` messages a second in real time (its event times track the
wall clock), a share of them code 100; ``pipelines.stream --follow`` runs beside it; a
consumer on the alerts topic notes when each alert arrives. Latency is arrival time
minus the message's own timestamp. Prints p50, p90, p99 and the count.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import orjson
from confluent_kafka import Consumer, TopicPartition

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.common import embedded_broker  # noqa: E402
from transforms.contract import parse_timestamp  # noqa: E402
from transforms.kafka_settings import KafkaSettings, ensure_topics  # noqa: E402


def collect_alert_latencies(settings: KafkaSettings, topic: str, until: float) -> list[float]:
    consumer = Consumer(settings.consumer_config(f"latency-{uuid.uuid4().hex}", log_level=0))
    consumer.assign([TopicPartition(topic, 0, 0)])
    latencies = []
    while time.time() < until:
        for record in consumer.consume(num_messages=1000, timeout=0.2):
            if record.error() is None:
                sent = parse_timestamp(orjson.loads(record.value())["message"]["timestamp"])
                latencies.append(time.time() - sent.timestamp())
    consumer.close()
    return latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--poll_seconds", type=float, default=0.5)
    parser.add_argument("--bootstrap_servers", default=None)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with contextlib.ExitStack() as stack:
        bootstrap = args.bootstrap_servers or stack.enter_context(embedded_broker())
        settings = KafkaSettings.from_env(bootstrap)
        run = uuid.uuid4().hex[:8]
        topics = {"messages": f"latency-{run}", "alerts": f"latency-{run}-alerts", "dead": f"latency-{run}-dead"}
        ensure_topics(settings, list(topics.values()), partitions={topics["messages"]: 4})
        lake = stack.enter_context(tempfile.TemporaryDirectory())
        follower = subprocess.Popen(
            [sys.executable, "-m", "pipelines.stream", "--follow", f"--poll_seconds={args.poll_seconds}",
             f"--bootstrap_servers={bootstrap}", f"--topic={topics['messages']}", f"--alerts_topic={topics['alerts']}",
             f"--dead_letter_topic={topics['dead']}", f"--group_id=latency-{run}", f"--output={lake}"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
        )
        simulator = subprocess.Popen(
            [sys.executable, "-m", "simulator", f"--bootstrap_servers={bootstrap}", f"--topic={topics['messages']}",
             f"--rate={args.rate}", f"--duration={args.seconds}", "--violation_ratio=0.1", "--human_ratio=0.5",
             f"--start_time={datetime.now(timezone.utc).isoformat()}"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
        )
        latencies = collect_alert_latencies(settings, topics["alerts"], time.time() + args.seconds + 10)
        simulator.wait()
        follower.send_signal(signal.SIGINT)
        follower.wait(60)
    if not latencies:
        print("no alerts arrived")
        return 1
    print(f"alerts        {len(latencies):,} at {args.rate:,} messages/s, --follow --poll_seconds {args.poll_seconds}")
    print(f"latency p50   {percentile(latencies, 0.50):6.2f} s")
    print(f"latency p90   {percentile(latencies, 0.90):6.2f} s")
    print(f"latency p99   {percentile(latencies, 0.99):6.2f} s   (target ≤ 3 s)")
    print(f"latency mean  {statistics.fmean(latencies):6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
