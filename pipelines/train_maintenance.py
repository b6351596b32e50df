"""Train the drones' failure model: the lake's (or a simulator file's) health → features → a classifier.

``python -m pipelines.train_maintenance --input lake --output models/maintenance.joblib``

A Beam batch pipeline. Each drone's health messages are gathered, cut into lives at its faults and
turned into rows every ``--step_minutes``: the features of the ``--feature_window_minutes`` before
(trends and rates, ``transforms/maintenance/features.py``) and whether the drone failed within the
next ``--horizon_minutes``. One last step fits a scikit-learn classifier on the earlier part of the
time range and measures it on the later ``--test_share`` (precision, recall, ROC AUC), beside the
baseline of a motor-temperature threshold. It writes the report (``<output minus .joblib>.report.json``)
always, and the model (the classifier with its features, settings, ranges and metrics) only when it
beats the baseline. ``--input`` is a lake root (its ``drone/`` dataset) or a ``.jsonl`` file the
simulator wrote with ``--out``.
"""

from __future__ import annotations

import io
import json
import sys
from typing import Any, Iterable, Iterator

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.analysis import AnalysisOptions
from pipelines.cli import one_line, parse_pipeline_args
from pipelines.options import RunModeOptions
from transforms import lake
from transforms.analysis import reading
from transforms.contract import DroneMessage, parse_message
from transforms.maintenance.features import (
    DEFAULT_HORIZON_MINUTES,
    DEFAULT_STEP_MINUTES,
    DEFAULT_WINDOW_MINUTES,
    MINUTE_MS,
    Example,
    HealthSample,
    examples,
    sample_of,
)
from transforms.maintenance.training import (
    DEFAULT_RISK_THRESHOLD,
    DEFAULT_TEST_SHARE,
    Settings,
    TrainingError,
    model_document,
    train_and_judge,
)
from transforms.object_store import prepare_for

PIPELINE_NAME = "train_maintenance"
DEFAULT_MODEL = "models/maintenance.joblib"
EXIT_REFUSED, EXIT_USAGE = 1, 2
EXIT_CODES = {
    0: "model saved: it beats the baseline",
    EXIT_REFUSED: "not saved: the model does not beat the baseline (the report says by how much), or the run failed",
    EXIT_USAGE: "bad flags, no input, or data that cannot train a model (too short, too few failures)",
}
# Flags other groups own, as this pipeline reads them: one flag, one owner, whichever pipelines a process imports.
SHARED_FLAGS = {
    "--input": "Lake root (local, gs://, s3://) or a simulator .jsonl file (default: ./lake).",
    "--output": f"Where the model goes (default: {DEFAULT_MODEL}); its report goes beside it.",
    "--runner": None,
}
HEALTH_COLUMNS = ["message_id", "drone_id", "timestamp", "battery_pct", "motor_temp_c", "vibration_g", "flight_hours", "altitude_m", "kind"]
INVALID = "invalid"


