"""The analysis pipeline against answers computed independently with pandas on the same lake files.

The lake is generated here: a history with nulls, improbable dates, codes the DOF table
lacks and replayed files; drone data over two and a half weeks (a daylight-saving change
included) with alerts, operators' corrections, replayed and late files, and a stray
temporary file the reader must ignore. The pipeline runs once per lake (module fixtures);
each question is then compared, exactly, with what pandas says.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import apache_beam as beam
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to

from bench.analysis import synthetic_history, write_history_lake
from csv_ingest.records import DateWindow, layout_for_header, type_rows
from pipelines.analysis import DEFAULT_REPORT_FOLDER, Answering, parse_options, plan_analysis, report_json
from pipelines.analysis import main as analysis_main
from pipelines.options import RunModeOptions
from runners.presets import local_options
from simulator.fleet import FleetSettings, fleet_reports
from simulator.photos import PhotoRenderer
from tests.support.analysis_lake import risk_scores, write_drone_lake, write_risk_lake
from transforms import lake
from transforms.analysis import answers, arrow_ops
from transforms.analysis.questions import (
    QUESTIONS,
    DroneFleet,
    Lookups,
    MonthTrend,
    RepeatOffenders,
    TopPlates,
    WeekdayWeekend,
    answer_all,
    contenders,
)
from transforms.analysis.reading import COUNTS, DistinctRows, read_file_group
from transforms.analysis.report import (
    INDEX_HTML,
    REPORT_MD,
    SECTION_BUILDERS,
    Table,
    html_page,
    markdown,
    markdown_table,
    sections,
)
from transforms.contract import HUMAN_REVIEW_CODE
from transforms.geo import borough_of
from transforms.history import history_table
from transforms.messages import messages_to_table
from transforms.violation_codes import violation_codes

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NEW_YORK = "America/New_York"
DRONE_START = datetime(2024, 3, 1, 3, 30, tzinfo=timezone.utc)  # New York switches to summer time on 10 March
CODE_NOT_IN_TABLE = next(code for code in range(1, 100) if code not in violation_codes())
ALERTS_WITHOUT_PHOTO = 3


# --- the generated lake ---------------------------------------------------------------------


def history_with_quirks(rows: int) -> pa.Table:
    """The bench's synthetic history plus missing codes and codes the DOF table lacks."""
    table = synthetic_history(rows, seed=11)
    codes = table.column("violation_code").to_pylist()
    for index in range(0, rows, 97):
        codes[index] = None
    for index in range(5, rows, 211):
        codes[index] = CODE_NOT_IN_TABLE
    position = table.schema.get_field_index("violation_code")
    return table.set_column(position, table.schema.field(position), pa.array(codes, pa.int16()))


def drone_messages() -> list[Any]:
    """Messages of 12 drones over ~17 days, plus operators' corrections of the first alerts."""
    settings = FleetSettings(
        drones=12, seed=7, start_ms=int(DRONE_START.timestamp() * 1000), rate=0.01, violation_ratio=0.4, human_ratio=0.05
    )
    messages = list(itertools.islice(fleet_reports(settings), 15_000))
    alerts = [message for message in messages if message.violation_code == HUMAN_REVIEW_CODE][:10]
    corrections = [
        dataclasses.replace(alert, message_id=f"correction-{alert.message_id}", violation_code=21, resolves_message_id=alert.message_id)
        for alert in alerts
    ]
    return messages + corrections


def store_alert_photos(root: Path, messages: list[Any]) -> None:
    """The photos of every alert but the first :data:`ALERTS_WITHOUT_PHOTO`, as the simulator stores them."""
    renderer = PhotoRenderer(seed=7)
    for alert in [message for message in messages if message.needs_human][ALERTS_WITHOUT_PHOTO:]:
        path = lake.image_path(str(root), alert.timestamp, alert.image_id)
        lake.write_file_atomically(str(root), path, renderer.render(alert))


@pytest.fixture(scope="module")
def generated_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    write_history_lake(root, history_with_quirks(20_000), replay_share=0.03)
    write_drone_lake(root, drone_messages())
    store_alert_photos(root, drone_messages())
    write_risk_lake(root, risk_scores(drone_messages()))
    return root


