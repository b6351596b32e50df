"""deploy/ checked by every tool that runs offline, and held to the code it deploys.

No container engine, cluster or cloud account here: the manifests are parsed, validated
(docker-compose, kubernetes-validate, checkov, python-hcl2, tofu) and cross-checked against
the owners of what they restate (kafka_settings, the pipelines' options, runners.profiles).
Tools that are absent skip with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from apache_beam.options.pipeline_options import (
    DebugOptions,
    FlinkRunnerOptions,
    PipelineOptions,
    PortableOptions,
    SetupOptions,
    WorkerOptions,
)
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2

from pipelines import analysis, history, modes, stream
from pipelines.analysis import AnalysisOptions
from pipelines.options import DroneStreamOptions, KafkaSourceOptions, RunModeOptions
from runners import profiles
from runners.brokers import free_port
from runners.presets import ENDLESS_JOB_WATCH_S, FlinkPresetOptions, runner_name
from tests.support.history import history_args, lake_history, loader_batches
from tests.support.kafka_io import produce_all, read_all
from tests.support.ports import wait_for_port
from tests.support.streams import lake_message_ids, stream_args, traffic
from transforms import lake
from transforms.analysis.questions import QUESTIONS
from transforms.kafka_settings import DRONE_ALERTS, DRONE_DEAD_LETTER, DRONE_MESSAGES, TOPICS, TOPICS_BY_NAME, KafkaSettings
from transforms.kafka_source import PartitionSpan

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY = REPO_ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose" / "docker-compose.yml"
K8S = DEPLOY / "k8s"
DATAFLOW = DEPLOY / "dataflow"
TERRAFORM = DEPLOY / "terraform"
KUBERNETES_VERSION = "1.30"  # native sidecars (initContainers with restartPolicy: Always) need 1.29+
CHECKOV = [REPO_ROOT / ".dronecop" / "tools" / "checkov" / "bin" / "checkov", shutil.which("checkov")]
TOFU = [REPO_ROOT / ".dronecop" / "cache" / "bin" / "tofu", shutil.which("tofu")]


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, Any]:
    return compose()["services"]


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            yield path, document


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [document for _, document in k8s_documents() if document["kind"] == kind]


def first_tool(candidates: list[Path | str | None]) -> str | None:
    return next((str(path) for path in candidates if path and Path(path).is_file()), None)


def option_actions(*classes: type[PipelineOptions]) -> dict[str, argparse.Action]:
    """Every flag the given option classes define, by destination."""
    parser = argparse.ArgumentParser()
    for cls in classes:
        cls._add_argparse_args(parser)
    return {action.dest: action for action in parser._actions if action.dest != "help"}


def flag_value(args: list[str], flag: str) -> str:
    return next(arg.split("=", 1)[1] for arg in args if arg.startswith(f"--{flag}="))


# --- Everything parses and is accepted by its own validator -------------------------------


def test_every_yaml_and_json_file_parses() -> None:
    yaml_files = [*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")]
    json_files = list(DEPLOY.rglob("*.json"))
    assert len(yaml_files) >= 8 and len(json_files) == 2
    for path in yaml_files:
        assert all(document is not None for document in yaml.safe_load_all(path.read_text())), path
    for path in json_files:
        assert isinstance(json.loads(path.read_text()), dict), path


def test_docker_compose_accepts_the_compose_file() -> None:
    if not shutil.which("docker-compose"):
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    checked = subprocess.run(["docker-compose", "-f", str(COMPOSE_FILE), "config", "-q"], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr


def test_kubernetes_validate_accepts_every_built_in_kind_and_the_flink_pod_templates() -> None:
    import kubernetes_validate

    built_in = 0
    for _, document in k8s_documents():
        if (document["apiVersion"], document["kind"]) in DOCUMENTED_FIELDS or document["kind"] == "Kustomization":
            continue
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        built_in += 1
    flink = k8s_kind("FlinkDeployment")[0]["spec"]
    for template in (flink["podTemplate"], flink["taskManager"]["podTemplate"]):
        kubernetes_validate.validate(template, KUBERNETES_VERSION, strict=True)
    assert built_in == 9  # Namespace, ConfigMap, PVC, Deployment, Service, 2 NetworkPolicies, 2 Jobs


# The fields each operator documents for the parts we use. A key not listed here is a typo or
# a field of another operator version: Strimzi 0.49+ (kafka.strimzi.io/v1) and the Flink
# Kubernetes Operator 1.10+ (flink.apache.org/v1beta1). "*" marks a free-form map; pod
# templates are validated above as the Pods they are.
ANY = "*"
POD = "pod"
STRIMZI_STORAGE = {
    "type": None,
    "volumes": [{"id": None, "type": None, "size": None, "class": None, "deleteClaim": None, "kraftMetadata": None, "selector": ANY}],
}
RESOURCES = {"requests": ANY, "limits": ANY}
DOCUMENTED_FIELDS: dict[tuple[str, str], dict[str, Any]] = {
    ("kafka.strimzi.io/v1", "KafkaNodePool"): {
        "replicas": None,
        "roles": None,
        "storage": STRIMZI_STORAGE,
        "resources": RESOURCES,
        "jvmOptions": ANY,
        "template": ANY,
    },
    ("kafka.strimzi.io/v1", "Kafka"): {
        "kafka": {
            "version": None,
            "metadataVersion": None,
            "config": ANY,
            "authorization": ANY,
            "rack": ANY,
            "logging": ANY,
            "metricsConfig": ANY,
            "template": ANY,
            "quotas": ANY,
            "jvmOptions": ANY,
            "image": None,
            "listeners": [
                {
                    "name": None,
                    "port": None,
                    "type": None,
                    "tls": None,
                    "authentication": ANY,
                    "configuration": ANY,
                    "networkPolicyPeers": ANY,
                }
            ],
        },
        "entityOperator": {"topicOperator": ANY, "userOperator": ANY, "template": ANY},
        "cruiseControl": ANY,
        "kafkaExporter": ANY,
        "clusterCa": ANY,
        "clientsCa": ANY,
        "maintenanceTimeWindows": None,
    },
    ("kafka.strimzi.io/v1", "KafkaTopic"): {"partitions": None, "replicas": None, "config": ANY, "topicName": None},
    ("flink.apache.org/v1beta1", "FlinkDeployment"): {
        "image": None,
        "imagePullPolicy": None,
        "flinkVersion": None,
        "mode": None,
        "serviceAccount": None,
        "flinkConfiguration": ANY,
        "logConfiguration": ANY,
        "podTemplate": POD,
        "ingress": ANY,
        "restartNonce": None,
        "job": {
            "jarURI": None,
            "entryClass": None,
            "args": None,
            "parallelism": None,
            "upgradeMode": None,
            "state": None,
            "allowNonRestoredState": None,
            "initialSavepointPath": None,
        },
        "jobManager": {"replicas": None, "resource": {"cpu": None, "memory": None, "ephemeralStorage": None}, "podTemplate": POD},
        "taskManager": {"replicas": None, "resource": {"cpu": None, "memory": None, "ephemeralStorage": None}, "podTemplate": POD},
    },
}
FLINK_VERSIONS = {"v1_19", "v1_20"}  # what both Beam 2.77's job servers and the operator know


def undocumented_fields(value: Any, schema: Any, where: str) -> list[str]:
    """Paths in ``value`` that ``schema`` does not list."""
    if schema in (None, ANY, POD):
        return []
    if isinstance(schema, list):
        return [path for index, item in enumerate(value) for path in undocumented_fields(item, schema[0], f"{where}[{index}]")]
    unknown = [f"{where}.{key}" for key in value if key not in schema]
    return unknown + [
        path for key, item in value.items() if key in schema for path in undocumented_fields(item, schema[key], f"{where}.{key}")
    ]


def test_custom_resources_use_only_the_fields_their_operators_document() -> None:
    checked = 0
    for path, document in k8s_documents():
        schema = DOCUMENTED_FIELDS.get((document["apiVersion"], document["kind"]))
        if schema is None:
            continue
        assert set(document) <= {"apiVersion", "kind", "metadata", "spec"}, path
        assert undocumented_fields(document["spec"], schema, document["kind"]) == [], path
        checked += 1
    assert checked == 7  # node pool, Kafka, four topics, the Flink deployment
    flink = k8s_kind("FlinkDeployment")[0]["spec"]
    assert flink["flinkVersion"] in FLINK_VERSIONS and flink["mode"] in {"native", "standalone"}
    for pool in k8s_kind("KafkaNodePool"):
        assert set(pool["spec"]["roles"]) <= {"controller", "broker"}
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == k8s_kind("Kafka")[0]["metadata"]["name"]


def checkov_report() -> list[dict[str, Any]]:
    checkov = first_tool(CHECKOV)
    if checkov is None:
        pytest.skip(
            "checkov is not installed: it downgrades boto3, botocore, packaging and cachetools below what "
            "apache-beam[aws,gcp] installs, so it lives in its own venv (make checkov)"
        )
    run = subprocess.run(
        [checkov, "-d", str(DEPLOY), "--skip-download", "--output", "json"], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )
    report = json.loads(run.stdout)
    return report if isinstance(report, list) else [report]


def test_checkov_passes_and_every_skipped_check_says_why() -> None:
    report = checkov_report()
    assert {section["check_type"] for section in report} >= {"kubernetes", "dockerfile", "terraform"}
    for section in report:
        assert section["summary"]["failed"] == 0, [(check["check_id"], check["file_path"]) for check in section["results"]["failed_checks"]]
        assert section["summary"]["parsing_errors"] == 0, section["check_type"]
        for skipped in section["results"].get("skipped_checks", []):
            reason = skipped["check_result"].get("suppress_comment") or ""
            assert len(reason) >= 40, (skipped["check_id"], skipped["file_path"], reason)


def load_terraform() -> dict[str, Any]:
    import hcl2

    merged: dict[str, list[Any]] = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as handle:
            for block, entries in hcl2.load(handle).items():
                if not block.startswith("__"):
                    merged.setdefault(block, []).extend(entries)
    return merged


def unquote(value: str) -> str:
    return value[1:-1] if value.startswith('"') and value.endswith('"') else value


def terraform_resources(kind: str) -> dict[str, dict[str, Any]]:
    return {
        unquote(name): body for entry in load_terraform()["resource"] if f'"{kind}"' in entry for name, body in entry[f'"{kind}"'].items()
    }


def terraform_variables() -> dict[str, dict[str, Any]]:
    return {unquote(name): body for entry in load_terraform()["variable"] for name, body in entry.items()}


def test_terraform_parses_and_every_variable_is_documented() -> None:
    variables = terraform_variables()
    assert {"project", "region", "bucket_prefix"} <= set(variables)
    for name, body in variables.items():
        assert len(unquote(body.get("description", ""))) >= 20, name
    assert not re.search(r"(?i)(private_key|password|secret|credentials)\s*=", "".join(path.read_text() for path in TERRAFORM.glob("*.tf")))


def test_tofu_finds_the_terraform_formatted() -> None:
    tofu = first_tool(TOFU)
    if tofu is None:
        pytest.skip(
            "OpenTofu is not built: `make tofu` (part of `make test` where Go is present) builds it from the "
            "Go module proxy into .dronecop/cache/bin, about 4 minutes and 3 GB of Go caches the first time"
        )
    checked = subprocess.run(
        [tofu, "fmt", "-check", "-diff", "-recursive", str(TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TF_CLI_CONFIG_FILE": os.devnull},
    )
    assert checked.returncode == 0, checked.stdout


# --- Both sides agree ----------------------------------------------------------------------


def test_compose_creates_the_topics_kafka_settings_owns() -> None:
    script = services()["topics"]["command"][0]
    created = dict(re.findall(r"([a-z-]+):(\d+)", script.split(";")[0]))
    assert {name: int(count) for name, count in created.items()} == {spec.name: spec.partitions for spec in TOPICS}


def test_strimzi_topics_are_the_ones_kafka_settings_owns_sized_to_the_k8s_parallelism() -> None:
    topics = {topic["metadata"]["name"]: topic["spec"] for topic in k8s_kind("KafkaTopic")}
    assert {name: spec["partitions"] for name, spec in topics.items()} == {spec.name: spec.partitions for spec in TOPICS}
    flink = k8s_kind("FlinkDeployment")[0]["spec"]
    slots = int(flink["flinkConfiguration"]["taskmanager.numberOfTaskSlots"]) * flink["taskManager"]["replicas"]
    parallelism = profiles.PROFILES["k8s"].parallelism
    assert slots == parallelism == int(flink["flinkConfiguration"]["parallelism.default"])
    assert parallelism == TOPICS_BY_NAME[DRONE_MESSAGES].partitions  # one subtask per partition
    pools = k8s_kind("KafkaNodePool")
    assert all(spec["replicas"] <= sum(pool["spec"]["replicas"] for pool in pools) for spec in topics.values())


def test_compose_flink_slots_match_the_compose_parallelism() -> None:
    properties = yaml.safe_load(compose()["x-flink"]["environment"]["FLINK_PROPERTIES"])
    assert properties["taskmanager.numberOfTaskSlots"] == profiles.PROFILES["compose"].parallelism
    assert properties["parallelism.default"] == profiles.PROFILES["compose"].parallelism


def every_image() -> list[str]:
    images = [service["image"] for service in services().values() if "image" in service]
    for _, document in k8s_documents():
        images += re.findall(r"^\s*image: (\S+)$", yaml.safe_dump(document), flags=re.MULTILINE)
    images += re.findall(r"^FROM (\S+)", (REPO_ROOT / "deploy" / "Dockerfile").read_text(), flags=re.MULTILINE)
    images += re.findall(r"^FROM (\S+)", (DATAFLOW / "Dockerfile").read_text(), flags=re.MULTILINE)
    return images


def test_images_are_pinned_and_agree_with_profiles_and_the_installed_beam() -> None:
    images = every_image()
    assert all(":" in image and not image.endswith(":latest") for image in images), images
    sdk_images = {image for image in images if "_sdk:" in image}
    assert sdk_images == {profiles.BEAM_SDK_IMAGE}
    python, beam_version = re.fullmatch(r"apache/beam_python(\d+\.\d+)_sdk:(.+)", profiles.BEAM_SDK_IMAGE).groups()
    assert (python, beam_version) == (f"{sys.version_info.major}.{sys.version_info.minor}", beam.__version__)
    assert {image for image in images if "job_server" in image} == {profiles.FLINK_JOB_SERVER_IMAGE}
    assert {image for image in images if image.startswith("flink:")} == {profiles.FLINK_IMAGE}
    assert {image for image in images if image.startswith("apache/kafka:")} == {profiles.KAFKA_IMAGE}
    assert profiles.FLINK_RELEASE.rsplit(".", 1)[0] in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS
    assert f"v{profiles.FLINK_RELEASE.rsplit('.', 1)[0].replace('.', '_')}" == k8s_kind("FlinkDeployment")[0]["spec"]["flinkVersion"]
    plugins = {compose()["x-flink"]["environment"]["ENABLE_BUILT_IN_PLUGINS"]} | {
        variable["value"]
        for variable in k8s_kind("FlinkDeployment")[0]["spec"]["podTemplate"]["spec"]["containers"][0]["env"]
        if variable["name"] == "ENABLE_BUILT_IN_PLUGINS"
    }
    assert plugins == {f"flink-s3-fs-hadoop-{profiles.FLINK_RELEASE}.jar"}


def worker_pool_commands() -> list[list[str]]:
    flink = k8s_kind("FlinkDeployment")[0]["spec"]
    sidecar = flink["taskManager"]["podTemplate"]["spec"]["containers"][0]
    return [services()["beam-worker-pool"]["command"], sidecar["args"]]


def test_the_worker_pool_listens_where_the_portable_profiles_point_flink() -> None:
    for command in worker_pool_commands():
        assert command[:2] == ["-m", "apache_beam.runners.worker.worker_pool_main"]
        assert f"--service_port={profiles.WORKER_POOL_PORT}" in command
    assert services()["beam-worker-pool"]["network_mode"] == "service:taskmanager"
    for name in ("compose", "k8s"):
        assert profiles.PROFILES[name].worker_pool == f"localhost:{profiles.WORKER_POOL_PORT}"


def job_server_args() -> list[list[str]]:
    jobs = [job["spec"]["template"]["spec"]["initContainers"][0]["args"] for job in k8s_kind("Job")]
    return [services()["job-server"]["command"], *jobs]


def test_the_job_servers_listen_where_the_profiles_submit_and_reach_the_flink_master() -> None:
    for args in job_server_args():
        assert flag_value(args, "job-port") == str(profiles.JOB_SERVER_PORT)
        assert flag_value(args, "artifact-port") == str(profiles.ARTIFACT_SERVER_PORT)
    assert profiles.PROFILES["compose"].job_server_host in services()
    assert flag_value(services()["job-server"]["command"], "flink-master") == "jobmanager:8081"
    flink_name = k8s_kind("FlinkDeployment")[0]["metadata"]["name"]
    assert all(flag_value(args, "flink-master") == f"{flink_name}-rest:8081" for args in job_server_args()[1:])


def submit_commands() -> dict[str, list[str]]:
    commands = {name: service["command"] for name, service in services().items() if "runners.profiles" in service.get("command", [])}
    commands |= {job["metadata"]["name"]: job["spec"]["template"]["spec"]["containers"][0]["args"] for job in k8s_kind("Job")}
    return commands


def test_every_manifest_submits_through_its_profile() -> None:
    commands = submit_commands()
    assert len(commands) == 5
    for name, command in commands.items():
        assert command[:2] == ["-m", "runners.profiles"], name
        assert command[2] == ("k8s" if name.startswith("dronecop-") else "compose"), name
        assert command[3] in profiles.PIPELINE_MODULES, name
        assert not any(arg.startswith(("--runner", "--environment", "--parallelism", "--job_endpoint")) for arg in command)


def test_compose_pipelines_reach_kafka_and_the_lake_where_compose_serves_them() -> None:
    kafka = services()["kafka"]["environment"]
    assert "PLAINTEXT://kafka:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    for name, command in submit_commands().items():
        if not name.startswith("dronecop-") and "pipelines.analysis" not in command:
            assert flag_value(command, "bootstrap_servers") == "kafka:9092"
    desk = services()["alert-desk"]
    port = flag_value(desk["command"], "port")
    assert desk["ports"] == [f"127.0.0.1:{port}:{port}"] and f"localhost:{port}/healthz" in " ".join(desk["healthcheck"]["test"])


def test_the_k8s_desk_takes_secrets_from_files_and_probes_its_health_endpoint() -> None:
    from alert_desk.auth import TOKEN_ENV

    deployment = k8s_kind("Deployment")[0]["spec"]["template"]["spec"]
    desk = deployment["containers"][0]
    secret_env = next(variable["value"] for variable in desk["env"] if variable["name"] == "SECRET_ENV")
    assert {pair.split("=")[0] for pair in secret_env.split()} == {
        TOKEN_ENV,
        "PGPASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }  # the photos' bucket
    assert flag_value(desk["args"], "lake") == "$(LAKE)"
    assert all("value" not in variable or variable["name"] == "SECRET_ENV" for variable in desk["env"])
    assert {"path": "/healthz", "port": "http"} == desk["livenessProbe"]["httpGet"] == desk["readinessProbe"]["httpGet"]
    assert desk["ports"][0]["containerPort"] == int(flag_value(desk["args"], "port"))
    assert desk["resources"]["requests"] and desk["resources"]["limits"]


def template_parameters(metadata: str) -> dict[str, dict[str, Any]]:
    return {parameter["name"]: parameter for parameter in json.loads((DATAFLOW / metadata).read_text())["parameters"]}


# The stream template always runs --streaming (launch_stream.py): the switches of the other
# modes would contradict it. --bootstrap_servers is Beam's own flag, which KafkaSourceOptions reads.
FIXED_BY_THE_STREAM_TEMPLATE = {"drain", "follow", "poll_seconds"}
BEAM_FLAGS_THE_STREAM_READS = {"bootstrap_servers"}
# The analysis reads one flag of RunModeOptions, --output, as its report folder.
RUN_MODE_FLAGS_THE_ANALYSIS_READS = {"output"}
# RunModeOptions' help for --output describes the lake; to the analysis it is the report folder.
HELP_THE_TEMPLATE_RESTATES = {("analysis-metadata.json", "output")}


@pytest.mark.parametrize(
    "metadata, actions",
    [
        (
            "stream-metadata.json",
            {
                name: action
                for name, action in option_actions(KafkaSourceOptions, RunModeOptions, DroneStreamOptions).items()
                if name not in FIXED_BY_THE_STREAM_TEMPLATE
            },
        ),
        (
            "analysis-metadata.json",
            {
                **option_actions(AnalysisOptions),
                **{name: action for name, action in option_actions(RunModeOptions).items() if name in RUN_MODE_FLAGS_THE_ANALYSIS_READS},
            },
        ),
    ],
)
def test_flex_template_metadata_lists_exactly_the_options_the_pipeline_defines(metadata: str, actions: dict[str, argparse.Action]) -> None:
    parameters = template_parameters(metadata)
    extra = BEAM_FLAGS_THE_STREAM_READS if metadata.startswith("stream") else set()
    assert set(parameters) == set(actions) | extra
    for name, action in actions.items():
        parameter = parameters[name]
        assert parameter["isOptional"] is not action.required and parameter["label"] and parameter["helpText"]
        if action.help and (metadata, name) not in HELP_THE_TEMPLATE_RESTATES:
            assert parameter["helpText"] == action.help, name
        if action.choices:
            assert parameter["regexes"] == [f"^({'|'.join(action.choices)})$"], name


def test_terraform_pubsub_and_jobs_agree_with_the_pipelines_and_the_dataflow_profile() -> None:
    from pipelines.stream import DEFAULT_GROUP_ID

    names = load_terraform()["locals"][0]
    local_names = {name: unquote(value) for name, value in names.items() if isinstance(value, str)}
    assert (local_names["drone_messages_topic"], local_names["alerts_topic"], local_names["dead_letter_topic"]) == (
        DRONE_MESSAGES,
        DRONE_ALERTS,
        DRONE_DEAD_LETTER,
    )
    assert local_names["stream_subscription"] == DEFAULT_GROUP_ID
    subscription = terraform_resources("google_pubsub_subscription")["stream"]
    assert subscription["dead_letter_policy"][0]["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    dataflow = profiles.PROFILES["dataflow"]
    assert [unquote(value) for value in names["experiments"]] == list(dataflow.experiments)
    assert terraform_variables()["max_workers"]["default"] == dataflow.parallelism
    jobs = next(block["flex_jobs"] for block in load_terraform()["locals"] if "flex_jobs" in block)
    assert set(jobs) == {"stream", "analysis"} and set(terraform_resources("google_dataflow_flex_template_job")) == {"dronecop"}
    for name, job in jobs.items():
        assert set(job["parameters"]) <= set(template_parameters(f"{name}-metadata.json")), name
    parameters = {name: unquote(value) for name, value in jobs["stream"]["parameters"].items()}
    assert (parameters["source"], parameters["alerts_topic"]) == ("pubsub", "${local.alerts_topic}")
    defaults = option_actions(RunModeOptions)
    assert int(parameters["window_minutes"]) == defaults["window_minutes"].default
    assert int(parameters["allowed_lateness_minutes"]) == defaults["allowed_lateness_minutes"].default


# --- The profiles ----------------------------------------------------------------------------


def test_flags_after_the_module_win_over_the_profile() -> None:
    options = PipelineOptions([*profiles.PROFILES["k8s"].flags(), "--parallelism=8"])
    assert options.view_as(FlinkRunnerOptions).parallelism == 8


@pytest.mark.parametrize("argv, says", [([], "usage"), (["moon"], "unknown profile"), (["local", "os"], "not a pipeline")])
def test_profiles_refuse_what_they_cannot_run_in_one_line(argv: list[str], says: str, capsys) -> None:
    assert profiles.main(argv) == profiles.EXIT_USAGE
    error = capsys.readouterr().err
    assert says in error and error.count("\n") == 1


def test_a_profile_runs_the_pipeline_module_with_its_flags(tmp_path: Path, capsys) -> None:
    assert profiles.main(["local", "pipelines.analysis", f"--input={tmp_path}", f"--output={tmp_path / 'report'}"]) == 2
    assert f"nothing to answer: no Parquet data under {tmp_path}" in capsys.readouterr().err


# --- Each profile builds each pipeline's graph, as its main() would -------------------------

# The DirectRunner's preset runs --streaming on Prism, as `make demo` does.
LOCAL_STREAMING_RUNNER = "PrismRunner"
# Dataflow checks its project and temp bucket while the pipeline is built; --dry_run keeps
# Beam from asking GCS whether the bucket keeps deleted files.
DATAFLOW_FLAGS = ["--project=dronecop-city", "--region=us-east1", "--temp_location=gs://dronecop-dataflow/tmp", "--dry_run=True"]


def kafka_graph(job: modes.KafkaJob, options: PipelineOptions) -> beam.Pipeline:
    """A Kafka-fed pipeline's streaming graph, reading every partition of its topic from offset 0.

    ``modes.streaming_reading`` would ask the broker for the committed offsets first; there
    is no broker where these profiles point.
    """
    starts = [PartitionSpan(job.topic, partition, 0) for partition in range(TOPICS_BY_NAME[job.topic].partitions)]
    settings = options.view_as(KafkaSourceOptions).kafka_settings()
    return job.build(options, modes.kafka_stream_reading(settings, modes.group_id(job, options), starts))


def analysis_graph(options: PipelineOptions) -> beam.Pipeline:
    pipeline = beam.Pipeline(options=options)
    analysis.build_pipeline(pipeline, analysis.plan_analysis(options))
    return pipeline


@dataclass(frozen=True)
class SmallLake:
    """A lake as the pipelines lay it out, and what the analysis must count in it."""

    root: Path
    files: dict[str, int]
    rows_read: dict[str, int]
    distinct_rows: dict[str, int]  # drone: the sightings, the rows with a violation code


def parquet_files(folder: Path) -> list[Path]:
    """The data files under ``folder``, leaving out what a writer left half-written in its temp folder."""
    return [path for path in folder.rglob("*.parquet") if lake.TEMP_FOLDER not in path.parts]


@pytest.fixture(scope="module")
def small_lake(tmp_path_factory: pytest.TempPathFactory) -> SmallLake:
    """A week of synthetic NYPD history and ten minutes of drone traffic, each with replayed copies, and the
    drones' maintenance scores."""
    from bench.analysis import synthetic_history, write_history_lake
    from simulator.fleet import FleetSettings, fleet_reports
    from tests.support.analysis_lake import risk_scores, write_drone_lake, write_risk_lake

    root = tmp_path_factory.mktemp("lake")
    summonses = synthetic_history(5_000)
    first_day = pc.min(summonses["issue_date"]).as_py()
    week = summonses.filter(pc.less(summonses["issue_date"], pa.scalar(first_day + timedelta(days=7))))
    write_history_lake(root, week, replay_share=0.2)
    messages = list(itertools.islice(fleet_reports(FleetSettings(drones=5, seed=3, start_ms=1_764_000_000_000, rate=1)), 600))
    write_drone_lake(root, messages)
    write_risk_lake(root, risk_scores(messages))
    files = {dataset: parquet_files(root / dataset) for dataset in (lake.HISTORY, lake.DRONE)}
    sightings = {message.message_id for message in messages if message.violation_code is not None}
    return SmallLake(
        root,
        files={dataset: len(paths) for dataset, paths in files.items()},
        rows_read={dataset: sum(pq.read_metadata(path).num_rows for path in paths) for dataset, paths in files.items()},
        distinct_rows={lake.HISTORY: week.num_rows, lake.DRONE: len(sightings)},
    )


