"""The stream pipeline on a real embedded Flink (``--flink_master=[local]``): true streaming.

Needs Java and Beam's Flink job server jar from Maven; where either is missing the tests
skip with the reason. Python source and, with ``--kafka_io=java``, Beam's Java KafkaIO.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from runners.maven import JavaUnavailable, resolve_jar
from runners.presets import flink_job_server_coordinate
from tests.support.kafka_io import produce_all, read_all
from tests.support.streams import lake_message_ids, traffic
from transforms.kafka_settings import KafkaSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 240


def jar_or_skip(coordinate: str) -> Path:
    try:
        return resolve_jar(coordinate)
    except JavaUnavailable as reason:
        pytest.skip(f"Flink streaming test needs {coordinate}: {reason}")


def java_kafka_or_skip() -> Path:
    from runners.java_kafka import BEAM_JAVA_VERSION, classpath

    try:
        return classpath()
    except JavaUnavailable as reason:
        pytest.skip(f"Java KafkaIO test needs Beam's Java KafkaIO {BEAM_JAVA_VERSION} from Maven: {reason}")


@pytest.mark.parametrize("kafka_io", ["python", "java"])
def test_stream_on_embedded_flink_writes_windows_and_alerts_while_running(
    broker: KafkaSettings, topic_name: str, tmp_path: Path, kafka_io: str
) -> None:
    job_server = jar_or_skip(flink_job_server_coordinate())
    if kafka_io == "java":
        java_kafka_or_skip()
    records, valid, _ = traffic(2000)
    produce_all(broker, topic_name, records)
    lake_root = tmp_path / "lake"
    command = [
        sys.executable,
        "-m",
        "pipelines.stream",
        "--streaming",
        "--runner=FlinkRunner",
        "--flink_master=[local]",
        f"--flink_job_server_jar={job_server}",
        f"--kafka_io={kafka_io}",
        f"--bootstrap_servers={broker.bootstrap_servers}",
        f"--topic={topic_name}",
        f"--alerts_topic={topic_name}-alerts",
        f"--dead_letter_topic={topic_name}-dead",
        f"--group_id={topic_name}-flink",
        f"--output={lake_root}",
        "--window_minutes=1",
        "--allowed_lateness_minutes=0",
    ]
    job = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        expected = {message.message_id for message in valid}
        deadline = time.monotonic() + DEADLINE_S
        while set(lake_message_ids(lake_root)) != expected:
            assert job.poll() is None, "the Flink job stopped"
            assert time.monotonic() < deadline, "windows did not all land while the job ran"
            time.sleep(0.5)
        alerts = {orjson.loads(record.value)["message"]["message_id"] for record in read_all(broker, f"{topic_name}-alerts")}
        assert alerts == {message.message_id for message in valid if message.needs_human}
    finally:
        job.send_signal(signal.SIGINT)
        job.wait(60)
    ids = lake_message_ids(lake_root)
    assert len(ids) == len(set(ids))
