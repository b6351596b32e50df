"""Runner presets: the options each runner needs, so a pipeline's flags stay about the job.

DirectRunner on one machine, FlinkRunner on a cluster (or an embedded mini-cluster with
``--flink_master=[local]``), DataflowRunner on Google Cloud. A preset only fills in what
the user left unset; any flag given on the command line wins.
"""

from __future__ import annotations

import os
from pathlib import Path

from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def runner_name(options: PipelineOptions) -> str:
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    return runner if isinstance(runner, str) else type(runner).__name__


def apply_local_defaults(options: PipelineOptions) -> PipelineOptions:
    """DirectRunner: run bundles on every core with threads (fast for batch-heavy stages)."""
    if runner_name(options) in ("DirectRunner", "SwitchingDirectRunner"):
        direct = options.view_as(DirectOptions)
        if direct.direct_running_mode == "in_memory":
            direct.direct_running_mode = "multi_threading"
        if direct.direct_num_workers in (None, 1):
            direct.direct_num_workers = os.cpu_count() or 1
    elif runner_name(options) in ("FlinkRunner", "DataflowRunner", "PortableRunner"):
        setup = options.view_as(SetupOptions)
        if not setup.setup_file:
            setup.setup_file = str(REPO_ROOT / "setup.py")
    return options
