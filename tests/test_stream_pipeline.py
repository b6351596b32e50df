"""The stream pipeline against a real broker and a real lake: routing, exactly-once, crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pandas as pd
import pyarrow.dataset as ds
import pytest

from pipelines import stream
from tests.support.kafka_io import produce_all, read_all
from tests.support.streams import lake_message_ids, stream_args, topics, traffic  # noqa: F401 - topics is a fixture
from transforms import lake
from transforms.contract import DroneMessage, alert_id_for, parse_message
from transforms.kafka_settings import KafkaSettings

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_drain_routes_every_message_once(broker: KafkaSettings, topics: dict[str, str], tmp_path: Path, capsys) -> None:
    records, valid, invalid = traffic(3000)
    produce_all(broker, topics["messages"], records)
    lake_root = tmp_path / "lake"

    assert stream.main(stream_args(broker, topics, lake_root)) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    ids = lake_message_ids(lake_root)
    assert sorted(ids) == sorted(message.message_id for message in valid)
    assert len(ids) == len(set(ids))
    alerts = [orjson.loads(record.value) for record in read_all(broker, topics["alerts"])]
    needing_humans = {message.message_id for message in valid if message.needs_human}
    assert {alert["message"]["message_id"] for alert in alerts} == needing_humans
    assert all(alert["alert_id"] == alert_id_for(alert["message"]["message_id"]) and alert["raised_at"] for alert in alerts)
    dead = read_all(broker, topics["dead"])
    assert sorted(record.value for record in dead) == sorted(invalid)
    assert {record.headers["reason"] for record in dead} == {b"bad_json", b"not_an_object", b"missing_field", b"out_of_range"}
    dead_lake = ds.dataset(lake_root / lake.DEAD_LETTER, format="parquet", partitioning="hive").to_table()
    assert sorted(dead_lake.column("raw").to_pylist()) == sorted(invalid)
    assert summary["valid"] == len(valid) and summary["invalid"] == len(invalid) and summary["alerts"] == len(needing_humans)

    files_before = sorted(path.name for path in lake_root.rglob("*.parquet"))
    assert stream.main(stream_args(broker, topics, lake_root)) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["read"] == 0
    assert sorted(path.name for path in lake_root.rglob("*.parquet")) == files_before


def test_lake_reads_back_typed_with_pandas_and_pyarrow(broker: KafkaSettings, topics: dict[str, str], tmp_path: Path) -> None:
    records, valid, _ = traffic(500)
    produce_all(broker, topics["messages"], records)
    lake_root = tmp_path / "lake"
    assert stream.main(stream_args(broker, topics, lake_root)) == 0

    dataset = ds.dataset(lake_root / lake.DRONE, format="parquet", partitioning=ds.partitioning(lake.DRONE_PARTITIONING, flavor="hive"))
    table = dataset.to_table()
    assert table.schema.field("dt").type == "date32[day]" and table.schema.field("hour").type == "int8"
    assert table.schema.field("timestamp").type.tz == "UTC"
    frame = pd.read_parquet(lake_root / lake.DRONE).sort_values("message_id")
    expected = {message.message_id: message for message in valid}
    assert len(frame) == len(expected)
    for row in frame.itertuples():
        message = expected[row.message_id]
        assert row.timestamp.to_pydatetime() == message.timestamp
        assert (None if pd.isna(row.violation_code) else int(row.violation_code)) == message.violation_code
        photo = lake.image_path(str(lake_root), message.timestamp, message.image_id) if message.image_id else None
        assert (None if pd.isna(row.image_uri) else row.image_uri) == photo
        assert int(row.hour) == message.timestamp.hour


def test_drain_killed_mid_run_then_rerun_keeps_every_message_once(broker: KafkaSettings, topics: dict[str, str], tmp_path: Path) -> None:
    records, valid, _ = traffic(150_000, invalid_every=1000)
    produce_all(broker, topics["messages"], records)
    lake_root = tmp_path / "lake"
    command = [sys.executable, "-m", "pipelines.stream", *stream_args(broker, topics, lake_root)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    victim = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not any(lake_root.glob("drone/*/*/*.parquet")):
        assert victim.poll() is None, victim.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no lake file appeared"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()

    rerun = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    ids = lake_message_ids(lake_root)
    assert len(ids) == len(set(ids)), "a message landed twice"
    assert set(ids) == {message.message_id for message in valid}


def valid_ids(records: list[tuple[bytes, bytes]]) -> set[str]:
    return {message.message_id for _, raw in records if isinstance(message := parse_message(raw), DroneMessage)}


def wait_for_lake(lake_root: Path, wanted: set[str], process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not wanted <= set(lake_message_ids(lake_root)):
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "follow mode did not pick up new messages"
        time.sleep(0.05)


def test_follow_keeps_draining_until_interrupted(broker: KafkaSettings, topics: dict[str, str], tmp_path: Path) -> None:
    records, valid, _ = traffic(2000)
    first, second = records[:1000], records[1000:]
    lake_root = tmp_path / "lake"
    command = [sys.executable, "-m", "pipelines.stream", *stream_args(broker, topics, lake_root)[:-1], "--follow", "--poll_seconds=0.2"]
    produce_all(broker, topics["messages"], first)
    follower = subprocess.Popen(
        command, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for_lake(lake_root, valid_ids(first), follower)
        produce_all(broker, topics["messages"], second)
        wait_for_lake(lake_root, valid_ids(second), follower)
    finally:
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=120)
    assert follower.returncode == 0, err.decode()[-2000:]
    final = json.loads(out.decode().strip().splitlines()[-1])
    assert final["mode"] == "follow" and final["valid"] == len(valid)
    ids = lake_message_ids(lake_root)
    assert sorted(ids) == sorted(message.message_id for message in valid)


@pytest.mark.parametrize("pipeline", ["stream", "history"])
def test_without_a_broker_the_pipelines_say_so_at_once_and_exit_2_after_the_timeout(pipeline: str, tmp_path: Path) -> None:
    from runners.brokers import free_port

    command = [
        sys.executable,
        "-m",
        f"pipelines.{pipeline}",
        "--drain",
        f"--bootstrap_servers=127.0.0.1:{free_port()}",
        "--broker_timeout=4",
        f"--output={tmp_path / 'lake'}",
    ]
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and time.monotonic() - started < 60, done.stderr
    assert "python -m runners.local up" in lines[0] and "--broker_timeout" in lines[-1] and "Traceback" not in done.stderr
