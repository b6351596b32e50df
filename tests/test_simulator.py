"""The drone simulator: valid, deterministic, plausible traffic, delivered whole to a real broker."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from simulator.fleet import FleetSettings, distance_m, fleet_messages
from tests.kafka_io import read_all
from transforms.contract import DroneMessage, parse_message
from transforms.kafka_settings import KafkaSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
START = "2026-11-28T17:00:00Z"


def simulate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simulator", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def generated(count: int, **settings: float) -> list[DroneMessage]:
    messages = []
    for _, (_key, value, _code) in zip(range(count), fleet_messages(FleetSettings(**settings))):
        message = parse_message(value)
        assert isinstance(message, DroneMessage), message
        messages.append(message)
    return messages


def test_sent_messages_are_all_on_the_topic_valid_and_counted(broker: KafkaSettings, topic_name: str) -> None:
    result = simulate("--count=3000", "--rate=0", "--violation_ratio=0.3", "--human_ratio=0.2", f"--topic={topic_name}",
                      f"--bootstrap_servers={broker.bootstrap_servers}", f"--start_time={START}")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    records = read_all(broker, topic_name)
    messages = [parse_message(record.value) for record in records]
    assert all(isinstance(message, DroneMessage) for message in messages)
    assert report["sent"] == len(records) == 3000 and report["failed"] == 0
    assert report["violations"] == sum(message.is_violation for message in messages) > 0
    assert report["alerts"] == sum(message.needs_human for message in messages) > 0
    assert all(record.key == message.drone_id.encode() for record, message in zip(records, messages))
    assert len({message.message_id for message in messages}) == 3000


def test_same_seed_and_start_give_the_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    outputs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        path = tmp_path / f"{name}.jsonl"
        assert simulate("--count=2000", "--rate=0", f"--seed={seed}", f"--start_time={START}", f"--out={path}").returncode == 0
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1] and outputs[0] != outputs[2]


def test_drones_fly_paths_and_never_teleport() -> None:
    by_drone = collections.defaultdict(list)
    for message in generated(40_000, drones=20, rate=50):
        by_drone[message.drone_id].append(message)
    for track in by_drone.values():
        for before, after in zip(track, track[1:]):
            seconds = (after.timestamp - before.timestamp).total_seconds()
            metres = distance_m((before.latitude, before.longitude), (after.latitude, after.longitude))
            assert metres <= 16.0 * seconds + 1.0, (before, after)
        assert len({(m.latitude, m.longitude) for m in track}) > len(track) // 2


def test_batteries_drain_recharge_and_stay_in_range() -> None:
    track = [m for m in generated(300_000, drones=2, rate=2) if m.drone_id == "drone-0000"]
    levels = [m.battery_pct for m in track]
    assert all(0.0 <= level <= 100.0 for level in levels)
    rises = sum(after > before for before, after in zip(levels, levels[1:]))
    falls = sum(after < before for before, after in zip(levels, levels[1:]))
    assert rises > 100 and falls > 100, "the battery should both drain in flight and recharge at base"
    assert min(levels) < 20 and max(levels) > 90


def test_human_ratio_is_the_share_of_violations_with_code_100() -> None:
    messages = generated(200_000, violation_ratio=0.5, human_ratio=0.01)
    violations = [m for m in messages if m.is_violation]
    share = sum(m.needs_human for m in violations) / len(violations)
    assert 0.007 < share < 0.013
    assert all((m.image_id is not None) == m.is_violation for m in messages)


@pytest.mark.parametrize("flag", ["--rate=-5", "--human_ratio=2", "--drones=0", "--start_time=yesterday", "--count=3 --duration=1"])
def test_bad_flags_are_usage_errors_without_traceback(flag: str) -> None:
    result = simulate(*flag.split())
    assert result.returncode == 2 and "Traceback" not in result.stderr and "error:" in result.stderr


def test_an_unreachable_broker_is_one_line(tmp_path: Path) -> None:
    result = simulate("--count=5", "--bootstrap_servers=127.0.0.1:9")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and "no Kafka broker" in result.stderr


def test_a_broker_restart_mid_run_loses_and_doubles_nothing(tmp_path: Path, topic_name: str) -> None:
    from runners.brokers import BrokerError, broker_command, free_port
    from runners.local import start, stop
    from runners.workspace import using_home

    port = free_port()
    with using_home(tmp_path):
        try:
            broker = start(broker_command("kafka", port))
        except BrokerError as reason:
            pytest.skip(f"needs the durable kafka engine: {reason}")
    settings = KafkaSettings(f"127.0.0.1:{port}")
    sender = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--count=20000", "--rate=2000", f"--topic={topic_name}",
         f"--bootstrap_servers={settings.bootstrap_servers}", f"--start_time={START}"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_until_topic_has(settings, topic_name, 2000)
        stop(broker)
        with using_home(tmp_path):
            broker = start(broker_command("kafka", port))
        out, err = sender.communicate(timeout=300)
        assert sender.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["sent"] == 20000
        ids = [orjson.loads(record.value)["message_id"] for record in read_all(settings, topic_name)]
        assert len(ids) == len(set(ids)) == 20000
    finally:
        sender.kill()
        stop(broker)


def wait_until_topic_has(settings: KafkaSettings, topic: str, count: int) -> None:
    import time

    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(settings.consumer_config("probe", log_level=0))
    deadline = time.monotonic() + 60
    try:
        while True:
            topics = consumer.list_topics(timeout=5).topics
            if topic in topics:
                ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1] for p in topics[topic].partitions]
                if sum(ends) >= count:
                    return
            assert time.monotonic() < deadline, f"{topic} never reached {count} messages"
            time.sleep(0.05)
    finally:
        consumer.close()
