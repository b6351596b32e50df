"""The lake on ``s3://``: the stream pipeline drains into a bucket, the analysis reads it and reports there.

S3 is moto's in-process mock of AWS: the pipelines run in this process (the DirectRunner's
threads), so every call Beam's S3 filesystem makes reaches the mock, and no request leaves
the machine. Beam's S3 options (``--s3_region_name``, ``--s3_endpoint_url``, …) are the
same flags a real bucket takes.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alert_desk.photos import Photos
from pipelines.analysis import main as analysis_main
from pipelines.stream import main as stream_main
from simulator import cli as simulator_cli
from tests.support.kafka_io import produce_all
from tests.support.streams import stream_args, traffic
from transforms import lake
from transforms.contract import DroneMessage, format_timestamp, parse_message
from transforms.kafka_settings import KafkaSettings

moto = pytest.importorskip("moto", reason="the s3:// tests need moto (pip install -e '.[dev,aws]')")
boto3 = pytest.importorskip("boto3", reason="the s3:// tests need apache-beam[aws] (pip install -e '.[aws]')")

BUCKET = "dronecop-lake"
REGION = "us-east-1"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A mocked S3 with an empty bucket; fake credentials, so no real account could ever be used."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with moto.mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


def keys_under(s3: Any, prefix: str) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def test_drain_writes_the_lake_to_s3_and_the_analysis_reports_there(broker: KafkaSettings, topic_name: str, s3: Any) -> None:
    records, valid, _ = traffic(600)
    produce_all(broker, topic_name, records)
    topics = {"messages": topic_name, "alerts": f"{topic_name}-alerts", "dead": f"{topic_name}-dead"}
    root = f"s3://{BUCKET}/{topic_name}"

    assert stream_main([*stream_args(broker, topics, root), f"--s3_region_name={REGION}"]) == 0

    drone_files = [key for key in keys_under(s3, f"{topic_name}/{lake.DRONE}/") if key.endswith(".parquet")]
    assert drone_files and all("/dt=" in key and "/hour=" in key for key in drone_files)
    stored = [
        message_id
        for key in drone_files
        for message_id in pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())).column("message_id").to_pylist()
    ]
    assert sorted(stored) == sorted(message.message_id for message in valid)
    assert keys_under(s3, f"{topic_name}/{lake.TEMP_FOLDER}/") == [], "every temporary object was renamed into place"

    report = f"{root}/reports"
    assert (
        analysis_main([f"--input={root}", f"--output={report}", f"--s3_region_name={REGION}", "--questions=hour_of_day,drone_fleet"]) == 0
    )
    assert {key.rsplit("/", 1)[1] for key in keys_under(s3, f"{topic_name}/reports/")} >= {"report.json", "index.html"}


def test_temporary_objects_an_interrupted_write_left_are_swept_from_s3(s3: Any) -> None:
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    FileSystems.set_options(PipelineOptions([f"--s3_region_name={REGION}"]))
    root = f"s3://{BUCKET}/sweep-{uuid.uuid4().hex[:8]}"
    lake.write_table(root, f"{root}/drone/dt=2026-11-28/hour=17", "kept.parquet", pa.table({"x": [1]}))
    for name in ("one", "two"):
        s3.put_object(Bucket=BUCKET, Key=f"{root.split('/', 3)[3]}/{lake.TEMP_FOLDER}/{name}", Body=b"half a file")
    assert lake.sweep_abandoned_temp_files(root) == 0, "fresh temporary objects may be a running writer's"
    assert lake.sweep_abandoned_temp_files(root, now=time.time() + 2 * lake.ABANDONED_TEMP_AGE_S) == 2
    assert keys_under(s3, f"{root.split('/', 3)[3]}/{lake.TEMP_FOLDER}/") == []
    assert len(keys_under(s3, f"{root.split('/', 3)[3]}/drone/")) == 1


def test_photos_go_to_s3_before_their_messages_and_the_desk_reads_them_back(s3: Any, tmp_path: Path) -> None:
    """The simulator and the desk run no pipeline: Beam's S3 filesystem gets its default options, AWS's variables."""
    from apache_beam.io.filesystems import FileSystems

    FileSystems.set_options(None)  # as in a process that has run no pipeline
    root, out = f"s3://{BUCKET}/photos-{uuid.uuid4().hex[:8]}", tmp_path / "fleet.jsonl"
    args = simulator_cli.parse_args(
        ["--count=200", "--rate=0", "--violation_ratio=0.2", f"--lake={root}", f"--out={out}", "--start_time=2026-11-28T17:00:00Z"]
    )
    counts = simulator_cli.run(args, threading.Event())
    violations = [
        message
        for message in map(parse_message, out.read_bytes().splitlines())
        if isinstance(message, DroneMessage) and message.image_id is not None
    ]
    keys = set(keys_under(s3, f"{root.split('/', 3)[3]}/{lake.IMAGES}/"))
    assert counts.photos == len(violations) == len(keys) > 10
    photos, first = Photos(root), violations[0]
    stored = s3.get_object(Bucket=BUCKET, Key=lake.image_path(root, first.timestamp, first.image_id).split("/", 3)[3])
    assert photos.read(first.image_id, format_timestamp(first.timestamp)) == stored["Body"].read()
    assert not photos.is_missing(first.image_id, format_timestamp(first.timestamp))
    assert photos.is_missing("img-never-taken", format_timestamp(first.timestamp))
    assert photos.read("img-never-taken", format_timestamp(first.timestamp)) is None