@pytest.fixture(scope="module")
def generated_report(generated_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    folder = tmp_path_factory.mktemp("report")
    assert analysis_main([f"--input={generated_lake}", f"--output={folder}", "--shuffle_buckets=4"]) == 0
    return json.loads((folder / "report.json").read_text()), folder


# --- the same answers, independently, with pandas ------------------------------------------------


def read_dataset(root: Path, dataset: str, schema: pa.Schema) -> pd.DataFrame:
    files = sorted(
        path for path in (root / dataset).rglob("*.parquet") if not any(part.startswith("_") for part in path.parts[len(root.parts) :])
    )
    tables = [pq.read_table(path, schema=schema) for path in files]
    return pa.concat_tables(tables).to_pandas(types_mapper=None) if tables else pd.DataFrame(columns=schema.names)


def distinct_history(root: Path) -> pd.DataFrame:
    return read_dataset(root, lake.HISTORY, lake.HISTORY_SCHEMA).drop_duplicates("summons_number")


def drone_frame(root: Path) -> pd.DataFrame:
    """All drone rows with New York day and hour; ``distinct sightings`` are taken from it."""
    rows = read_dataset(root, lake.DRONE, lake.DRONE_SCHEMA)
    local = rows["timestamp"].dt.tz_convert(NEW_YORK)
    return rows.assign(day=local.dt.strftime("%Y-%m-%d"), hour=local.dt.hour)


def drone_sightings(rows: pd.DataFrame) -> pd.DataFrame:
    sightings = rows[rows["violation_code"].notna()].drop_duplicates("message_id").copy()
    sightings["alert"] = sightings["violation_code"] == HUMAN_REVIEW_CODE
    sightings["borough"] = [borough_of(lat, lon) for lat, lon in zip(sightings["latitude"], sightings["longitude"])]
    return sightings


def ranked(counts: pd.Series, limit: int) -> list[tuple[Any, int]]:
    """(key, count) by count descending then key: the answers' one order."""
    return sorted(((key, int(value)) for key, value in counts.items()), key=lambda item: (-item[1], item[0]))[:limit]


def expected_weekday_weekend(days: pd.Series, all_days: set[str]) -> dict[str, Any]:
    per_day = days.value_counts()
    present = all_days | set(per_day.index)
    weekend_of = {day: pd.Timestamp(day).dayofweek >= 5 for day in present}
    weekend_days = sum(weekend_of.values())
    weekday_days = len(present) - weekend_days
    weekend = int(sum(count for day, count in per_day.items() if weekend_of[day]))
    weekday = int(per_day.sum()) - weekend
    return {
        "weekday_per_day": round(weekday / weekday_days, 2) if weekday_days else None,
        "weekend_per_day": round(weekend / weekend_days, 2) if weekend_days else None,
        "weekday_days": weekday_days,
        "weekend_days": weekend_days,
        "weekday_violations": weekday,
        "weekend_violations": weekend,
    }


def expected_hours(hours: pd.Series) -> dict[str, int]:
    counts = hours.dropna().astype(int).value_counts()
    return {str(hour): int(counts.get(hour, 0)) for hour in range(24)}


def expected_peaks(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    timed = frame.dropna(subset=["hour"]).assign(borough=frame["borough"].fillna("Unknown"))
    peaks = {}
    for borough, rows in timed.groupby("borough"):
        counts = rows["hour"].astype(int).value_counts()
        hour = min(counts.index, key=lambda h: (-counts[h], h))
        peaks[borough] = {"hour": int(hour), "count": int(counts[hour])}
    return dict(sorted(peaks.items()))


def expected_top_codes(frame: pd.DataFrame) -> list[dict[str, Any]]:
    codes = violation_codes()
    coded = frame[frame["violation_code"].notna()]
    manhattan = coded[coded["borough"] == "Manhattan"]["violation_code"].value_counts()
    entries = []
    for code, total in ranked(coded["violation_code"].astype(int).value_counts(), 10):
        in_manhattan = int(manhattan.get(code, 0))
        known = codes.get(code)
        revenue = round(in_manhattan * known.fine_manhattan_96_below + (total - in_manhattan) * known.fine_elsewhere, 2) if known else None
        entries.append(
            {
                "code": code,
                "description": known.description if known else None,
                "count": total,
                "manhattan_count": in_manhattan,
                "fine_revenue": revenue,
            }
        )
    return entries


def expected_boroughs(frame: pd.DataFrame) -> dict[str, Any]:
    codes = violation_codes()
    named = frame.assign(borough=frame["borough"].fillna("Unknown"))
    summary = {}
    for borough, total in ranked(named["borough"].value_counts(), 100):
        in_borough = named[named["borough"] == borough]["violation_code"].dropna().astype(int).value_counts()
        summary[borough] = {
            "count": total,
            "share": round(total / len(named), 4),
            "top_codes": [
                {"code": code, "description": codes[code].description if code in codes else None, "count": n}
                for code, n in ranked(in_borough, 3)
            ],
        }
    return summary


def expected_history_answers(history: pd.DataFrame) -> dict[str, Any]:
    probable = history[~history["improbable_date"]]
    days = probable["issue_date"].astype(str)
    frame = history.assign(hour=[None if pd.isna(t) or t is None else t.hour for t in history["violation_time"]])
    states = history["registration_state"]
    known = states[states.notna() & (states != "") & (states != "99")]
    with_state = len(known)
    out_of_state = with_state - int((known == "NY").sum())
    months = probable["issue_date"].astype(str).str[:7].value_counts().sort_index()
    seasons = {"Winter": 0, "Spring": 0, "Summer": 0, "Autumn": 0}
    for month, n in months.items():
        seasons[
            {12: "Winter", 1: "Winter", 2: "Winter", 3: "Spring", 4: "Spring", 5: "Spring", 6: "Summer", 7: "Summer", 8: "Summer"}.get(
                int(month[5:]), "Autumn"
            )
        ] += int(n)
    return {
        "weekday_weekend": expected_weekday_weekend(days, set(days)),
        "hours": expected_hours(frame["hour"]),
        "peaks": expected_peaks(frame),
        "without_time": int(frame["hour"].isna().sum()),
        "top_codes": expected_top_codes(history),
        "borough": expected_boroughs(history),
        "registration_state": {
            "with_state": with_state,
            "unknown_state": len(history) - with_state,
            "out_of_state": out_of_state,
            "out_of_state_share": round(out_of_state / with_state, 4) if with_state else None,
            "top_states": [
                {"state": state, "count": n, "share": round(n / with_state, 4)} for state, n in ranked(known.value_counts(), 10)
            ],
        },
        "month_trend": {
            "months": {month: int(n) for month, n in months.items()},
            "seasons": seasons,
            "busiest_month": max(months.index, key=lambda month: (months[month], month)) if len(months) else None,
            "busiest_season": max(seasons, key=lambda name: seasons[name]) if len(months) else None,
        },
        "repeat_offenders": expected_repeat_offenders(history),
    }


def expected_repeat_offenders(history: pd.DataFrame) -> list[dict[str, Any]]:
    plates = history[history["plate_id"].notna() & (history["plate_id"] != "") & (history["plate_id"] != "BLANKPLATE")]
    grouped = plates.assign(state=plates["registration_state"].fillna("")).groupby(["plate_id", "state"])
    tallies = grouped.agg(violations=("summons_number", "size"), fines=("fine_amount", lambda fines: fines.fillna(0).sum()))
    rows = sorted(tallies.itertuples(), key=lambda row: (-row.violations, -row.fines, row.Index[0], row.Index[1]))[:10]
    return [
        {
            "plate_id": row.Index[0],
            "registration_state": row.Index[1] or None,
            "violations": int(row.violations),
            "fines_owed": round(float(row.fines), 2),
        }
        for row in rows
    ]


def expected_drone_answers(rows: pd.DataFrame) -> dict[str, Any]:
    sightings = drone_sightings(rows)
    violations = sightings[~sightings["alert"]]
    per_drone_day = []
    for (drone, day), group in sightings.groupby(["drone_id", "day"]):
        per_drone_day.append(
            {"drone_id": drone, "day": day, "violations": int((~group["alert"]).sum()), "alerts": int(group["alert"].sum())}
        )
    alerts = int(sightings["alert"].sum())
    corrections = int(violations["resolves_message_id"].notna().sum())
    photos_missing = sum(not Path(place).is_file() for place in sightings[sightings["alert"]]["image_uri"])
    return {
        "weekday_weekend": expected_weekday_weekend(violations["day"], set(rows["day"])),
        "hours": expected_hours(violations["hour"]),
        "peaks": expected_peaks(violations),
        "top_codes": expected_top_codes(violations),
        "borough": expected_boroughs(violations),
        "drone_fleet": {
            "violations": len(violations),
            "alerts": alerts,
            "corrections": corrections,
            "human_share": round(alerts / (len(violations) - corrections + alerts), 4),
            "alerts_photo_missing": photos_missing,
            "drones": sightings["drone_id"].nunique(),
            "days": sightings["day"].nunique(),
            "per_drone_day": per_drone_day,
        },
        "distinct_rows": len(sightings),
    }


# --- the comparisons -----------------------------------------------------------------------------


def assert_history_answers(report: dict[str, Any], expected: dict[str, Any]) -> None:
    assert report["weekday_weekend"]["history"] == expected["weekday_weekend"]
    assert report["hour_of_day"]["history"] == expected["hours"]
    assert report["hour_of_day"]["peak_hour_by_borough"]["history"] == expected["peaks"]
    assert report["hour_of_day"]["without_time"]["history"] == expected["without_time"]
    assert report["top_codes"]["history"] == expected["top_codes"]
    assert report["borough"]["history"] == expected["borough"]
    assert list(report["borough"]["history"]) == list(expected["borough"])
    assert report["registration_state"]["history"] == expected["registration_state"]
    assert report["month_trend"]["history"] == expected["month_trend"]
    assert report["repeat_offenders"]["history"] == expected["repeat_offenders"]


def test_history_answers_match_pandas(generated_lake: Path, generated_report: tuple[dict[str, Any], Path]) -> None:
    report, _ = generated_report
    history = distinct_history(generated_lake)
    assert report["inputs"]["history"]["distinct_rows"] == len(history) == 20_000
    assert report["inputs"]["history"]["rows_read"] > 20_000, "the replayed files are read, and their copies dropped"
    assert_history_answers(report, expected_history_answers(history))


def test_drone_answers_match_pandas(generated_lake: Path, generated_report: tuple[dict[str, Any], Path]) -> None:
    report, _ = generated_report
    expected = expected_drone_answers(drone_frame(generated_lake))
    assert report["inputs"]["drone"]["distinct_rows"] == expected["distinct_rows"]
    assert report["weekday_weekend"]["drone"] == expected["weekday_weekend"]
    assert report["hour_of_day"]["drone"] == expected["hours"]
    assert report["hour_of_day"]["peak_hour_by_borough"]["drone"] == expected["peaks"]
    assert report["top_codes"]["drone"] == expected["top_codes"]
    assert report["borough"]["drone"] == expected["borough"]
    assert report["drone_fleet"]["drone"] == expected["drone_fleet"]


def test_drone_fleet_share_is_near_the_simulators_ratio(generated_report: tuple[dict[str, Any], Path]) -> None:
    fleet = generated_report[0]["drone_fleet"]["drone"]
    assert fleet["corrections"] == 10 and fleet["drones"] == 12
    assert 0.03 < fleet["human_share"] < 0.07, "the simulator was asked for 5 % human reviews"


def test_the_alerts_whose_photo_never_reached_the_store_are_counted(generated_report: tuple[dict[str, Any], Path]) -> None:
    fleet = generated_report[0]["drone_fleet"]["drone"]
    assert fleet["alerts_photo_missing"] == ALERTS_WITHOUT_PHOTO < fleet["alerts"]


def test_fleet_health_summarises_the_risk_scores_against_the_faults_observed(
    generated_report: tuple[dict[str, Any], Path],
) -> None:
    health = generated_report[0]["fleet_health"]["drone_risk"]
    messages = drone_messages()
    scores = risk_scores(messages).to_pylist()
    faults = [message for message in messages if message.is_fault]
    assert len(faults) > 12 and health["failures"]["observed"] == len(faults), "faults counted once, replays or not"
    assert health["scores"] == len(scores) == sum(row["scores"] for row in health["risk_histogram"])
    expected_bins = [0] * 10
    for row in scores:
        expected_bins[min(int(row["failure_risk"] * 10), 9)] += 1
    assert [row["scores"] for row in health["risk_histogram"]] == expected_bins and health["drones_scored"] == 12
    # A drone is at risk now when its latest score is at least 0.5 and it has not failed since.
    latest = {row["drone_id"]: row for row in sorted(scores, key=lambda row: row["timestamp"])}
    down = {drone for drone, row in latest.items() if any(f.drone_id == drone and f.timestamp >= row["timestamp"] for f in faults)}
    at_risk = {drone for drone, row in latest.items() if row["failure_risk"] >= 0.5 and drone not in down}
    assert {row["drone_id"] for row in health["at_risk_now"]} == at_risk
    # Flight hours foretell most failures (a life lasts 21-57 hours: risk reaches 0.5 at 25) and the rest are missed.
    assert 0 < health["failures"]["foretold"] <= len(faults) == health["failures"]["foretold"] + health["failures"]["missed"]
    assert health["warnings"]["raised"] >= health["warnings"]["followed_by_failure"] > 0


def test_one_drones_health_judged_by_hand() -> None:
    hour = 3_600_000
    scores = [(0, 0.1), (1 * hour, 0.6), (2 * hour, 0.9), (3 * hour, 0.4), (4 * hour, 0.1), (5 * hour, 0.7)]
    judged = answers.drone_health("d", scores, [int(2.5 * hour), 9 * hour], 0.5, hour)
    # Warnings start at hours 1 and 5 (0.4 keeps the first episode open, 0.1 ends it); the fault at 2.5 h
    # follows the 0.9 at 2 h within the hour, the fault at 9 h nothing does; the drone is down since it.
    assert judged == {
        "drone_id": "d",
        "histogram": [0, 2, 0, 0, 1, 0, 1, 1, 0, 1],
        "latest": None,
        "faults": 2,
        "foretold": 1,
        "warnings": 2,
        "warnings_followed": 0,
    }
    assert answers.drone_health("e", scores, [], 0.5, hour)["latest"] == {"at_ms": 5 * hour, "failure_risk": 0.7}


def test_days_and_hours_are_new_york_local(generated_report: tuple[dict[str, Any], Path]) -> None:
    """Drone days start at New York midnight: the first messages (03:30 UTC on 1 March) fall on 29 February."""
    days = {row["day"] for row in generated_report[0]["drone_fleet"]["drone"]["per_drone_day"]}
    assert "2024-02-29" in days and min(days) == "2024-02-29"


def test_the_report_is_written_for_people(generated_report: tuple[dict[str, Any], Path], capsys: pytest.CaptureFixture) -> None:
    report, folder = generated_report
    names = set(SECTION_BUILDERS)
    assert names <= set(report), "every question answered"
    for name in names:
        png = folder / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    markdown, page = (folder / REPORT_MD).read_text(), (folder / INDEX_HTML).read_text()
    assert markdown.count("\n## ") == len(names) and page.count("<section") == len(names)
    busiest = max(report["month_trend"]["history"]["months"].items(), key=lambda item: (item[1], item[0]))
    assert f"The busiest month is {busiest[0]} with {busiest[1]:,} violations" in markdown
    assert all(f"src='{name}.png'" in page for name in names)
    assert (folder / "report.json").read_bytes().endswith(b"}\n"), "a text file ends with a line break"


def test_chosen_questions_only_and_missing_data_said(generated_lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    history_only = tmp_path / "lake"
    history_only.mkdir()
    (history_only / lake.HISTORY).symlink_to(generated_lake / lake.HISTORY, target_is_directory=True)
    output = tmp_path / "report"
    assert analysis_main([f"--input={history_only}", f"--output={output}", "--questions=drone_fleet,month_trend"]) == 0
    report = json.loads((output / "report.json").read_text())
    assert "month_trend" in report and "drone_fleet" not in report and "weekday_weekend" not in report
    assert report["not_answered"] == {"drone_fleet": f"no drone data under {history_only}/drone"}
    captured = capsys.readouterr()
    assert f"analysis: no drone data under {history_only}/drone" in captured.err
    assert "Months and seasons: The busiest month is" in captured.out


def test_a_report_folder_holds_one_run_only(generated_lake: Path, tmp_path: Path) -> None:
    """A second run with fewer questions replaces the folder whole: no chart of the first run stays beside it."""
    history_only = tmp_path / "lake"
    history_only.mkdir()
    (history_only / lake.HISTORY).symlink_to(generated_lake / lake.HISTORY, target_is_directory=True)
    report = tmp_path / "reports" / "latest"
    assert analysis_main([f"--input={history_only}", f"--output={report}", "--questions=month_trend,borough"]) == 0
    assert (report / "borough.png").exists()
    assert analysis_main([f"--input={history_only}", f"--output={report}", "--questions=month_trend"]) == 0
    assert sorted(path.name for path in report.iterdir()) == ["index.html", "month_trend.png", "report.json", "report.md"]
    assert [path.name for path in report.parent.iterdir()] == ["latest"], "no half-written or retired folder left"


def test_every_question_shuffles_into_the_buckets_asked_for(generated_lake: Path, tmp_path: Path) -> None:
    plan = plan_analysis(parse_options([f"--input={generated_lake}", f"--output={tmp_path}", "--shuffle_buckets=3"]))
    assert {question.name: question.buckets for question in plan.questions} == {name: 3 for name in QUESTIONS}


@pytest.mark.parametrize(("output", "folder"), [([], DEFAULT_REPORT_FOLDER), (["--output=./lake"], "./lake")])
def test_the_report_goes_to_its_own_folder_unless_output_says_otherwise(output: list[str], folder: str) -> None:
    """``--output`` is shared with the stream pipelines, whose default (the lake) is never the report's."""
    assert parse_options(["--input=./lake", *output]).view_as(RunModeOptions).output == folder


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--questions=weekday,nonsense"], "analysis: unknown question(s) weekday, nonsense; choose from"),
        ([], "analysis: nothing to answer: no Parquet data under"),
        (["--shuffle_buckets=0"], "analysis: --shuffle_buckets must be at least 1"),
    ],
)
def test_bad_requests_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, arguments: list[str], message: str) -> None:
    assert analysis_main([f"--input={tmp_path / 'empty'}", f"--output={tmp_path / 'report'}", *arguments]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "report").exists()