@dataclass(frozen=True)
class Graph:
    """How one pipeline module is started and built, and the top-level steps its graph must hold."""

    module: ModuleType
    mode: list[str]
    build: Callable[[PipelineOptions], beam.Pipeline]
    steps: set[str]  # the source, the composite steps and the sinks


GRAPHS = {
    "pipelines.stream": Graph(
        stream,
        ["--streaming"],
        lambda options: kafka_graph(stream.drone_job(options), options),
        {"ReadKafka", "ValidateMessages", "PublishAlerts", "DeadLetters", "WriteLake", "CommitLandedOffsets"},
    ),
    "pipelines.history": Graph(
        history,
        ["--streaming"],
        lambda options: kafka_graph(history.history_job(options), options),
        {"ReadKafka", "WriteHistory", "DeadLetters", "CommitLandedOffsets"},
    ),
    "pipelines.analysis": Graph(
        analysis,
        [],
        analysis_graph,
        {
            "ReadHistory",
            "ReadDrone",
            "ReadRisk",
            *(f"Question_{name}" for name in QUESTIONS),
            "CodeTable",
            "AllResults",
            "ResultsByKey",
            "ReportJson",
            "WriteReportJson",
        },
    ),
}


def top_level_steps(proto: beam_runner_api_pb2.Pipeline) -> set[str]:
    (root,) = proto.root_transform_ids
    transforms = proto.components.transforms
    return {transforms[step].unique_name for step in transforms[root].subtransforms}


