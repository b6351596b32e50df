"""The embedded local stack: both engines carry messages, Kafka keeps them, the CLI behaves."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runners.brokers import broker_command, free_port
from runners.demo import forget_load_the_lake_lost
from runners.local import start, stop
from tests.support.kafka_io import produce_all, read_all
from transforms.kafka_settings import TOPICS, KafkaSettings

REPO_ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "DRONECOP_HOME": str(home), "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "runners.local", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_every_message_produced_is_read_back_by_assignment(any_broker: KafkaSettings, topic_name: str) -> None:
    records = [(f"drone-{i % 9}".encode(), f"message {i}".encode()) for i in range(5000)]
    produce_all(any_broker, topic_name, records)
    read = read_all(any_broker, topic_name)
    assert sorted(record.value for record in read) == sorted(value for _, value in records)
    assert {(record.key, record.value) for record in read} == set(records)


def test_kafka_keeps_messages_across_a_restart(tmp_path: Path, topic_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRONECOP_HOME", str(tmp_path))
    port = free_port()
    first = start(broker_command("kafka", port))
    settings = KafkaSettings(f"127.0.0.1:{port}")
    try:
        produce_all(settings, topic_name, [(None, f"before restart {i}".encode()) for i in range(100)])
    finally:
        assert stop(first) in (0, 143)
    second = start(broker_command("kafka", port))
    try:
        assert sorted(record.value for record in read_all(settings, topic_name)) == sorted(
            f"before restart {i}".encode() for i in range(100)
        )
    finally:
        stop(second)


@pytest.mark.parametrize("engine", ["kafka", "tansu"])
def test_up_creates_the_topics_status_reports_and_down_stops(tmp_path: Path, engine: str) -> None:
    from confluent_kafka.admin import AdminClient

    port = free_port()
    started = cli("up", f"--port={port}", f"--engine={engine}", home=tmp_path)
    if engine == "kafka" and started.returncode == 2 and "needs Java" in started.stderr:
        pytest.skip(started.stderr.strip())
    assert started.returncode == 0, started.stderr
    try:
        topics = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=10).topics
        for spec in TOPICS:
            assert len(topics[spec.name].partitions) == spec.partitions
        assert "alive" in cli("status", home=tmp_path).stdout
        assert "already up" in cli("up", f"--port={port}", f"--engine={engine}", home=tmp_path).stdout
    finally:
        stopped = cli("down", home=tmp_path)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert cli("status", home=tmp_path).returncode == 3
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("broker", f"--port={port}", "--engine=tansu", home=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"runners.local: port {port} is already in use on 127.0.0.1"


def test_foreground_broker_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "DRONECOP_HOME": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "runners.local", "broker", f"--port={port}", "--engine=tansu"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert "ready" in process.stdout.readline()
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def test_the_demo_loads_its_history_again_when_the_lake_lost_it(tmp_path: Path) -> None:
    lake, checkpoint, rejects = tmp_path / "lake", tmp_path / "demo-history.ckpt", tmp_path / "demo-history.rejects.csv"
    checkpoint.write_text("{}")
    rejects.write_text("line,reason,raw\n")
    assert forget_load_the_lake_lost(lake, checkpoint, rejects)
    assert not checkpoint.exists() and not rejects.exists()

    checkpoint.write_text("{}")
    day = lake / "history" / "dt=2017-03-14"
    day.mkdir(parents=True)
    pq.write_table(pa.table({"summons_number": [1283294138]}), day / "part.parquet")
    assert not forget_load_the_lake_lost(lake, checkpoint, rejects)
    assert checkpoint.exists()
