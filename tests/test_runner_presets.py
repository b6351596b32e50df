"""Runner presets build the stream pipeline for every runner; PortableRunner really runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import (
    DirectOptions,
    FlinkRunnerOptions,
    PipelineOptions,
    PortableOptions,
    PrismRunnerOptions,
    SetupOptions,
    StandardOptions,
)
from google.protobuf.json_format import MessageToJson

from pipelines import modes, stream
from runners.brokers import free_port
from runners.maven import JavaUnavailable
from runners.presets import ENDLESS_JOB_WATCH_S, batch_runner, flink_job_server_coordinate, local_options
from tests.support.kafka_io import produce_all
from tests.support.ports import wait_for_port
from tests.support.streams import lake_message_ids, stream_args, traffic
from transforms.kafka_settings import KafkaSettings
from transforms.kafka_source import PartitionSpan, ReadKafkaBatches

REPO_ROOT = Path(__file__).resolve().parents[1]


def build_stream_graph(options: PipelineOptions) -> beam.Pipeline:
    """The stream pipeline's graph with a preset's options, without submitting it anywhere.

    The graph is built on a local runner object because constructing a Dataflow pipeline
    already checks its temp bucket in the cloud.
    """
    spans = [PartitionSpan("drone-messages", partition, 0, 10) for partition in range(4)]
    reading = modes.Reading(ReadKafkaBatches(KafkaSettings(), "group", spans, bounded=True), bounded=True)
    pipeline = stream.build_pipeline(options, reading, runner="DirectRunner")
    pipeline.to_runner_api()
    return pipeline


def test_direct_preset_uses_every_core_with_threads_unless_told_otherwise() -> None:
    direct = local_options([]).view_as(DirectOptions)
    assert direct.direct_running_mode == "multi_threading" and direct.direct_num_workers >= 1
    told = local_options(["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert told.view_as(DirectOptions).direct_running_mode == "in_memory"
    assert told.view_as(DirectOptions).direct_num_workers == 1
    build_stream_graph(told)


def test_shuffling_pipelines_run_on_one_worker_unless_told_otherwise() -> None:
    direct = local_options([], shuffles=True).view_as(DirectOptions)
    assert (direct.direct_running_mode, direct.direct_num_workers) == ("in_memory", 1)
    told = local_options(["--direct_running_mode=multi_processing"], shuffles=True)
    assert told.view_as(DirectOptions).direct_running_mode == "multi_processing"
    assert told.view_as(DirectOptions).direct_num_workers >= 1


def test_bounded_pipelines_on_the_direct_runner_run_on_the_fn_api_runner_with_their_options() -> None:
    """Not Prism one day and the FnApiRunner the next: the DirectRunner would try Prism first for every slice of a drain."""
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    runner = batch_runner(local_options(["--direct_num_workers=3"]))
    assert isinstance(runner, FnApiRunner)
    given = json.loads(MessageToJson(runner._provision_info.provision_info.pipeline_options))  # what its workers are told
    assert int(given["beam:option:direct_num_workers:v1"]) == 3
    assert batch_runner(local_options(["--streaming"])) is None
    assert batch_runner(local_options(["--runner=FlinkRunner", "--flink_job_server_jar=/j.jar"])) is None


def test_flink_preset_runs_embedded_with_loopback_workers_and_our_packages(tmp_path: Path) -> None:
    jar = tmp_path / "job-server.jar"
    options = local_options(["--runner=FlinkRunner", f"--flink_job_server_jar={jar}"])
    flink = options.view_as(FlinkRunnerOptions)
    assert flink.flink_master == "[local]" and flink.flink_job_server_jar == str(jar) and flink.parallelism >= 1
    assert options.view_as(PortableOptions).environment_type == "LOOPBACK"
    assert options.view_as(SetupOptions).setup_file == str(REPO_ROOT / "setup.py")
    assert options.get_all_options()["checkpointing_interval"] == 10_000
    build_stream_graph(options)


def test_flink_job_server_comes_from_maven_or_a_one_line_reason() -> None:
    try:
        jar = Path(local_options(["--runner=FlinkRunner"]).view_as(FlinkRunnerOptions).flink_job_server_jar)
    except JavaUnavailable as reason:
        assert "\n" not in str(reason) and (flink_job_server_coordinate() in str(reason) or "not found" in str(reason))
    else:
        assert jar.is_file() and jar.suffix == ".jar"


def test_dataflow_preset_ships_setup_py() -> None:
    options = local_options(["--runner=DataflowRunner", "--project=p", "--region=us-east1", "--temp_location=gs://b/tmp", "--streaming"])
    assert options.view_as(SetupOptions).setup_file == str(REPO_ROOT / "setup.py")
    build_stream_graph(options)


@pytest.fixture
def job_service() -> str:
    port = free_port()
    service = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main", f"--port={port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, service, "the Beam job service")
    yield f"localhost:{port}"
    service.terminate()
    service.wait(10)


def test_stream_drains_through_portable_runner(broker: KafkaSettings, topic_name: str, job_service: str, tmp_path: Path, capsys) -> None:
    topics = {"messages": topic_name, "alerts": f"{topic_name}-alerts", "dead": f"{topic_name}-dead"}
    records, valid, _ = traffic(400)
    produce_all(broker, topic_name, records)
    lake_root = tmp_path / "lake"
    args = [*stream_args(broker, topics, lake_root), "--runner=PortableRunner", f"--job_endpoint={job_service}"]
    assert stream.main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["valid"] == len(valid)
    assert sorted(lake_message_ids(lake_root)) == sorted(message.message_id for message in valid)


def test_streaming_on_the_direct_runner_runs_on_prism_from_the_cache(prism: Path) -> None:
    options = local_options(["--streaming"])
    assert options.view_as(StandardOptions).runner == "PrismRunner"
    assert options.view_as(PrismRunnerOptions).prism_location == str(prism)
    told = local_options(["--streaming", "--prism_location=/opt/prism"])
    assert told.view_as(PrismRunnerOptions).prism_location == "/opt/prism"
    pubsub = local_options(["--streaming", "--source=pubsub"])
    assert pubsub.view_as(StandardOptions).runner in (None, "DirectRunner")


def test_an_endless_job_is_watched_past_beams_five_minutes(prism: Path) -> None:
    """Beam watches a portable job through streams that end after --job_server_timeout (300 s):
    a streaming soak on Prism died at 5 minutes with DEADLINE_EXCEEDED."""
    streaming = local_options(["--streaming"])
    assert streaming.view_as(PortableOptions).job_server_timeout == ENDLESS_JOB_WATCH_S >= 30 * 24 * 3600
    told = local_options(["--streaming", "--job_server_timeout=60"])
    assert told.view_as(PortableOptions).job_server_timeout == 60
    bounded = local_options(["--runner=PrismRunner"])
    assert bounded.view_as(PortableOptions).job_server_timeout == 300


def test_without_go_prism_is_one_line_saying_so(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DRONECOP_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert stream.main(["--streaming", "--bootstrap_servers=127.0.0.1:1"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "`go` is not on PATH" in error and "--prism_location" in error


def test_pubsub_needs_streaming_and_a_subscription(capsys) -> None:
    assert stream.main(["--source=pubsub", "--drain"]) == 2
    assert "--streaming" in capsys.readouterr().err


def test_pubsub_source_builds_for_dataflow() -> None:
    from transforms.pubsub_source import ReadPubSubBatches

    options = local_options(["--runner=DataflowRunner", "--streaming", "--source=pubsub"])
    reading = modes.Reading(ReadPubSubBatches("projects/nypd-dronecop/subscriptions/drones"), bounded=False)
    pipeline = stream.build_pipeline(options, reading, runner="DirectRunner")
    transforms = pipeline.to_runner_api().components.transforms.values()
    reads = [transform for transform in transforms if transform.spec.urn == "beam:transform:pubsub_read:v1"]
    assert len(reads) == 1 and b"projects/nypd-dronecop/subscriptions/drones" in reads[0].spec.payload
    assert {"WriteLake/WriteParquet", "PublishAlerts"} <= {t.unique_name for t in transforms}