def step_environments(proto: beam_runner_api_pb2.Pipeline) -> set[tuple[str, str]]:
    """``(urn, endpoint)`` of each environment the job's steps run in; the endpoint is an EXTERNAL one's."""
    environments = proto.components.environments
    used = {transform.environment_id for transform in proto.components.transforms.values()} - {""}
    return {(environments[name].urn, external_endpoint(environments[name])) for name in used}


def external_endpoint(environment: beam_runner_api_pb2.Environment) -> str:
    if environment.urn != common_urns.environments.EXTERNAL.urn:
        return ""
    return beam_runner_api_pb2.ExternalPayload.FromString(environment.payload).endpoint.url


def deployment_flags(profile_name: str, streaming: bool, request: pytest.FixtureRequest) -> list[str]:
    """What a deployment adds to its profile: Dataflow's project and bucket; locally, the Prism a stream runs on."""
    if profile_name == "dataflow":
        return DATAFLOW_FLAGS
    if profile_name == "local" and streaming:
        return [f"--prism_location={request.getfixturevalue('prism')}"]
    return []


def test_graphs_cover_every_module_a_profile_may_start() -> None:
    assert set(GRAPHS) == set(profiles.PIPELINE_MODULES)


@pytest.mark.parametrize("module_name", list(GRAPHS))
@pytest.mark.parametrize("profile_name", list(profiles.PROFILES))
def test_each_profile_builds_each_pipeline_graph_without_submitting(
    profile_name: str, module_name: str, small_lake: SmallLake, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The profile's flags, parsed by the pipeline's own ``parse_options`` (every flag known, the
    runner's preset applied), build its whole graph for the profile's runner; nothing is submitted
    (the job servers and Dataflow are not here)."""
    profile, graph = profiles.PROFILES[profile_name], GRAPHS[module_name]
    streaming = "--streaming" in graph.mode
    storage = ["--output=gs://dronecop-lake/lake"] if streaming else [f"--input={small_lake.root}", f"--output={tmp_path / 'report'}"]
    deployment = deployment_flags(profile_name, streaming, request)
    options = graph.module.parse_options([*profile.flags(), *deployment, *graph.mode, *storage])

    pipeline = graph.build(options)
    proto = pipeline.to_runner_api(default_environment=pipeline.runner.default_environment(pipeline.options))
    assert top_level_steps(proto) == graph.steps

    runs = pipeline.options
    expected_runner = LOCAL_STREAMING_RUNNER if profile_name == "local" and streaming else profile.runner
    assert runner_name(runs) == expected_runner
    assert set(runs.view_as(DebugOptions).experiments or []) >= set(profile.experiments)
    if profile.worker_pool:
        assert step_environments(proto) == {(common_urns.environments.EXTERNAL.urn, profile.worker_pool)}
        portable = runs.view_as(PortableOptions)
        assert portable.job_endpoint == f"{profile.job_server_host}:{profiles.JOB_SERVER_PORT}"
        assert portable.artifact_endpoint == f"{profile.job_server_host}:{profiles.ARTIFACT_SERVER_PORT}"
        assert runs.view_as(FlinkRunnerOptions).parallelism == profile.parallelism
        assert runs.view_as(FlinkPresetOptions).checkpointing_interval == profile.checkpointing_interval_ms
        if streaming:
            assert portable.job_server_timeout == ENDLESS_JOB_WATCH_S
    if profile.runner == "DataflowRunner":
        assert runs.view_as(WorkerOptions).max_num_workers == profile.parallelism
        assert runs.view_as(SetupOptions).setup_file == str(REPO_ROOT / "setup.py")


# --- The portable submission path: an EXTERNAL worker pool, here against Prism ----------------


@contextlib.contextmanager
def worker_pool(port: int, log: Path) -> Iterator[None]:
    """Beam's SDK worker pool on ``port``, started as the compose file and the k8s sidecar start it.

    Without ``--container_executable`` (the SDK image's boot program, absent here) the pool
    starts each SDK worker as ``python -c …``: whichever ``python`` comes first on PATH, not
    its own interpreter. Here that is a Python without Beam, whose worker dies on import
    while Prism waits a minute for it ("didn't get control connection … after 1m0s") and
    fails the job; so this venv's ``bin`` goes first. The pool and its workers are one
    process group, killed at the end.
    """
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    with log.open("wb") as output:
        pool = subprocess.Popen(
            [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
            cwd=REPO_ROOT,
            env={**os.environ, "PATH": path, "PYTHONPATH": str(REPO_ROOT)},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(port, pool, "the SDK worker pool")
        yield
    finally:
        os.killpg(pool.pid, signal.SIGKILL)
        pool.wait()


def run_to_completion(command: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """``command`` in a process group of its own (a runner's job server is its child), all of it killed if it overruns."""
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{' '.join(command[:3])} did not finish within {timeout_s:.0f} s:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_the_analysis_runs_on_prism_in_an_external_worker_pool(prism: Path, small_lake: SmallLake, tmp_path: Path) -> None:
    """The portable path of the compose and k8s profiles: the runner hands every Python step to
    a worker pool at ``--environment_config``. Against Flink there; against Prism, which serves
    the same portable Job API, here."""
    port = free_port()
    report_folder = tmp_path / "report"
    pool_log = tmp_path / "worker-pool.log"
    with worker_pool(port, pool_log):
        run = run_to_completion(
            [
                sys.executable,
                "-m",
                "pipelines.analysis",
                "--runner=PrismRunner",
                f"--prism_location={prism}",
                "--environment_type=EXTERNAL",
                f"--environment_config=localhost:{port}",
                f"--input={small_lake.root}",
                f"--output={report_folder}",
                "--shuffle_buckets=2",
            ],
            timeout_s=300,
        )
    assert run.returncode == 0, run.stderr[-3000:] + pool_log.read_text()[-2000:]
    assert f"report in {report_folder} (PrismRunner" in run.stdout
    report = json.loads((report_folder / "report.json").read_text())
    assert report["not_answered"] == {}
    for dataset in (lake.HISTORY, lake.DRONE):
        counted = {
            "files": small_lake.files[dataset],
            "rows_read": small_lake.rows_read[dataset],
            "distinct_rows": small_lake.distinct_rows[dataset],
        }
        assert report["inputs"][dataset] == counted, dataset
    assert "Starting worker with command" in pool_log.read_text()  # the pool, not Prism's loopback, ran the steps


def test_the_stream_and_history_drains_run_on_prism_in_an_external_worker_pool(
    prism: Path, broker: KafkaSettings, topic_name: str, tmp_path: Path
) -> None:
    """The two Kafka jobs, through the same portable path: every Python step in the worker pool,
    reading the embedded broker, writing the lake, committing; their streaming form differs only
    in the read, which ``tests/test_stream_prism.py`` runs."""
    records, valid, _ = traffic(400)
    produce_all(broker, topic_name, records)
    history_topic = f"{topic_name}-history"
    produce_all(broker, history_topic, loader_batches(6))
    lake_root = tmp_path / "lake"
    port = free_port()
    pool_log = tmp_path / "worker-pool.log"
    portable = [
        "--runner=PrismRunner",
        f"--prism_location={prism}",
        "--environment_type=EXTERNAL",
        f"--environment_config=localhost:{port}",
    ]
    names = {"messages": topic_name, "alerts": f"{topic_name}-alerts", "dead": f"{topic_name}-dead"}
    with worker_pool(port, pool_log):
        drone = run_to_completion([sys.executable, "-m", "pipelines.stream", *stream_args(broker, names, lake_root), *portable], 300)
        nypd = run_to_completion(
            [sys.executable, "-m", "pipelines.history", *history_args(broker, history_topic, lake_root), *portable], 300
        )
    for run in (drone, nypd):
        assert run.returncode == 0, run.stderr[-3000:] + pool_log.read_text()[-2000:]
    assert sorted(lake_message_ids(lake_root)) == sorted(message.message_id for message in valid)
    needing_humans = {message.message_id for message in valid if message.needs_human}
    assert {json.loads(record.value)["message"]["message_id"] for record in read_all(broker, names["alerts"])} == needing_humans
    assert sorted(lake_history(lake_root).column("summons_number").to_pylist()) == list(range(10_000, 10_300))
    assert pool_log.read_text().count("Starting worker with command") >= 2  # the pool, not Prism's loopback, ran the steps
