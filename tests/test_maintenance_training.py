"""Predictive maintenance, training: features by hand on tiny series, the split by time, the baseline's verdict,
and the Beam pipeline that trains on a seeded simulation's lake and beats the baseline."""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import joblib
import numpy as np
import pytest

from pipelines import train_maintenance
from simulator.fleet import FleetSettings, fleet_reports
from transforms import lake
from transforms.contract import encode_message
from transforms.maintenance import training
from transforms.maintenance.features import (
    FEATURES,
    MINUTE_MS,
    Example,
    HealthSample,
    drain_per_flight_minute,
    examples,
    features_at,
    lives,
    slope_per_minute,
)
from transforms.messages import messages_to_table

START = datetime(2026, 11, 1, tzinfo=timezone.utc)
START_MS = int(START.timestamp() * 1000)


def sample(
    minute: float,
    temp: float = 40.0,
    battery: float = 80.0,
    vibration: float = 0.2,
    hours: float = 1.0,
    altitude: float = 50.0,
    fault: bool = False,
) -> HealthSample:
    return HealthSample(f"m{minute}", START_MS + int(minute * MINUTE_MS), battery, temp, vibration, hours, altitude, fault)


def test_features_are_trends_and_rates_over_the_window_computed_by_hand() -> None:
    series = [
        sample(0, temp=40, battery=90, vibration=0.2, hours=1.0),
        sample(1, temp=42, battery=88, vibration=0.4, hours=1.02),
        sample(2, temp=44, battery=85, vibration=0.6, hours=1.03),
        sample(3, temp=45, battery=85, vibration=0.0, hours=1.03, altitude=0),  # landed: no hum, no drain counted
    ]
    row = dict(zip(FEATURES, features_at(series, START_MS + 3 * MINUTE_MS, 30 * MINUTE_MS)))  # type: ignore[arg-type]
    # temperature: last 45; least squares over minutes 0..3 of 40, 42, 44, 45 → slope 1.7 °C/min
    assert row["motor_temp_c"] == 45 and row["temp_trend_c_per_min"] == pytest.approx(1.7)
    # vibration aloft only (minutes 0..2): mean 0.4 g, rising 0.2 g/min
    assert row["vibration_mean_g"] == pytest.approx(0.4) and row["vibration_trend_g_per_min"] == pytest.approx(0.2)
    # drain: 90→88→85 over two minutes aloft = 2.5 %/min; the span to the landed sample does not count
    assert row["battery_drain_pct_per_flight_min"] == pytest.approx(2.5) and row["flight_hours"] == 1.03


def test_a_window_keeps_only_its_own_minutes_and_what_it_cannot_tell_is_nan() -> None:
    series = [sample(0, temp=90), sample(40, temp=41, altitude=0), sample(41, temp=40, altitude=0)]
    row = dict(zip(FEATURES, features_at(series, START_MS + 41 * MINUTE_MS, 30 * MINUTE_MS)))  # type: ignore[arg-type]
    assert row["temp_trend_c_per_min"] == pytest.approx(-1.0), "minute 0 is outside the 30-minute window"
    assert math.isnan(row["vibration_mean_g"]) and math.isnan(row["battery_drain_pct_per_flight_min"])
    assert features_at(series, START_MS + 100 * MINUTE_MS, 30 * MINUTE_MS) is None
    assert math.isnan(slope_per_minute([(0, 1.0)])) and math.isnan(drain_per_flight_minute([sample(0)]))


