"""Alert latency: from a drone's send to the alert on the alerts topic.

    python bench/alert_latency.py [--mode streaming|follow] [--rate 1000] [--seconds 60] [--poll_seconds 0.5]
                                  [--bootstrap_servers HOST:PORT]

``pipelines.stream`` runs (``--streaming`` on Prism by default, or ``--follow``); once a
first alert went through it (the job is up), the simulator sends ``--rate`` messages a
second in real time (its event times track the wall clock), a share of them code 100; a
consumer on the alerts topic notes when each alert arrives. Latency is arrival time minus
the message's own timestamp. Prints p50, p90, p99 and the count.
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
from tests.support.kafka_io import produce_all  # noqa: E402
from transforms.contract import DroneMessage, encode_message, parse_timestamp  # noqa: E402
from transforms.kafka_settings import KafkaSettings, ensure_topics  # noqa: E402

WARM_UP_TIMEOUT_S = 300


class AlertClock:
    """A consumer on the alerts topic that times each alert against its message's own timestamp."""

    def __init__(self, settings: KafkaSettings, topic: str):
        self._consumer = Consumer(settings.consumer_config(f"latency-{uuid.uuid4().hex}", log_level=0))
        self._consumer.assign([TopicPartition(topic, 0, 0)])

    def arrivals(self, timeout_s: float = 0.2) -> list[tuple[str, float]]:
        """``(message id, latency in seconds)`` of the alerts that arrived now."""
        found = []
        for record in self._consumer.consume(num_messages=1000, timeout=timeout_s):
            if record.error() is None:
                message = orjson.loads(record.value())["message"]
                found.append((message["message_id"], time.time() - parse_timestamp(message["timestamp"]).timestamp()))
        return found

    def close(self) -> None:
        self._consumer.close()


def warm_up(settings: KafkaSettings, topic: str, clock: AlertClock, job: subprocess.Popen) -> float:
    """Send one code-100 message and wait for its alert: the job is running; the seconds that took."""
    started = time.time()
    probe = DroneMessage("latency-probe", "drone-probe", datetime.now(timezone.utc), 40.75, -73.99, 100, "img-probe")
    produce_all(settings, topic, [(probe.drone_id.encode(), encode_message(probe), probe.event_ms)])
    while "latency-probe" not in {message_id for message_id, _ in clock.arrivals()}:
        if job.poll() is not None or time.time() - started > WARM_UP_TIMEOUT_S:
            raise SystemExit(f"the stream job gave no alert for the probe (exit code {job.poll()})")
    return time.time() - started


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("streaming", "follow"), default="streaming")
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
        mode = ["--streaming"] if args.mode == "streaming" else ["--follow", f"--poll_seconds={args.poll_seconds}"]
        job = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipelines.stream",
                *mode,
                f"--bootstrap_servers={bootstrap}",
                f"--topic={topics['messages']}",
                f"--alerts_topic={topics['alerts']}",
                f"--dead_letter_topic={topics['dead']}",
                f"--group_id=latency-{run}",
                f"--output={lake}",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        clock = AlertClock(settings, topics["alerts"])
        started_in = warm_up(settings, topics["messages"], clock, job)
        simulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "simulator",
                f"--bootstrap_servers={bootstrap}",
                f"--topic={topics['messages']}",
                f"--rate={args.rate}",
                f"--duration={args.seconds}",
                "--violation_ratio=0.1",
                "--human_ratio=0.5",
                f"--lake={lake}",
                f"--start_time={datetime.now(timezone.utc).isoformat()}",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        until = time.time() + args.seconds + 10
        latencies = []
        while time.time() < until:
            latencies.extend(latency for _, latency in clock.arrivals())
        clock.close()
        simulator.wait()
        os.killpg(job.pid, signal.SIGINT)
        job.wait(60)
    if not latencies:
        print("no alerts arrived")
        return 1
    print(f"alerts        {len(latencies):,} at {args.rate:,} messages/s, {' '.join(mode)} (up and alerting in {started_in:.1f} s)")
    print(f"latency p50   {percentile(latencies, 0.50):6.2f} s")
    print(f"latency p90   {percentile(latencies, 0.90):6.2f} s")
    print(f"latency p99   {percentile(latencies, 0.99):6.2f} s   (target ≤ 1 s)")
    print(f"latency mean  {statistics.fmean(latencies):6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
