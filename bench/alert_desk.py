"""The alert desk under a steady stream of alerts: none lost on the way to the store and the page.

    python bench/alert_desk.py [--rate 200] [--seconds 60] [--bootstrap_servers HOST:PORT]

Starts ``python -m alert_desk`` (on an embedded Tansu broker unless --bootstrap_servers is
given), listens to its event stream as the page does, and produces ``--rate`` alerts a
second for ``--seconds``. Asserts that every alert reached the desk's store and its event
stream exactly once, and prints the throughput and the end-to-end latency (alert raised →
event received) at p50 and p99, with the store's share (raised → stored).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import httpx
import orjson
from confluent_kafka import Producer

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.common import embedded_broker, free_port  # noqa: E402
from transforms.contract import DroneMessage, encode_alert, parse_timestamp  # noqa: E402
from transforms.kafka_settings import KafkaSettings, ensure_topics  # noqa: E402

TOKEN = f"bench-{uuid.uuid4().hex}"
DRAIN_DEADLINE_S = 60.0


class EventCounter:
    """The page's view: every ``alert`` event, with the moment it arrived."""

    def __init__(self, url: str) -> None:
        self.arrivals: dict[str, float] = {}
        self.stored_after: dict[str, float] = {}
        self.repeats = 0
        self._client = httpx.Client(base_url=url, timeout=httpx.Timeout(10.0, read=None))
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise SystemExit("bench: the desk's event stream did not open")

    def _read(self) -> None:
        name = None
        with (
            contextlib.suppress(httpx.HTTPError),
            self._client.stream("GET", "/api/events", headers={"Authorization": f"Bearer {TOKEN}"}) as stream,
        ):
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name == "hello":
                    self._ready.set()
                elif line.startswith("data: ") and name == "alert":
                    self._count(orjson.loads(line[6:]), time.time())

    def _count(self, alert: dict, arrived: float) -> None:
        if alert["alert_id"] in self.arrivals:
            self.repeats += 1
            return
        raised = parse_timestamp(alert["raised_at"]).timestamp()
        self.arrivals[alert["alert_id"]] = arrived - raised
        self.stored_after[alert["alert_id"]] = parse_timestamp(alert["received_at"]).timestamp() - raised

    def close(self) -> None:
        self._client.close()


@contextlib.contextmanager
def running_desk(bootstrap: str, work: Path, alerts_topic: str) -> Iterator[str]:
    port = free_port()
    log = (work / "desk.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alert_desk",
            "--bootstrap_servers",
            bootstrap,
            "--db",
            f"sqlite:///{work / 'alerts.db'}",
            "--port",
            str(port),
            "--alerts_topic",
            alerts_topic,
            "--messages_topic",
            f"{alerts_topic}-corrections",
            "--token",
            f"bench={TOKEN}",
        ],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={name: value for name, value in os.environ.items() if name != "DRONECOP_DESK_TOKEN"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: the desk did not start; see {work / 'desk.log'}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(20)
        log.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def produce_steadily(settings: KafkaSettings, topic: str, rate: int, seconds: int) -> float:
    """``rate`` alerts a second, each raised at the moment it is produced; return the seconds taken."""
    producer = Producer(settings.producer_config(log_level=0, **{"linger.ms": 5}))
    failures: list[str] = []
    total = rate * seconds
    started = time.monotonic()
    for index in range(total):
        due = started + index / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        now = datetime.now(timezone.utc)
        message = DroneMessage(
            message_id=str(uuid.uuid4()),
            drone_id=f"drone-{index % 50}",
            timestamp=now,
            latitude=40.70 + (index % 100) * 0.002,
            longitude=-73.99 + (index % 70) * 0.002,
            violation_code=100,
            image_id=f"img-{index}",
        )
        producer.produce(
            topic,
            key=message.drone_id.encode(),
            value=encode_alert(message, now, 0, index),
            on_delivery=lambda error, _: error and failures.append(error.str()),
        )
        producer.poll(0)
    if producer.flush(60) or failures:
        raise SystemExit(f"bench: the broker did not take every alert: {failures[:3]}")
    return time.monotonic() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=200, help="alerts per second (default: %(default)s)")
    parser.add_argument("--seconds", type=int, default=60, help="how long to produce (default: %(default)s)")
    parser.add_argument("--bootstrap_servers", default=None, help="an existing broker instead of an embedded one")
    args = parser.parse_args()
    total = args.rate * args.seconds
    alerts_topic = f"bench-alerts-{uuid.uuid4().hex[:8]}"

    broker = contextlib.nullcontext(args.bootstrap_servers) if args.bootstrap_servers else embedded_broker()
    with broker as bootstrap, tempfile.TemporaryDirectory(prefix="desk-bench-") as folder:
        settings = KafkaSettings(bootstrap)
        ensure_topics(settings, [alerts_topic])
        with running_desk(bootstrap, Path(folder), alerts_topic) as url:
            events = EventCounter(url)
            produced_s = produce_steadily(settings, alerts_topic, args.rate, args.seconds)
            deadline = time.monotonic() + DRAIN_DEADLINE_S
            while len(events.arrivals) < total and time.monotonic() < deadline:
                time.sleep(0.1)
            drained_s = time.monotonic() - deadline + DRAIN_DEADLINE_S
            stored = httpx.get(f"{url}/api/status", headers={"Authorization": f"Bearer {TOKEN}"}).json()
            events.close()

    stored_count = sum(stored["counts"].values())
    print(f"alerts produced      {total:,} at {args.rate}/s over {produced_s:.1f} s")
    print(f"stored by the desk   {stored_count:,}")
    print(f"on the event stream  {len(events.arrivals):,} (repeats: {events.repeats})")
    print(
        f"throughput           {len(events.arrivals) / (produced_s + drained_s):,.0f} alerts/s "
        f"(last event {drained_s:.2f} s after the last alert was produced)"
    )
    latencies = list(events.arrivals.values())
    stored_latencies = list(events.stored_after.values())
    if latencies:
        print(f"raised → on the page p50 {percentile(latencies, 0.5) * 1000:7.1f} ms   p99 {percentile(latencies, 0.99) * 1000:7.1f} ms")
        print(
            f"raised → stored      p50 {percentile(stored_latencies, 0.5) * 1000:7.1f} ms   "
            f"p99 {percentile(stored_latencies, 0.99) * 1000:7.1f} ms"
        )
    assert stored_count == total, f"the store holds {stored_count:,} of {total:,} alerts"
    assert len(events.arrivals) == total and events.repeats == 0, "the event stream lost or repeated alerts"
    print("no alert lost or repeated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
