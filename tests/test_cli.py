"""The pipelines' command line, as a user meets it: ``--help`` that lists every flag, unknown flags refused.

Each pipeline runs as its own process (``python -m pipelines.X``), from a folder of its own
so that a report or a lake it should not write would show.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.analysis import SHARED_FLAGS, AnalysisOptions
from pipelines.cli import parse_pipeline_args
from pipelines.options import KAFKA_PIPELINE_SHARED_FLAGS, DroneStreamOptions, KafkaSourceOptions, RunModeOptions
from pipelines.train_maintenance import TrainMaintenanceOptions
from runners.presets import FlinkPresetOptions

REPO_ROOT = Path(__file__).resolve().parents[1]
WIDE = "400"  # columns: argparse wraps help to the terminal's width, hyphenated words too
# Each pipeline whose main() parses with parse_pipeline_args, with its DroneCop option groups.
PIPELINES: dict[str, list[type[PipelineOptions]]] = {
    "analysis": [AnalysisOptions],
    "stream": [KafkaSourceOptions, RunModeOptions, DroneStreamOptions, FlinkPresetOptions],
    "history": [KafkaSourceOptions, RunModeOptions, FlinkPresetOptions],
    "train_maintenance": [TrainMaintenanceOptions],
}


def run_pipeline(name: str, *flags: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"pipelines.{name}", *flags],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": WIDE},
        timeout=120,
    )


def defined_actions(option_class: type[PipelineOptions]) -> list[argparse.Action]:
    parser = argparse.ArgumentParser(add_help=False)
    option_class._add_argparse_args(parser)
    return parser._actions


def words(text: str) -> str:
    """Text as one line of single spaces, as help columns align it."""
    return " ".join(text.split())


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_help_lists_every_flag_with_its_help_default_and_the_exit_codes(name: str, tmp_path: Path) -> None:
    result = run_pipeline(name, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = words(result.stdout)
    for option_class in PIPELINES[name]:
        assert f"{option_class.__name__}: {words(option_class.__doc__.splitlines()[0])}" in shown
        for action in defined_actions(option_class):
            assert action.help, f"{action.option_strings[0]} has no help text"
            assert f"{action.option_strings[0]} " in shown and words(action.help) in shown
            if action.default not in (None, False) and "(default" not in action.help:
                assert f"(default: {action.default})" in shown, action.option_strings[0]
    assert "exit codes: 0 " in shown and " 2 " in shown
    assert f"python -m pipelines.{name} --help_beam lists them" in shown
    assert result.stderr == "" and not list(tmp_path.iterdir())


def test_the_analysis_help_says_what_its_shared_flags_mean_here(tmp_path: Path) -> None:
    shown = words(run_pipeline("analysis", "--help", cwd=tmp_path).stdout)
    assert f"--output OUTPUT {SHARED_FLAGS['--output']}" in shown
    assert "Lake root" not in shown.split("--output OUTPUT", 1)[1].split("--runner", 1)[0], "not the stream's meaning"
    assert "--runner RUNNER Pipeline runner used to execute the workflow" in shown, "Beam's own help for its flag"


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_help_beam_lists_beams_own_flags(name: str, tmp_path: Path) -> None:
    result = run_pipeline(name, "--help_beam", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--direct_num_workers" in result.stdout and "--flink_master" in result.stdout and "--project" in result.stdout
    assert "--window_minutes" not in result.stdout and "--questions" not in result.stdout, "Beam's flags only"


def test_a_mistyped_flag_is_one_line_with_the_closest_flag_and_nothing_is_written(tmp_path: Path) -> None:
    result = run_pipeline("analysis", "--input", "./lake", "--outptu", "./other", "--questions", "weekday_weekend", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "analysis: unknown flag --outptu (did you mean --output?)\n"
    assert result.stdout == "" and not list(tmp_path.iterdir()), "no report written"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--outptu=./other"], "analysis: unknown flag --outptu (did you mean --output?)"),
        (["--direct_num_worker=2"], "analysis: unknown flag --direct_num_worker (did you mean --direct_num_workers?)"),
        (["--zzzz"], "analysis: unknown flag --zzzz (see --help)"),
        (["stray"], "analysis: unexpected argument 'stray' (every value follows its flag: --flag=value)"),
        (["--shuffle_buckets=many"], "analysis: argument --shuffle_buckets: invalid int value: 'many'"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(flags: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_pipeline_args(flags, "analysis", "", [AnalysisOptions], SHARED_FLAGS)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == message + "\n"


def test_every_pipelines_flags_parse_in_one_process_each_flag_with_one_owner() -> None:
    """Beam gathers the flags of every options class imported; two owning one flag would break every parse."""
    from pipelines import analysis, stream, train_maintenance

    assert train_maintenance.parse_options(["--input=fleet.jsonl"]).view_as(AnalysisOptions).input == "fleet.jsonl"
    assert analysis.parse_options(["--input=/lake"]).view_as(AnalysisOptions).input == "/lake"
    assert stream.parse_options(["--maintenance_threshold=0.7"]).view_as(DroneStreamOptions).maintenance_threshold == 0.7


def test_beams_and_our_flags_are_passed_on_to_beam() -> None:
    flags = ["--input=/lake", "--direct_num_workers=3", "--runner", "DirectRunner", "--follow", "--window_minutes=7"]
    options = parse_pipeline_args(flags, "stream", "", [KafkaSourceOptions, RunModeOptions, DroneStreamOptions])
    assert options.view_as(AnalysisOptions).input == "/lake" and options.view_as(RunModeOptions).window_minutes == 7
    assert options.get_all_options()["direct_num_workers"] == 3 and options.view_as(RunModeOptions).follow


def test_the_stream_pipelines_groups_and_shared_flags_have_help(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", WIDE)
    with pytest.raises(SystemExit) as stopped:
        parse_pipeline_args(["--help"], "stream", "The drone stream.", [KafkaSourceOptions, RunModeOptions, DroneStreamOptions])
    assert stopped.value.code == 0
    shown = words(capsys.readouterr().out)
    for option_class in (KafkaSourceOptions, RunModeOptions, DroneStreamOptions):
        assert all(action.help and words(action.help) in shown for action in defined_actions(option_class))
    assert words(KAFKA_PIPELINE_SHARED_FLAGS["--bootstrap_servers"]) in shown
    assert "130 interrupted: --streaming stopped by Ctrl-C" in shown