def test_files_without_rows_are_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "lake" / lake.HISTORY / "dt=2017-01-02"
    folder.mkdir(parents=True)
    pq.write_table(lake.HISTORY_SCHEMA.empty_table(), folder / "part-empty.parquet")
    assert analysis_main([f"--input={tmp_path / 'lake'}", f"--output={tmp_path / 'report'}"]) == 2
    err = capsys.readouterr().err
    assert "the data files under" in err and "hold no rows" in err and "Traceback" not in err


# --- the last step: every answer shaped from the combined results ------------------------------


def test_a_dataset_no_row_reached_is_answered_from_empty_tallies() -> None:
    """Drones that flew and saw nothing leave no tally to combine; their part is still answered, from ``{}``."""
    results = {("weekday_weekend", "history"): {"2017-01-07": 4, "2017-01-09": 6}}
    flew = ["2024-03-02", "2024-03-04"]  # a Saturday and a Monday
    answered = answer_all(results, [WeekdayWeekend, RepeatOffenders, DroneFleet], ["history", "drone"], Lookups({}, flew))
    assert list(answered) == ["weekday_weekend", "repeat_offenders", "drone_fleet"]
    assert answered["weekday_weekend"]["history"]["weekend_violations"] == 4
    assert answered["weekday_weekend"]["drone"] == {
        "weekday_per_day": 0.0,
        "weekend_per_day": 0.0,
        "weekday_days": 1,
        "weekend_days": 1,
        "weekday_violations": 0,
        "weekend_violations": 0,
    }
    assert answered["repeat_offenders"] == {"history": []}
    assert answered["drone_fleet"]["drone"]["violations"] == 0
    assert set(answer_all(results, [WeekdayWeekend], ["history"], Lookups({}))["weekday_weekend"]) == {"history"}


