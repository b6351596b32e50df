"""The lake on ``gs://``: the stream pipeline writes to gcp-storage-emulator; gcsfs and pandas read it back."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runners.brokers import free_port
from tests.kafka_io import produce_all
from tests.ports import wait_for_port
from tests.test_stream_pipeline import stream_args, traffic
from transforms.kafka_settings import KafkaSettings

# gcsfs's probe for hierarchical-namespace buckets speaks gRPC over TLS, which the emulator
# does not: each read would wait 60 s before falling back. Set before gcsfs is imported.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

BUCKET = "dronecop-lake"


@pytest.fixture(scope="module")
def gcs_emulator() -> Iterator[str]:
    """gcp-storage-emulator on a free port, in memory, with STORAGE_EMULATOR_HOST pointing at it."""
    port = free_port()
    emulator = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host=127.0.0.1", f"--port={port}", "--in-memory",
         f"--default-bucket={BUCKET}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, emulator, "the GCS emulator")
    host = f"http://127.0.0.1:{port}"
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = host
    yield host
    if previous is None:
        os.environ.pop("STORAGE_EMULATOR_HOST")
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = previous
    emulator.terminate()
    emulator.wait(10)


def test_drain_writes_the_lake_to_gcs_and_it_reads_back(broker: KafkaSettings, topic_name: str, gcs_emulator: str) -> None:
    import gcsfs
    import pandas as pd

    records, valid, _ = traffic(1500)
    produce_all(broker, topic_name, records)
    topics = {"messages": topic_name, "alerts": f"{topic_name}-alerts", "dead": f"{topic_name}-dead"}
    lake = f"gs://{BUCKET}/{topic_name}"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    drained = subprocess.run([sys.executable, "-m", "pipelines.stream", *stream_args(broker, topics, lake)],
                             cwd=env["PYTHONPATH"], env=env, capture_output=True, text=True, timeout=300)
    assert drained.returncode == 0, drained.stderr[-2000:]
    assert "_get_credentials_with_retrys" not in drained.stderr, "the emulator run waited for Google credentials"

    storage = {"token": "anon", "endpoint_url": gcs_emulator}
    files = gcsfs.GCSFileSystem(**storage).find(f"{BUCKET}/{topic_name}/drone")
    assert files and all("/dt=" in path and "/hour=" in path and path.endswith(".parquet") for path in files)
    frame = pd.read_parquet(f"{lake}/drone", storage_options=storage)
    assert sorted(frame["message_id"]) == sorted(message.message_id for message in valid)
