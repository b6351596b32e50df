"""The streaming job on Prism, Beam's own streaming runner, against the embedded Kafka.

Each test starts ``python -m pipelines.stream --streaming`` as a user would (the DirectRunner
preset picks Prism), feeds it records stamped with their event time as our producers
stamp them, and watches the lake and the topics while the job runs: windows must fire by
the watermark, not at the end of a job that never ends.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from tests.support.kafka_io import produce_all, read_all
from tests.support.prism import stamped, streaming  # noqa: F401 - streaming is a fixture
from tests.support.streams import drone_message, lake_message_ids, topics  # noqa: F401 - topics is a fixture
from transforms import lake
from transforms.contract import DroneMessage, parse_message
from transforms.kafka_settings import KafkaSettings
from transforms.messages import TOO_LATE

# Event times of days ago: a backlog the wall clock would call late, which event time does not.
START = datetime(2026, 11, 28, 16, 0, tzinfo=timezone.utc)


def message_at(index: int, moment: datetime) -> DroneMessage:
    """Message ``index`` of the test traffic, stamped ``moment``."""
    return dataclasses.replace(drone_message(index), timestamp=moment)


def patrol(count: int, start: datetime = START, step_s: float = 1.0, first: int = 0) -> list[DroneMessage]:
    return [drone_message(index, start, step_s) for index in range(first, first + count)]


def lake_files(lake_root: Path) -> list[Path]:
    return sorted((lake_root / lake.DRONE).rglob("*.parquet")) if (lake_root / lake.DRONE).exists() else []


def dead_letter_reasons(settings: KafkaSettings, topic: str) -> Counter:
    return Counter(record.headers["reason"].decode() for record in read_all(settings, topic))


def alert_ids(settings: KafkaSettings, topic: str) -> set[str]:
    import orjson

    return {orjson.loads(record.value)["message"]["message_id"] for record in read_all(settings, topic)}


def test_windows_fire_by_the_watermark_while_the_job_runs_and_alerts_go_out_at_once(
    streaming, broker: KafkaSettings, topics: dict[str, str], tmp_path: Path
) -> None:
    lake_root = tmp_path / "lake"
    backlog = patrol(600, step_s=0.5)  # five minutes of patrols, days old
    clock = message_at(10_000, START + timedelta(minutes=30))  # one message far later closes them
    produce_all(broker, topics["messages"], [stamped(message) for message in [*backlog, clock]])
    produce_all(broker, topics["messages"], [(b"bad", b"not json", backlog[-1].event_ms, None)])

    job = streaming()
    wanted = {message.message_id for message in backlog}
    job.wait_until(lambda: wanted <= set(lake_message_ids(lake_root)), "backlog windows in the lake")
    needing_humans = {message.message_id for message in backlog if message.needs_human}
    job.wait_until(lambda: needing_humans <= alert_ids(broker, topics["alerts"]), "alerts on the alerts topic")
    job.wait_until(lambda: dead_letter_reasons(broker, topics["dead"]) == Counter(bad_json=1), "the dead letter")

    assert job.process.poll() is None, "the job must still be running: streaming windows fire while it runs"
    assert clock.message_id not in lake_message_ids(lake_root), "the clock's window is still open"
    assert sorted(lake_message_ids(lake_root)) == sorted(wanted)
    assert {path.parent.parent.name for path in lake_files(lake_root)} == {"dt=2026-11-28"}
    assert job.interrupt() == 130


def test_late_data_lands_as_a_later_pane_and_too_late_data_goes_to_the_dead_letter(
    streaming, broker: KafkaSettings, topics: dict[str, str], tmp_path: Path
) -> None:
    lake_root = tmp_path / "lake"
    # Every record on partition 0: the other partitions stay idle and must not hold windows open.
    on_time = patrol(30, step_s=1.0)
    produce_all(broker, topics["messages"], [stamped(message, 0) for message in on_time])
    produce_all(broker, topics["messages"], [stamped(message_at(20_000, START + timedelta(minutes=5)), 0)])
    job = streaming("--allowed_lateness_minutes=10")
    job.wait_until(lambda: len(lake_files(lake_root)) == 1, "the on-time pane of the first window")

    late = message_at(20_001, START + timedelta(seconds=45))  # its window ended 4 minutes before the watermark
    too_late = message_at(20_002, START - timedelta(minutes=20))  # ended 25 minutes before: past 10 allowed
    produce_all(broker, topics["messages"], [stamped(late, 0), stamped(too_late, 0)])
    job.wait_until(lambda: len(lake_files(lake_root)) == 2, "the late pane")
    job.wait_until(lambda: dead_letter_reasons(broker, topics["dead"]) == Counter({TOO_LATE: 1}), "the too-late dead letter")

    # Both files are of the first window (part-1600-); Prism numbers every pane 0, so the
    # late pane's file differs by its content digest, not by its pane index.
    files = {tuple(ds.dataset(path).to_table().column("message_id").to_pylist()) for path in lake_files(lake_root)}
    assert files == {tuple(message.message_id for message in on_time), (late.message_id,)}
    assert {path.name.split("-")[1] for path in lake_files(lake_root)} == {"1600"}
    assert job.process.poll() is None
    [dead] = read_all(broker, topics["dead"])
    assert parse_message(dead.value).message_id == too_late.message_id
    assert job.interrupt() == 130


def test_a_job_killed_at_random_points_and_restarted_keeps_every_message_once(
    streaming, broker: KafkaSettings, topics: dict[str, str], tmp_path: Path
) -> None:
    import random

    lake_root = tmp_path / "lake"
    rounds = 3
    sent: list[DroneMessage] = []
    shuffle = random.Random(13)
    for round_index in range(rounds):
        batch = patrol(400, start=START + timedelta(minutes=3 * round_index), step_s=0.45, first=400 * round_index)
        produce_all(broker, topics["messages"], [stamped(message) for message in batch])
        sent.extend(batch)
        job = streaming()
        some = {message.message_id for message in shuffle.sample(batch[:200], 20)}
        job.wait_until(lambda: some <= set(lake_message_ids(lake_root)), f"round {round_index}'s first files")
        job.kill()

    clock = message_at(90_000, START + timedelta(hours=1))
    produce_all(broker, topics["messages"], [stamped(clock)])
    job = streaming()
    wanted = {message.message_id for message in sent}
    job.wait_until(lambda: wanted <= set(lake_message_ids(lake_root)), "every message after the restarts")
    copies = Counter(lake_message_ids(lake_root))
    assert {message_id for message_id, count in copies.items() if count > 1} == set()
    assert set(copies) == wanted
    assert job.interrupt() == 130


@pytest.fixture(scope="session")
def java_kafka() -> Path:
    """Beam's Java KafkaIO classpath, resolved once by Maven into the cache; skip where Java or Maven is absent."""
    from runners.java_kafka import BEAM_JAVA_VERSION, classpath
    from runners.maven import JavaUnavailable

    try:
        return classpath()
    except JavaUnavailable as reason:
        pytest.skip(f"--kafka_io=java needs Beam's Java KafkaIO {BEAM_JAVA_VERSION}: {reason}")