def test_months_and_manhattan_codes_come_from_the_day_and_borough_tallies() -> None:
    assert answers.per_month({"2016-12-31": 2, "2017-01-01": 3, "2017-01-31": 4}) == {"2016-12": 2, "2017-01": 7}
    borough_codes = {("Manhattan", 21): 5, ("Bronx", 21): 2, (None, 21): 1, ("Manhattan", None): 9, ("Queens", 38): 4}
    assert answers.codes_by_manhattan(borough_codes) == {(21, True): 5, (21, False): 3, (38, False): 4}


def test_day_keys_are_tallied_as_iso_text() -> None:
    days = pa.table({"day": pa.array([date(2017, 1, 2), date(2017, 1, 2), None], pa.date32()), "n": [1, 2, 2]})
    assert sorted(arrow_ops.group_counts(days, ["day", "n"]), key=str) == [(("2017-01-02", 1), 1), (("2017-01-02", 2), 1), ((None, 2), 1)]


def test_top_plates_keeps_the_best_of_all_bucket_tops_in_ranking_order() -> None:
    combine = TopPlates(limit=2)
    tops = [[(("A", "NY"), (5, 10.0)), (("B", None), (3, 0.0))], [(("C", "NJ"), (5, 20.0))], []]
    accumulators = [combine.add_input(combine.create_accumulator(), top) for top in tops]
    assert combine.extract_output(combine.merge_accumulators(accumulators)) == [(("C", "NJ"), (5, 20.0)), (("A", "NY"), (5, 10.0))]


