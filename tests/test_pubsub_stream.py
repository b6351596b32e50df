"""``--source=pubsub --streaming`` end to end: Google's pstest server, Beam's DirectRunner, a real broker and lake."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from runners.pubsub_emulator import EmulatorUnavailable, PubSubEmulator, running_emulator
from tests.support.kafka_io import read_all
from tests.support.streams import lake_message_ids, traffic
from transforms.contract import DroneMessage
from transforms.kafka_settings import KafkaSettings, ensure_topics

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT = "dronecop-test"
TOPIC = f"projects/{PROJECT}/topics/drones"
SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/drones-stream"
DEADLINE_S = 60.0


@pytest.fixture
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    """pstest on a free loopback port with the drone topic and its subscription made."""
    try:
        with running_emulator(TOPIC, SUBSCRIPTION) as emulator:
            yield emulator
    except EmulatorUnavailable as reason:
        pytest.skip(str(reason))


def recent_traffic(count: int) -> tuple[list[bytes], list[DroneMessage], list[bytes]]:
    """Messages whose event times lie in the last few minutes, in windows the wall clock has closed.

    The DirectRunner's Pub/Sub watermark is the wall clock, so these windows fire as soon
    as their messages arrive (late, within the allowed lateness) instead of minutes later.
    """
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=3)
    records, valid, invalid = traffic(count, start=start, step_s=0.25)
    return [value for _, value in records], valid, invalid


def publish(emulator: PubSubEmulator, payloads: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
    publisher = pubsub_v1.PublisherClient()
    for future in [publisher.publish(TOPIC, payload) for payload in payloads]:
        future.result(timeout=30)


def test_pubsub_streaming_routes_alerts_dead_letters_and_lake(
    pubsub_emulator: PubSubEmulator, broker: KafkaSettings, topic_name: str, tmp_path: Path, monkeypatch
) -> None:
    payloads, valid, invalid = recent_traffic(400)
    alerts_topic, dead_topic = f"{topic_name}-alerts", f"{topic_name}-dead"
    ensure_topics(broker, [alerts_topic, dead_topic])
    publish(pubsub_emulator, payloads, monkeypatch)
    lake_root = tmp_path / "lake"
    command = [
        sys.executable,
        "-m",
        "pipelines.stream",
        "--streaming",
        "--source=pubsub",
        f"--subscription={SUBSCRIPTION}",
        f"--bootstrap_servers={broker.bootstrap_servers}",
        f"--alerts_topic={alerts_topic}",
        f"--dead_letter_topic={dead_topic}",
        f"--output={lake_root}",
        "--window_minutes=1",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PUBSUB_EMULATOR_HOST": pubsub_emulator.host}
    job = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wanted_alerts = {message.message_id for message in valid if message.needs_human}
    wanted_lake = {message.message_id for message in valid}
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            alerts = [orjson.loads(record.value)["message"]["message_id"] for record in read_all(broker, alerts_topic)]
            dead = sorted(record.value for record in read_all(broker, dead_topic))
            ids = lake_message_ids(lake_root)
            if set(alerts) >= wanted_alerts and set(ids) >= wanted_lake and len(dead) >= len(invalid):
                break
            assert job.poll() is None, job.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, (
                f"after {DEADLINE_S:.0f} s: {len(set(alerts))}/{len(wanted_alerts)} alerts, "
                f"{len(set(ids))}/{len(wanted_lake)} lake rows, {len(dead)}/{len(invalid)} dead letters"
            )
            time.sleep(0.2)
    finally:
        job.send_signal(signal.SIGINT)
        _, err = job.communicate(timeout=60)
    assert job.returncode == 130, err.decode()[-3000:]
    assert sorted(alerts) == sorted(wanted_alerts)
    assert sorted(ids) == sorted(wanted_lake)
    assert dead == sorted(invalid)
