"""Batch analysis of the lake: the questions as Beam transforms → report.json, report.md, charts, index.html.

``python -m pipelines.analysis --input ./lake --output ./reports/latest [--runner …] [--questions a,b,…]``

The pipeline reads only the columns the chosen questions need, counts every row once
(replays de-duplicated by id) and writes ``report.json``; the rest of the report (text,
charts, page) is rendered from that file. A missing or empty dataset is one line on the
terminal and the questions it cannot answer are listed as unanswered; exit code 2 when
nothing at all can be answered.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.cli import one_line, parse_pipeline_args
from pipelines.options import RunModeOptions
from runners.presets import runner_name
from transforms import lake
from transforms.analysis import reading
from transforms.analysis.questions import DRONE, HISTORY, QUESTIONS, RISK, Lookups, Question, ResultKey, answer_all
from transforms.analysis.report import (
    REPORT_JSON,
    discard,
    fresh_sibling,
    read_report,
    render_report,
    summary_lines,
    swap_in,
    write_bytes,
)
from transforms.violation_codes import ViolationCode, violation_codes

DEFAULT_REPORT_FOLDER = "./reports/latest"
EXIT_NOTHING_TO_ANSWER = 2
EXIT_FAILED = 1
EXIT_CODES = {
    0: "report written",
    EXIT_FAILED: "the pipeline failed (one line says why)",
    EXIT_NOTHING_TO_ANSWER: "bad flags, an unknown question, or nothing to answer (no data, or no rows)",
}
SHARED_FLAGS = {
    "--output": f"Report folder: a local folder, gs://… or s3://… (default: {DEFAULT_REPORT_FOLDER}).",
    "--runner": None,
}


class AnalysisOptions(PipelineOptions):
    """Which lake to read, which questions to answer. ``--output`` (the report folder) is the shared flag."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input", default="./lake", help="Lake root: a local folder, gs://… or s3://….")
        parser.add_argument(
            "--questions",
            default=",".join(QUESTIONS),
            help=f"Comma-separated questions to answer (default: all): {', '.join(QUESTIONS)}.",
        )
        parser.add_argument(
            "--shuffle_buckets",
            type=int,
            default=reading.DEFAULT_BUCKETS,
            help="Buckets the de-duplication shuffles tables into: at least the number of workers.",
        )


class UsageError(Exception):
    """A wrong flag value: printed as one line, exit code 2."""


@dataclass(frozen=True)
class Plan:
    """What this run reads and answers, decided before the pipeline is built."""

    lake_root: str
    report_folder: str
    questions: list[Question]
    files: dict[str, list[str]]
    not_answered: dict[str, str] = field(default_factory=dict)
    buckets: int = reading.DEFAULT_BUCKETS

    def columns(self, dataset: str) -> set[str]:
        """Every column any chosen question needs from ``dataset``: the projection to read."""
        wanted: set[str] = set()
        for question in self.questions:
            columns = question.history_columns if dataset == HISTORY else question.drone_columns
            wanted |= set(columns or ())
        return wanted

    def reads(self, dataset: str) -> bool:
        return bool(self.files.get(dataset)) and any(dataset in question.datasets() for question in self.questions)

    def answering(self) -> Answering:
        datasets = [dataset for dataset in (HISTORY, DRONE, RISK) if self.reads(dataset)]
        return Answering([type(question) for question in self.questions], datasets)


@dataclass(frozen=True)
class Answering:
    """What the last step needs of the plan: the questions (as classes, their shaping is pure) and the datasets read."""

    questions: list[type[Question]]
    datasets: list[str]


def chosen_questions(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in QUESTIONS]
    if unknown or not names:
        raise UsageError(f"unknown question(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(QUESTIONS)}")
    return list(dict.fromkeys(names))


def plan_analysis(options: PipelineOptions) -> Plan:
    """List the lake's data files and keep the questions some present dataset can answer."""
    analysis = options.view_as(AnalysisOptions)
    if analysis.shuffle_buckets < 1:
        raise UsageError("--shuffle_buckets must be at least 1")
    names = chosen_questions(analysis.questions)
    files = {
        HISTORY: reading.data_files(analysis.input, reading.HISTORY),
        DRONE: reading.data_files(analysis.input, reading.DRONE),
        RISK: reading.data_files(analysis.input, reading.RISK),
    }
    answerable, not_answered = [], {}
    for name in names:
        question = QUESTIONS[name](buckets=analysis.shuffle_buckets)
        present = [dataset for dataset in question.datasets() if files[dataset]]
        if present:
            answerable.append(question)
        else:
            not_answered[name] = "no " + " or ".join(
                f"{dataset} data under {lake.join(analysis.input, dataset)}" for dataset in question.datasets()
            )
    return Plan(analysis.input, options.view_as(RunModeOptions).output, answerable, files, not_answered, analysis.shuffle_buckets)