def test_contenders_for_the_top_plates_keep_every_tie_for_the_last_place() -> None:
    tallies = pa.table({"plate_id": list("abcdef"), "count_all": [1, 5, 3, 3, 3, 1]})
    assert sorted(contenders(tallies, 2).column("plate_id").to_pylist()) == ["b", "c", "d", "e"]
    assert contenders(tallies, 9).num_rows == 6


def test_a_plate_or_id_full_of_markup_is_one_plain_cell_of_report_md() -> None:
    hostile = "AB|C\n# Forged heading <script>alert(1)</script> **bold** [link](http://x) \u202eevil"
    table = Table("Repeat offenders", ["plate", "tickets"], [[hostile, 3], [None, 1]])
    lines = markdown_table(table)
    assert len(lines) == 6, "the cell's line break did not start a row of its own"
    row = lines[4]
    assert row.count(" | ") == 1 and row.startswith("| ") and row.endswith(" |"), "one row of two cells"
    assert "<script" not in row and "&lt;script&gt;" in row
    for markup in (" **", "[link]", "\u202e", "\n"):
        assert markup not in row, markup
    assert "AB\\|C" in row and "\\# Forged" in row and "\\*\\*bold\\*\\*" in row and lines[5] == "| – | 1 |"


def test_the_report_counts_rows_only_of_the_datasets_read() -> None:
    results = {(COUNTS, "history"): {"rows_read": 7}, ("month_trend", "history"): {"2017-01": 7}}
    header = {"lake": "lake", "files": {"history": 1, "drone": 0}, "not_answered": {}}
    report = json.loads(report_json(results, Answering([MonthTrend], ["history"]), header, {}, []))
    assert list(report) == ["month_trend", "inputs", "lake", "not_answered"]
    assert report["inputs"] == {"history": {"files": 1, "rows_read": 7, "distinct_rows": 0}, "drone": {"files": 0}}
    assert report["month_trend"]["history"]["busiest_month"] == "2017-01"


