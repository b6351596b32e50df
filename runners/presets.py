"""Runner presets: the options each runner needs, so a pipeline's flags stay about the job.

DirectRunner on one machine — which for ``--streaming`` means Prism, Beam's own streaming
runner, as the DirectRunner itself would choose — FlinkRunner on a cluster (or an
embedded mini-cluster with ``--flink_master=[local]``), DataflowRunner on Google Cloud,
PortableRunner against any job service. A preset only fills in what the user left unset:
a flag given on the command line always wins.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Collection, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    FlinkRunnerOptions,
    PipelineOptions,
    PortableOptions,
    PrismRunnerOptions,
    SetupOptions,
    StandardOptions,
)
from apache_beam.runners.runner import PipelineRunner

from runners.maven import resolve_jar
from runners.prism import prism_binary

REPO_ROOT = Path(__file__).resolve().parents[1]
FLINK_VERSION = "1.19"
# Beam's portable client watches a job through gRPC streams whose deadline is
# --job_server_timeout (300 s by default): a streaming job it submitted fails after five
# minutes with DEADLINE_EXCEEDED. An endless job is watched for a year instead.
ENDLESS_JOB_WATCH_S = 365 * 24 * 3600


class FlinkPresetOptions(PipelineOptions):
    """Flink settings our preset exposes beyond Beam's own FlinkRunnerOptions."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--checkpointing_interval",
            type=int,
            default=10_000,
            help="Flink checkpoint interval in ms: how often offsets are committed in streaming mode.",
        )


def runner_name(options: PipelineOptions) -> str:
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    return (runner if isinstance(runner, str) else type(runner).__name__).rsplit(".", 1)[-1]


def flink_job_server_coordinate(flink_version: str = FLINK_VERSION) -> str:
    return f"org.apache.beam:beam-runners-flink-{flink_version}-job-server:{beam.__version__}"


def local_options(argv: Sequence[str], shuffles: bool = False) -> PipelineOptions:
    """``PipelineOptions(argv)``, with the preset of whichever runner they name filled in.

    Only the command line can say whether a flag was given (a default value may be given
    too), so presets are applied to ``argv``, not to options already parsed.
    ``shuffles``: the pipeline groups by key (the analysis), which changes the local preset.
    """
    options = PipelineOptions(list(argv))
    given = given_flags(argv)
    if runner_name(options) == "DirectRunner" and streams_on_prism(options):
        options.view_as(StandardOptions).runner = "PrismRunner"
    if runner_name(options) == "DirectRunner":
        return apply_direct_preset(options, given, shuffles)
    if runner_name(options) in ("PrismRunner", "FlinkRunner", "PortableRunner"):
        watch_endless_jobs_for_long(options, given)
    preset = {
        "PrismRunner": apply_prism_preset,
        "FlinkRunner": apply_flink_preset,
        "DataflowRunner": apply_dataflow_preset,
        "PortableRunner": apply_portable_preset,
    }.get(runner_name(options))
    return preset(options) if preset else options


def given_flags(argv: Sequence[str]) -> frozenset[str]:
    """The names of the flags on a command line: ``--a=1 --b 2 v`` gives ``{"a", "b"}``."""
    return frozenset(argument[2:].split("=", 1)[0] for argument in argv if argument.startswith("--"))


def apply_direct_preset(options: PipelineOptions, given: Collection[str], shuffles: bool = False) -> PipelineOptions:
    """Threads on every core for the drains; one worker for pipelines that shuffle.

    The drains move large Arrow batches without a shuffle, so threads suffice and a
    routed-vs-written count guards every run. Beam 2.77's ``multi_threading`` mode loses
    (or crashes on) grouped elements now and then when two workers feed one
    ``GroupByKey``, Beam's own bug (``docs/repro/beam_multi_threading_groupbykey_loss.py``
    shows it with no DroneCop code), so a shuffling pipeline runs
    ``in_memory`` on one worker — where Arrow's own threads still use every core, and
    which measured faster here than ``multi_processing``.
    """
    direct = options.view_as(DirectOptions)
    if "direct_running_mode" not in given:
        direct.direct_running_mode = "in_memory" if shuffles else "multi_threading"
    if "direct_num_workers" not in given:
        direct.direct_num_workers = 1 if direct.direct_running_mode == "in_memory" else os.cpu_count() or 1
    return options


def batch_runner(options: PipelineOptions) -> PipelineRunner | None:
    """The runner a bounded pipeline of ours runs on: Beam's FnApiRunner where the options name the DirectRunner.

    For a batch pipeline the DirectRunner first tries Prism (Beam's download of it, or a
    copy in Beam's cache) and falls back to the FnApiRunner; a drain runs a pipeline per
    slice, and should not run on Prism one day and on the FnApiRunner the next. The
    FnApiRunner is given the options as the DirectRunner gives them, so its workers see
    them too. None: the runner the options name.
    """
    if runner_name(options) != "DirectRunner" or options.view_as(StandardOptions).streaming:
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=provision)


def streams_on_prism(options: PipelineOptions) -> bool:
    """A local ``--streaming`` run goes to Prism, except Beam's Pub/Sub read, which Prism refuses
    (``beam:transform:pubsub_read:v1``) and the DirectRunner's own streaming mode runs."""
    return bool(options.view_as(StandardOptions).streaming) and options.get_all_options().get("source") != "pubsub"


def watch_endless_jobs_for_long(options: PipelineOptions, given: Collection[str]) -> None:
    """A streaming job on a portable runner is watched for :data:`ENDLESS_JOB_WATCH_S`, unless told otherwise."""
    if options.view_as(StandardOptions).streaming and "job_server_timeout" not in given:
        options.view_as(PortableOptions).job_server_timeout = ENDLESS_JOB_WATCH_S


def apply_prism_preset(options: PipelineOptions) -> PipelineOptions:
    """Prism built from the Go module proxy (never the SDK's download from the web)."""
    prism = options.view_as(PrismRunnerOptions)
    if not prism.prism_location:
        prism.prism_location = str(prism_binary())
    return options


def apply_flink_preset(options: PipelineOptions) -> PipelineOptions:
    """An embedded mini-cluster by default, Python workers in LOOPBACK, the job server jar from Maven."""
    flink = options.view_as(FlinkRunnerOptions)
    portable = options.view_as(PortableOptions)
    if flink.flink_master == "[auto]":
        flink.flink_master = "[local]"
    if flink.parallelism == -1:
        flink.parallelism = os.cpu_count() or 1
    if portable.environment_type is None:
        portable.environment_type = "LOOPBACK" if flink.flink_master == "[local]" else "EXTERNAL"
    if not flink.flink_job_server_jar:
        flink.flink_job_server_jar = str(resolve_jar(flink_job_server_coordinate()))
    _ship_our_packages(options)
    return options


def apply_dataflow_preset(options: PipelineOptions) -> PipelineOptions:
    """Dataflow: our packages shipped to the workers with setup.py (Streaming Engine is Beam's default)."""
    _ship_our_packages(options)
    return options


def apply_portable_preset(options: PipelineOptions) -> PipelineOptions:
    portable = options.view_as(PortableOptions)
    if portable.environment_type is None:
        portable.environment_type = "LOOPBACK"
    return options


def _ship_our_packages(options: PipelineOptions) -> None:
    setup = options.view_as(SetupOptions)
    if not setup.setup_file:
        setup.setup_file = str(REPO_ROOT / "setup.py")