def test_rows_are_labelled_by_the_fault_within_the_horizon_and_the_running_life_is_cut_where_it_is_unknown() -> None:
    series = [sample(minute) for minute in range(0, 50, 5)] + [sample(50, fault=True)]
    series += [sample(minute) for minute in range(300, 400, 5)]  # after repair, still flying when the data ends
    assert [len(life) for life, _ in lives(series)] == [10, 20]
    rows = list(examples("d", series, START_MS + 400 * MINUTE_MS, 30 * MINUTE_MS, 10 * MINUTE_MS, 20 * MINUTE_MS))
    first_life = [(row.at_ms - START_MS) // MINUTE_MS for row in rows if row.at_ms < START_MS + 60 * MINUTE_MS]
    assert first_life == [0, 10, 20, 30, 40]
    assert [row.fails for row in rows[:5]] == [False, False, False, True, True], "the fault at 50 is within 20 min of 30"
    later = [(row.at_ms - START_MS) // MINUTE_MS for row in rows[5:]]
    assert later == [300, 310, 320, 330, 340, 350, 360, 370, 380] and not any(row.fails for row in rows[5:]), (
        "past 380 (the data's end less the horizon) whether the drone fails is not known yet"
    )


def rows_at(minutes: list[int], fails: list[bool]) -> list[Example]:
    return [Example("d", START_MS + m * MINUTE_MS, (float(m),) * len(FEATURES), f) for m, f in zip(minutes, fails)]


def test_the_split_is_by_time_and_no_training_label_reaches_into_the_test_range() -> None:
    minutes = list(range(0, 1000, 10))
    split = training.split_by_time(rows_at(minutes, [m % 40 == 0 for m in minutes]), 0.3, 60 * MINUTE_MS)
    assert split.cutoff_ms == START_MS + 693 * MINUTE_MS
    assert max(row.at_ms for row in split.train) + 60 * MINUTE_MS <= split.cutoff_ms <= min(row.at_ms for row in split.test)
    assert len(split.train) == 64 and len(split.test) == 30
    with pytest.raises(training.TrainingError, match="the test range holds 30 rows of which 0 precede a failure"):
        training.split_by_time(rows_at(minutes, [m < 500 and m % 40 == 0 for m in minutes]), 0.3, 60 * MINUTE_MS)


def test_a_model_that_does_not_beat_the_baseline_by_the_margin_is_refused() -> None:
    assert training.refusal({"roc_auc": 0.90}, {"roc_auc": 0.70}) is None
    assert "does not beat the temperature baseline's 0.890" in training.refusal({"roc_auc": 0.90}, {"roc_auc": 0.89})
    labels = np.array([False, False, True, True])
    # 3 of the 4 (failing, healthy) pairs are ranked right: ROC AUC 0.75
    assert training.best_threshold(labels, np.array([40.0, 45.0, 50.0, 55.0])) == 50.0
    assert training.measured(labels, np.array([0.1, 0.6, 0.7, 0.2]), 0.5) == {"precision": 0.5, "recall": 0.5, "roc_auc": 0.75}


def seeded_lake(root: Path, count: int = 60_000, **settings: float) -> None:
    """A seeded simulation written to the lake as the stream writes it: one file per drone, its rows in order."""
    fleet = FleetSettings(drones=10, seed=1, start_ms=START_MS, rate=1, time_scale=3, wear_scale=10, **settings)
    by_drone = defaultdict(list)
    for message in itertools.islice(fleet_reports(fleet), count):
        by_drone[message.drone_id].append(message)
    for index, (drone_id, messages) in enumerate(sorted(by_drone.items())):
        table = messages_to_table(messages, [index % 4] * len(messages), list(range(len(messages))), str(root))
        lake.write_table(str(root), lake.drone_partition(str(root), START), f"part-0000-{drone_id}.parquet", table)


def test_trained_on_a_seeded_simulations_lake_the_model_beats_the_temperature_baseline(tmp_path: Path) -> None:
    seeded_lake(tmp_path / "lake")
    model_file = tmp_path / "models" / "maintenance.joblib"
    code = train_maintenance.main([f"--input={tmp_path / 'lake'}", f"--output={model_file}"])
    assert code == 0
    report = json.loads((tmp_path / "models" / "maintenance.report.json").read_text())
    document = joblib.load(model_file)
    assert document["features"] == list(FEATURES) and document["horizon_minutes"] == 60
    assert document["metrics"] == report["metrics"] and document["training_range"] == report["training_range"]
    assert document["training_range"][1] < document["test_range"][0], "measured on a later range than it was fitted on"
    model, baseline = report["metrics"], report["baseline"]
    assert model["roc_auc"] >= baseline["roc_auc"] + training.MIN_AUC_GAIN and model["roc_auc"] > 0.9
    assert model["recall"] > baseline["recall"] and model["precision"] > 0.5
    assert report["failing_rows"]["test"] > 50 and report["drones"] == 10
    risks = training.failure_probabilities(
        document, [np.array([70.0, 0.5, 1.2, 0.05, 3.0, 5.0]), np.array([40.0, 0.0, 0.15, 0.0, 1.7, 0.1])]
    )
    assert risks[0] > 0.5 > risks[1], "a hot, shaking, draining drone late in its life is the one at risk"


def test_a_model_that_cannot_beat_the_baseline_is_not_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded_lake(tmp_path / "lake", count=40_000)
    monkeypatch.setattr(training, "MIN_AUC_GAIN", 1.0)  # no model beats a baseline by a whole ROC AUC
    model_file = tmp_path / "maintenance.joblib"
    assert train_maintenance.main([f"--input={tmp_path / 'lake'}", f"--output={model_file}"]) == train_maintenance.EXIT_REFUSED
    assert not model_file.exists() and "not saved" in capsys.readouterr().err
    assert json.loads((tmp_path / "maintenance.report.json").read_text())["refused"].endswith("not saved")


def test_a_history_too_short_to_fail_and_refused_lines_are_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = tmp_path / "fleet.jsonl"
    fleet = FleetSettings(drones=3, start_ms=START_MS, rate=1, time_scale=3)
    history.write_bytes(b"\n".join([encode_message(m) for m in itertools.islice(fleet_reports(fleet), 3000)] + [b"{oops"]))
    assert train_maintenance.main([f"--input={history}", f"--output={tmp_path / 'm.joblib'}"]) == train_maintenance.EXIT_USAGE
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("train_maintenance: the training range holds") and "Traceback" not in "".join(error)
    assert json.loads((tmp_path / "m.report.json").read_text())["invalid_lines"] == 1
    assert train_maintenance.main([f"--input={tmp_path / 'nothing'}"]) == train_maintenance.EXIT_USAGE
    assert capsys.readouterr().err.strip().endswith(f"no drone data under {tmp_path / 'nothing'}/drone")