def test_the_page_says_what_rows_were_counted_and_dashes_what_an_answer_lacks() -> None:
    """Drones that flew on weekdays only have no per-weekend-day figure: the table shows "–", as the sentence does."""
    results = {
        ("weekday_weekend", "drone"): {"2024-03-04": 6},
        (COUNTS, "drone"): {"rows_read": 8070, "distinct_rows": 378},
        (COUNTS, "history"): {"rows_read": 500, "distinct_rows": 480},
    }
    header = {"lake": "lake", "files": {"history": 2, "drone": 3}, "not_answered": {}}
    report = json.loads(report_json(results, Answering([WeekdayWeekend], ["drone"]), header, {}, ["2024-03-04"]))
    assert report["weekday_weekend"]["drone"]["weekend_per_day"] is None
    page, text = html_page(report, sections(report)), markdown(report, sections(report))
    assert "None" not in page and "None" not in text
    assert "<td>Drones</td><td>6.0</td><td>–</td><td>1</td><td>0</td>" in page
    assert "<td>Drones</td><td>3</td><td>8,070</td><td>378 distinct rows that carry a violation</td>" in page
    assert "<td>NYPD history</td><td>2</td><td>500</td><td>480 distinct summonses</td>" in page
    assert "| Drones | 3 | 8,070 | 378 distinct rows that carry a violation |" in text


