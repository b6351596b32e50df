"""Named deployment profiles: the pipeline options each place DroneCop runs in needs.

``local`` is this machine's DirectRunner. ``compose`` and ``k8s`` submit through Beam's Flink
job server to a Flink session cluster whose TaskManagers run our Python code in a worker
pool beside them (``--environment_type=EXTERNAL``); ``dataflow`` is Google Cloud. The
manifests under ``deploy/`` and the README's commands start every pipeline through here::

    python -m runners.profiles compose pipelines.stream --streaming --output=s3://dronecop/lake
    python -m runners.profiles k8s     # print the profile's flags

Flags given after the module win over the profile's: Beam keeps the last value of a flag.
The images the manifests pin are named here too, so a test can hold both sides together.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

import apache_beam as beam

from runners.brokers import KAFKA_VERSION
from runners.presets import FLINK_VERSION

PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
FLINK_RELEASE = f"{FLINK_VERSION}.3"

BEAM_SDK_IMAGE = f"apache/beam_python{PYTHON_VERSION}_sdk:{beam.__version__}"
FLINK_JOB_SERVER_IMAGE = f"apache/beam_flink{FLINK_VERSION}_job_server:{beam.__version__}"
FLINK_IMAGE = f"flink:{FLINK_RELEASE}-scala_2.12-java17"
KAFKA_IMAGE = f"apache/kafka:{KAFKA_VERSION}"

WORKER_POOL_PORT = 50000  # the SDK worker pool beside each TaskManager
JOB_SERVER_PORT = 8099
ARTIFACT_SERVER_PORT = 8098

# The modules a profile may start: each has ``main(argv) -> exit code``.
PIPELINE_MODULES = ("pipelines.stream", "pipelines.history", "pipelines.analysis")
EXIT_USAGE = 2


@dataclass(frozen=True)
class Profile:
    """Where a pipeline runs, as the Beam options that say so."""

    name: str
    runner: str
    job_server_host: str | None = None  # Beam's Flink job server, for the portable profiles
    worker_pool: str | None = None  # host:port of the EXTERNAL SDK worker pool, as a TaskManager sees it
    parallelism: int | None = None  # Flink subtasks per operator; Dataflow's most workers
    checkpointing_interval_ms: int | None = None
    experiments: tuple[str, ...] = ()

    def flags(self) -> list[str]:
        """The command-line flags of this profile, runner first."""
        flags = [f"--runner={self.runner}"]
        if self.job_server_host:
            flags += [
                f"--job_endpoint={self.job_server_host}:{JOB_SERVER_PORT}",
                f"--artifact_endpoint={self.job_server_host}:{ARTIFACT_SERVER_PORT}",
            ]
        if self.worker_pool:
            flags += ["--environment_type=EXTERNAL", f"--environment_config={self.worker_pool}"]
        if self.parallelism is not None:
            flags.append(f"--{'max_num_workers' if self.runner == 'DataflowRunner' else 'parallelism'}={self.parallelism}")
        if self.checkpointing_interval_ms is not None:
            flags.append(f"--checkpointing_interval={self.checkpointing_interval_ms}")
        flags += [f"--experiments={experiment}" for experiment in self.experiments]
        return flags


# Flink reaches the worker pool on localhost: its SDK harness dials back to endpoints the
# TaskManager publishes as localhost, so the pool shares the TaskManager's network (a
# compose `network_mode: service:…`, a Kubernetes sidecar). One Flink subtask per Kafka
# partition of drone-messages on k8s (2 TaskManagers × 2 slots); half of them on one machine.
PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in (
        Profile("local", "DirectRunner"),
        Profile(
            "compose",
            "PortableRunner",
            job_server_host="job-server",
            worker_pool=f"localhost:{WORKER_POOL_PORT}",
            parallelism=2,
            checkpointing_interval_ms=10_000,
        ),
        Profile(
            "k8s",
            "PortableRunner",
            job_server_host="localhost",
            worker_pool=f"localhost:{WORKER_POOL_PORT}",
            parallelism=4,
            checkpointing_interval_ms=30_000,
        ),
        # Runner v2 runs our splittable Kafka DoFn; named so a change of Dataflow's default cannot change the job.
        Profile("dataflow", "DataflowRunner", parallelism=8, experiments=("use_runner_v2",)),
    )
}


def profile_named(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}") from None


def main(argv: list[str] | None = None) -> int:
    """``PROFILE`` prints its flags; ``PROFILE MODULE [FLAGS…]`` runs the pipeline module with them."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.stderr.write(f"usage: python -m runners.profiles {{{','.join(PROFILES)}}} [MODULE [FLAGS…]]\n")
        return EXIT_USAGE
    try:
        profile = profile_named(args[0])
    except ValueError as error:
        sys.stderr.write(f"profiles: {error}\n")
        return EXIT_USAGE
    if len(args) == 1:
        print(" ".join(profile.flags()))
        return 0
    module_name, flags = args[1], args[2:]
    if module_name not in PIPELINE_MODULES:
        sys.stderr.write(f"profiles: {module_name!r} is not a pipeline; choose from {', '.join(PIPELINE_MODULES)}\n")
        return EXIT_USAGE
    return importlib.import_module(module_name).main([*profile.flags(), *flags])


if __name__ == "__main__":
    sys.exit(main())