class TrainMaintenanceOptions(PipelineOptions):
    """How rows are made and the model measured. ``--input`` (the analysis's) and ``--output`` are shared flags."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--feature_window_minutes",
            type=int,
            default=DEFAULT_WINDOW_MINUTES,
            help="The sliding window each row's trends are computed over.",
        )
        parser.add_argument(
            "--step_minutes", type=int, default=DEFAULT_STEP_MINUTES, help="A row every this many minutes of each drone's life."
        )
        parser.add_argument(
            "--horizon_minutes",
            type=int,
            default=DEFAULT_HORIZON_MINUTES,
            help="A row is a failure when the drone faults within this many minutes after it.",
        )
        parser.add_argument(
            "--test_share",
            type=float,
            default=DEFAULT_TEST_SHARE,
            help="The later share of the time range the model is measured on, never trained on.",
        )
        parser.add_argument(
            "--risk_threshold", type=float, default=DEFAULT_RISK_THRESHOLD, help="The risk at which precision and recall are measured."
        )


def model_path(options: PipelineOptions) -> str:
    """Where the model goes: ``--output``, which :func:`parse_options` defaults to :data:`DEFAULT_MODEL`."""
    return options.view_as(RunModeOptions).output


def report_path(model: str) -> str:
    return model.removesuffix(".joblib") + ".report.json"


def settings_of(options: TrainMaintenanceOptions) -> Settings:
    values = (options.feature_window_minutes, options.step_minutes, options.horizon_minutes)
    if min(values) < 1:
        raise TrainingError("--feature_window_minutes, --step_minutes and --horizon_minutes must be at least 1")
    if not 0 < options.test_share < 1 or not 0 < options.risk_threshold < 1:
        raise TrainingError("--test_share and --risk_threshold must be between 0 and 1")
    return Settings(*values, options.test_share, options.risk_threshold)


def samples_of_file(path: str) -> Iterator[tuple[str, HealthSample]]:
    """One lake drone file's rows as ``(drone id, sample)``; a file written before wear was recorded reads as NaN."""
    schema = pa.schema([lake.DRONE_SCHEMA.field(name) for name in HEALTH_COLUMNS])
    table = lake.pin_types(lake.read_parquet(path, HEALTH_COLUMNS), schema)
    for row in table.to_pylist():
        message = DroneMessage(
            row["message_id"],
            row["drone_id"],
            row["timestamp"],
            0.0,
            0.0,
            battery_pct=row["battery_pct"],
            altitude_m=row["altitude_m"],
            motor_temp_c=row["motor_temp_c"],
            vibration_g=row["vibration_g"],
            flight_hours=row["flight_hours"],
            kind=row["kind"],
        )
        yield message.drone_id, sample_of(message)


def samples_of_line(line: str) -> Iterator[Any]:
    """A simulator line as ``(drone id, sample)``; a line the contract refuses goes to the ``invalid`` count."""
    message = parse_message(line.encode())
    if isinstance(message, DroneMessage):
        yield message.drone_id, sample_of(message)
    else:
        yield beam.pvalue.TaggedOutput(INVALID, message.reason)


class ReadHealth(beam.PTransform):
    """``(drone id, HealthSample)`` from a lake root's drone files or a simulator JSON Lines file; the file's
    refused lines as a second output, ``invalid``."""

    def __init__(self, source: str):
        super().__init__()
        self._source = source

    def expand(self, pipeline: beam.Pipeline) -> beam.pvalue.DoOutputsTuple:
        if self._source.endswith(".jsonl"):
            lines = pipeline | "ReadLines" >> beam.io.ReadFromText(self._source)
            return lines | "ParseLines" >> beam.FlatMap(samples_of_line).with_outputs(INVALID, main="samples")
        files = reading.data_files(self._source, reading.DRONE)
        return (
            pipeline
            | "DroneFiles" >> beam.Create(files)
            | "ReadFiles" >> beam.FlatMap(samples_of_file).with_outputs(INVALID, main="samples")
        )


def drone_examples(grouped: tuple[str, Iterable[HealthSample]], data_end_ms: int, settings: Settings) -> Iterator[Example]:
    """One drone's labelled rows, each message counted once however often the lake holds it."""
    drone_id, samples = grouped
    unique = {sample.message_id: sample for sample in samples}.values()
    return examples(
        drone_id,
        unique,
        data_end_ms,
        settings.window_minutes * MINUTE_MS,
        settings.step_minutes * MINUTE_MS,
        settings.horizon_minutes * MINUTE_MS,
    )


class BuildExamples(beam.PTransform):
    """``(drone id, sample)`` → labelled feature rows, per drone over sliding windows of its lives."""

    def __init__(self, settings: Settings):
        super().__init__()
        self._settings = settings

    def expand(self, samples: beam.PCollection) -> beam.PCollection:
        data_end = (
            samples
            | "EventTimes" >> beam.Map(lambda keyed: keyed[1].at_ms)
            | "DataEnd" >> beam.CombineGlobally(lambda times: max(times, default=0))
        )
        return (
            samples
            | "ByDrone" >> beam.GroupByKey()
            | "Rows" >> beam.FlatMap(drone_examples, beam.pvalue.AsSingleton(data_end), self._settings)
        )