# --- the Arrow helpers the shuffle relies on --------------------------------------------------------


def test_equal_ids_share_a_bucket_and_every_row_lands_once() -> None:
    ids = pa.array(["a", "bb", "a", None, "a-much-longer-message-id-0001", "a-much-longer-message-id-0002", "bb"])
    buckets = arrow_ops.stable_buckets(ids, 5)
    assert buckets[0] == buckets[2] and buckets[1] == buckets[6]
    assert arrow_ops.stable_buckets(ids.slice(2), 5).tolist() == buckets[2:].tolist(), "a slice hashes as its values"
    table = pa.table({"id": ids, "n": range(7)})
    parts = [(bucket, arrow_ops.from_ipc(part)) for bucket, part in arrow_ops.split_by_bucket(table, buckets, 5)]
    assert sorted(n for _, part in parts for n in part.column("n").to_pylist()) == list(range(7))
    assert all(set(arrow_ops.stable_buckets(part.column("id"), 5).tolist()) == {bucket} for bucket, part in parts)


def test_a_drone_file_written_before_photos_were_recorded_reads_without_their_place(tmp_path: Path) -> None:
    table = messages_to_table(drone_messages()[:50], [0] * 50, list(range(50)), str(tmp_path))
    older, newer = tmp_path / "older.parquet", tmp_path / "newer.parquet"
    pq.write_table(table.drop_columns(["image_uri"]), older)
    pq.write_table(table, newer)
    read = read_file_group([str(older), str(newer)], lake.DRONE_SCHEMA)
    assert read.schema == lake.DRONE_SCHEMA
    assert read.column("image_uri").to_pylist() == [None] * 50 + table.column("image_uri").to_pylist()