def test_java_kafka_io_on_prism_feeds_the_same_lake_and_alerts(
    java_kafka: Path, streaming, broker: KafkaSettings, topics: dict[str, str], tmp_path: Path
) -> None:
    lake_root = tmp_path / "lake"
    backlog = patrol(300, step_s=0.5)  # two and a half minutes of patrols, days old
    clock = message_at(30_000, START + timedelta(minutes=30))  # closes their windows
    produce_all(broker, topics["messages"], [stamped(message) for message in [*backlog, clock]])

    job = streaming("--kafka_io=java")
    # Unlike our source's, KafkaIO's create-time watermark of a caught-up partition follows
    # the wall clock, so the clock's own window closes too, once every partition is idle.
    wanted = {message.message_id for message in [*backlog, clock]}
    job.wait_until(lambda: wanted <= set(lake_message_ids(lake_root)), "every window in the lake via Java KafkaIO")
    needing_humans = {message.message_id for message in [*backlog, clock] if message.needs_human}
    assert needing_humans, "the test traffic must hold code-100 messages"
    job.wait_until(lambda: needing_humans <= alert_ids(broker, topics["alerts"]), "alerts on the alerts topic")

    assert job.process.poll() is None, "the streaming job must still be running"
    assert sorted(lake_message_ids(lake_root)) == sorted(wanted)
    assert alert_ids(broker, topics["alerts"]) == needing_humans
    # On Prism the consumer's auto-commit keeps the group's offsets (see the README).
    job.wait_until(lambda: committed_total(broker, topics["messages"]) == len(backlog) + 1, "the group's offsets committed")
    [jvm] = java_children(job.process.pid)
    os.killpg(job.process.pid, signal.SIGINT)  # Ctrl-C: the job is cancelled, then its JVM stopped
    assert job.process.wait(60) == 130, job.tail()
    assert not Path(f"/proc/{jvm}").exists() or "zombie" in Path(f"/proc/{jvm}/status").read_text(), "the JVM outlived the job"


def committed_total(settings: KafkaSettings, topic: str) -> int:
    """The sum over partitions of the offsets the streaming job's group has committed on ``topic``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(settings.consumer_config(f"{topic}-group", log_level=0))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, partition) for partition in partitions], timeout=10)
        return sum(max(position.offset, 0) for position in committed)
    finally:
        consumer.close()


def java_children(pid: int) -> list[int]:
    """The job's child processes running Java (the expansion service and worker pool)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children if Path(f"/proc/{child}/exe").resolve().name == "java"]