def build_pipeline(pipeline: beam.Pipeline, plan: Plan) -> None:
    """Reads, questions and the ``report.json`` they end in.

    Every question's combined tallies and every dataset's row counts meet in one
    ``ToDict``; one step then shapes all the answers, and one writes ``report.json``.
    Each step after a shuffle is a stage of its own on the local runner, so the
    shaping, pure and quick, is not spread over steps of each question.
    """
    lake_input: dict[str, beam.PCollection] = {}
    results = []
    drone_days: Any = []
    if plan.reads(HISTORY):
        history = pipeline | "ReadHistory" >> reading.ReadHistory(plan.files[HISTORY], plan.columns(HISTORY), plan.buckets)
        lake_input[HISTORY] = history[HISTORY]
        results.append(history["counts"])
    if plan.reads(DRONE):
        drone = pipeline | "ReadDrone" >> reading.ReadDrone(plan.files[DRONE], plan.columns(DRONE), plan.buckets)
        lake_input[DRONE] = drone[DRONE]
        drone_days = beam.pvalue.AsList(drone[reading.DRONE_DAYS])
        results.append(drone["counts"])
    if plan.reads(RISK):
        risk = pipeline | "ReadRisk" >> reading.ReadRisk(plan.files[RISK], plan.files[DRONE], plan.buckets)
        lake_input[RISK], lake_input[reading.FAULTS] = risk[RISK], risk[reading.FAULTS]
        results.append(risk["counts"])
    results += [lake_input | f"Question_{question.name}" >> question for question in plan.questions]
    # The code table is a side input, read whole by one step: nothing to spread, so no reshuffle.
    codes = pipeline | "CodeTable" >> beam.Create(sorted(violation_codes().items()), reshuffle=False)
    header = {
        "lake": plan.lake_root,
        "files": {dataset: len(files) for dataset, files in plan.files.items()},
        "not_answered": plan.not_answered,
    }
    (
        results
        | "AllResults" >> beam.Flatten()
        | "ResultsByKey" >> beam.combiners.ToDict()
        | "ReportJson" >> beam.Map(report_json, plan.answering(), header, beam.pvalue.AsDict(codes), drone_days)
        | "WriteReportJson" >> beam.Map(write_text, lake.join(plan.report_folder, REPORT_JSON))
    )


def report_json(
    results: dict[ResultKey, Any],
    answering: Answering,
    header: dict[str, Any],
    codes: dict[int, ViolationCode],
    drone_days: list[str],
) -> str:
    """The report as JSON text: questions in the order asked, then what was read and what was not answered.

    ``results`` holds each question's combined tallies under ``(question, dataset)`` and
    each dataset's row counts under ``(reading.COUNTS, dataset)``.
    """
    document = answer_all(results, answering.questions, answering.datasets, Lookups(codes, drone_days))
    rows = {dataset: reading.row_counts(added) for (name, dataset), added in results.items() if name == reading.COUNTS}
    document["inputs"] = {dataset: {"files": count, **rows.get(dataset, {})} for dataset, count in header["files"].items()}
    document["lake"] = header["lake"]
    document["not_answered"] = header["not_answered"]
    return json.dumps(document, indent=2, sort_keys=False)


def write_text(text: str, path: str) -> None:
    """One document to one file, ending with a line break as a text file should.

    ``WriteToText``'s sharding, temporary files and renames cost four stages here.
    """
    write_bytes(path, text.encode() + b"\n")


def parse_options(argv: list[str]) -> PipelineOptions:
    """The flags as the analysis reads them: each one known or refused, then the runner's preset (one that shuffles).

    Without ``--output`` the report goes to :data:`DEFAULT_REPORT_FOLDER`.
    """
    return parse_pipeline_args(
        argv, "analysis", __doc__, [AnalysisOptions], SHARED_FLAGS, EXIT_CODES, shuffles=True, output_default=DEFAULT_REPORT_FOLDER
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv if argv is not None else sys.argv[1:])
    try:
        plan = plan_analysis(options)
    except UsageError as error:
        print(f"analysis: {error}", file=sys.stderr)
        return EXIT_NOTHING_TO_ANSWER
    for dataset, files in plan.files.items():
        if not files:
            print(f"analysis: no {dataset} data under {lake.join(plan.lake_root, dataset)}", file=sys.stderr)
    if not plan.questions:
        print(f"analysis: nothing to answer: no Parquet data under {plan.lake_root}", file=sys.stderr)
        return EXIT_NOTHING_TO_ANSWER
    started = time.perf_counter()
    fresh = fresh_sibling(plan.report_folder)
    try:
        with beam.Pipeline(options=options) as pipeline:
            build_pipeline(pipeline, replace(plan, report_folder=fresh))
        report = read_report(fresh)
        written = render_report(report, fresh)
        swap_in(fresh, plan.report_folder)
    except Exception as error:  # noqa: BLE001 — the user gets one line; Beam has already logged the details
        discard(fresh)
        print(f"analysis: failed: {one_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    for line in summary_lines(report):
        print(line)
    print(f"report in {plan.report_folder} ({runner_name(options)}, {time.perf_counter() - started:.1f} s): {', '.join(written)}")
    if not any(details.get("rows_read") for details in report["inputs"].values()):
        print(f"analysis: nothing to answer: the data files under {plan.lake_root} hold no rows", file=sys.stderr)
        return EXIT_NOTHING_TO_ANSWER
    return 0


if __name__ == "__main__":
    sys.exit(main())