def test_integer_ids_spread_over_buckets() -> None:
    buckets = arrow_ops.stable_buckets(pa.array(range(8_000_000_000, 8_000_030_000, 3)), 16)
    counts = pd.Series(buckets).value_counts()
    assert len(counts) == 16 and counts.max() < 1.2 * counts.min()


def ids_table(number: int) -> pa.Table:
    return pa.table({"id": pa.array(range(number * 100, number * 100 + 100), pa.int64())})


@pytest.mark.parametrize("round_number", [1, 2])
def test_the_analysis_preset_keeps_every_row_through_the_shuffle(round_number: int) -> None:
    """The analysis preset runs in_memory, where none of these rows is lost (multi_threading lost a few
    about one run in four: Beam's bug, docs/repro/beam_multi_threading_groupbykey_loss.py)."""
    options = local_options([], shuffles=True)
    with beam.Pipeline(options=options) as pipeline:
        distinct_rows = (
            pipeline
            | "Tables" >> beam.Create(range(2000))
            | "Ids" >> beam.Map(ids_table)
            | "Distinct" >> DistinctRows("id", 16)
            | "Rows" >> beam.Map(lambda table: table.num_rows)
            | "Total" >> beam.CombineGlobally(sum)
        )
        assert_that(distinct_rows, equal_to([200_000]))


# --- the real samples -----------------------------------------------------------------------------


def sample_history(path: Path) -> pa.Table:
    """A real sample as the history pipeline would store it: the loader's record rules, the lake's row rules."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.reader(handle)
        layout = layout_for_header(next(reader))
        window = DateWindow("0001-01-01", "9999-12-31")
        lines, rows = [], []
        for fields in reader:
            if fields:
                lines.append(reader.line_num)
                rows.append(fields)
    typed, _ = type_rows(lines, rows, layout, window)
    return history_table(typed.columns, path.name, loaded_at_ms=0)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the real NYC samples (../shared/data) are absent")
def test_real_samples_match_pandas(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    for path in sorted(SHARED_DATA.glob("pvi_fy*_sample.csv")):
        table = sample_history(path)
        for day in set(table.column("issue_date").to_pylist()):
            folder = Path(lake.date_partition(str(root), lake.HISTORY, day.isoformat()))
            folder.mkdir(parents=True, exist_ok=True)
            rows = table.filter(pa.compute.equal(table.column("issue_date"), pa.scalar(day, pa.date32())))
            pq.write_table(rows, folder / f"part-{path.stem}.parquet")
    output = tmp_path / "report"
    assert analysis_main([f"--input={root}", f"--output={output}", "--shuffle_buckets=2"]) == 0
    report = json.loads((output / "report.json").read_text())
    history = distinct_history(root)
    assert report["inputs"]["history"]["distinct_rows"] == len(history) > 3000
    assert_history_answers(report, expected_history_answers(history))
    assert report["weekday_weekend"]["history"]["weekday_per_day"] > report["weekday_weekend"]["history"]["weekend_per_day"]
