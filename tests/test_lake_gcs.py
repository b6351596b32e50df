"""The lake on ``gs://``: the stream pipeline writes to gcp-storage-emulator; gcsfs and pandas read it back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.support.gcs_emulator import storage_emulator
from tests.support.kafka_io import produce_all
from tests.support.streams import stream_args, traffic
from transforms import lake, object_store
from transforms.kafka_settings import KafkaSettings

# gcsfs's probe for hierarchical-namespace buckets speaks gRPC over TLS, which the emulator
# does not: each read would wait 60 s before falling back. Set before gcsfs is imported.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

BUCKET = "dronecop-lake"


@pytest.fixture(scope="module")
def gcs_emulator() -> Iterator[str]:
    """gcp-storage-emulator on a free port, in memory, with STORAGE_EMULATOR_HOST pointing at it."""
    with storage_emulator(BUCKET) as host:
        previous = os.environ.get("STORAGE_EMULATOR_HOST")
        os.environ["STORAGE_EMULATOR_HOST"] = host
        yield host
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST")
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous


def test_drain_writes_the_lake_to_gcs_and_it_reads_back(broker: KafkaSettings, topic_name: str, gcs_emulator: str) -> None:
    import gcsfs
    import pandas as pd

    records, valid, _ = traffic(1500)
    produce_all(broker, topic_name, records)
    topics = {"messages": topic_name, "alerts": f"{topic_name}-alerts", "dead": f"{topic_name}-dead"}
    lake_root = f"gs://{BUCKET}/{topic_name}"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    drained = subprocess.run(
        [sys.executable, "-m", "pipelines.stream", *stream_args(broker, topics, lake_root)],
        cwd=env["PYTHONPATH"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert drained.returncode == 0, drained.stderr[-2000:]
    assert "_get_credentials_with_retrys" not in drained.stderr, "the emulator run waited for Google credentials"

    storage = {"token": "anon", "endpoint_url": gcs_emulator}
    files = gcsfs.GCSFileSystem(**storage).find(f"{BUCKET}/{topic_name}/drone")
    assert files and all("/dt=" in path and "/hour=" in path and path.endswith(".parquet") for path in files)
    frame = pd.read_parquet(f"{lake_root}/drone", storage_options=storage)
    assert sorted(frame["message_id"]) == sorted(message.message_id for message in valid)


def test_the_analysis_reads_a_gcs_lake_and_writes_its_report_there(gcs_emulator: str, tmp_path: Path) -> None:
    """The same answers from gs:// as from a local copy of the same lake; the report lands in the bucket."""
    import gcsfs

    from bench.analysis import synthetic_history, write_history_lake
    from pipelines.analysis import main as analysis_main

    local, year = tmp_path / "lake", synthetic_history(20_000, seed=5)
    first_week = year.filter(pc.less(year.column("issue_date"), pa.scalar(date(2016, 7, 8))))  # each file is a request
    write_history_lake(local, first_week, replay_share=0.05)
    summonses = set(first_week.column("summons_number").to_pylist())
    storage = gcsfs.GCSFileSystem(token="anon", endpoint_url=gcs_emulator)
    storage.put(str(local / "history"), f"{BUCKET}/analysis/lake/history", recursive=True)
    report_url = f"gs://{BUCKET}/analysis/report"
    assert analysis_main([f"--input=gs://{BUCKET}/analysis/lake", f"--output={report_url}", "--questions=month_trend,borough"]) == 0
    assert analysis_main([f"--input={local}", f"--output={tmp_path / 'report'}", "--questions=month_trend,borough"]) == 0
    from_gcs = json.loads(storage.cat(f"{BUCKET}/analysis/report/report.json"))
    from_disk = json.loads((tmp_path / "report" / "report.json").read_text())
    assert from_gcs["inputs"]["history"]["distinct_rows"] == len(summonses) > 300
    assert {key: from_gcs[key] for key in ("month_trend", "borough")} == {key: from_disk[key] for key in ("month_trend", "borough")}
    assert storage.exists(f"{BUCKET}/analysis/report/index.html") and storage.exists(f"{BUCKET}/analysis/report/borough.png")
    assert analysis_main([f"--input=gs://{BUCKET}/analysis/lake", f"--output={report_url}", "--questions=month_trend"]) == 0
    storage.invalidate_cache()
    assert sorted(path.rsplit("/", 1)[-1] for path in storage.find(f"{BUCKET}/analysis/report")) == [
        "index.html",
        "month_trend.png",
        "report.json",
        "report.md",
    ], "the second run's report only"
    assert storage.ls(f"{BUCKET}/analysis") == [f"{BUCKET}/analysis/lake", f"{BUCKET}/analysis/report"], "no staging left"


def test_temporary_objects_an_interrupted_write_left_are_swept_from_gcs(gcs_emulator: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    root = f"gs://{BUCKET}/sweep-{uuid.uuid4().hex[:8]}"
    lake.write_table(root, f"{root}/drone/dt=2026-11-28/hour=17", "kept.parquet", pa.table({"x": [1]}))
    for name in ("one", "two"):
        with FileSystems.create(f"{root}/{lake.TEMP_FOLDER}/{name}") as handle:
            handle.write(b"half a file")
    assert lake.sweep_abandoned_temp_files(root) == 0, "fresh temporary objects may be a running writer's"
    assert lake.sweep_abandoned_temp_files(root, now=time.time() + 2 * lake.ABANDONED_TEMP_AGE_S) == 2
    assert FileSystems.match([f"{root}/{lake.TEMP_FOLDER}/*"])[0].metadata_list == []
    assert len(FileSystems.match([f"{root}/drone/*/*/*.parquet"])[0].metadata_list) == 1


def test_on_the_emulator_google_s_auth_finds_credentials_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beam asks google-auth before it connects; with nothing found it retries for 18–25 s, so the emulator's token must be found."""
    import google.auth

    monkeypatch.setenv(object_store.EMULATOR_VARIABLE, "http://127.0.0.1:9")
    monkeypatch.delenv(object_store.CREDENTIALS_VARIABLE, raising=False)
    object_store.prepare_for(f"gs://{BUCKET}/lake")
    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    assert credentials.valid  # no refresh: nothing is asked of Google


def test_off_the_emulator_the_credentials_are_left_to_google_s_own_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(object_store.EMULATOR_VARIABLE, raising=False)
    monkeypatch.delenv(object_store.CREDENTIALS_VARIABLE, raising=False)
    object_store.prepare_for(f"gs://{BUCKET}/lake")
    assert object_store.CREDENTIALS_VARIABLE not in os.environ