def outcome(rows: list[Example], invalid: int, settings: Settings, model_file: str) -> dict[str, Any]:
    """Fit, judge, and write the model when it beats the baseline; the report, with the path or why not."""
    try:
        report, classifier = train_and_judge(rows, settings)
    except TrainingError as error:
        return {"error": str(error), "invalid_lines": invalid}
    report["invalid_lines"] = invalid
    if report["refused"] is None:
        import joblib

        buffer = io.BytesIO()
        joblib.dump(model_document(report, classifier), buffer)
        write_atomically(model_file, buffer.getvalue())
        report["model"] = model_file
    return report


def write_atomically(path: str, payload: bytes) -> None:
    """Written beside, then renamed: a stream that loads the model never reads half of one."""
    prepare_for(path)
    if lake.is_local(path):
        import os

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = path + ".partial"
    with FileSystems.create(partial) as handle:
        handle.write(payload)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([partial], [path])


def build_pipeline(pipeline: beam.Pipeline, source: str, settings: Settings, model_file: str) -> None:
    """ReadHealth → BuildExamples → one list → TrainAndJudge (writes the model if it beats the baseline) → report."""
    health = pipeline | "ReadHealth" >> ReadHealth(source)
    invalid = health[INVALID] | "CountInvalid" >> beam.combiners.Count.Globally()
    (
        health.samples
        | "BuildExamples" >> BuildExamples(settings)
        | "AllRows" >> beam.combiners.ToList()
        | "TrainAndJudge" >> beam.Map(outcome, beam.pvalue.AsSingleton(invalid), settings, model_file)
        | "WriteReport" >> beam.Map(lambda report: write_atomically(report_path(model_file), json.dumps(report, indent=2).encode() + b"\n"))
    )


def parse_options(argv: list[str]) -> PipelineOptions:
    """The flags as this pipeline reads them: each one known or refused, then the runner's preset (one that shuffles).

    Without ``--output`` the model goes to :data:`DEFAULT_MODEL`.
    """
    return parse_pipeline_args(
        argv, PIPELINE_NAME, __doc__, [TrainMaintenanceOptions], SHARED_FLAGS, EXIT_CODES, shuffles=True, output_default=DEFAULT_MODEL
    )


def summary(report: dict[str, Any]) -> str:
    model, baseline = report["metrics"], report["baseline"]
    return (
        f"model: precision {model['precision']:.3f}, recall {model['recall']:.3f}, ROC AUC {model['roc_auc']:.3f}; "
        f"baseline ({baseline['rule']}): precision {baseline['precision']:.3f}, recall {baseline['recall']:.3f}, "
        f"ROC AUC {baseline['roc_auc']:.3f}; tested on {report['test_range'][0]} to {report['test_range'][1]}"
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv if argv is not None else sys.argv[1:])
    train = options.view_as(TrainMaintenanceOptions)
    source = options.view_as(AnalysisOptions).input
    model_file = model_path(options)
    try:
        settings = settings_of(train)
    except TrainingError as error:
        print(f"{PIPELINE_NAME}: {error}", file=sys.stderr)
        return EXIT_USAGE
    if not source.endswith(".jsonl") and not reading.data_files(source, reading.DRONE):
        print(f"{PIPELINE_NAME}: no drone data under {lake.join(source, lake.DRONE)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with beam.Pipeline(options=options) as pipeline:
            build_pipeline(pipeline, source, settings, model_file)
        with FileSystems.open(report_path(model_file)) as handle:
            report = json.loads(handle.read())
    except Exception as error:  # noqa: BLE001 — the user gets one line; Beam has already logged the details
        print(f"{PIPELINE_NAME}: failed: {one_line(error)}", file=sys.stderr)
        return EXIT_REFUSED
    if "error" in report:
        print(f"{PIPELINE_NAME}: {report['error']}", file=sys.stderr)
        return EXIT_USAGE
    print(summary(report))
    if report["refused"]:
        print(f"{PIPELINE_NAME}: {report['refused']}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"model in {model_file}, report in {report_path(model_file)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
