"""Predictive maintenance in the stream: the health state and episodes by hand, RunInference with a test model
in a TestPipeline, and the streaming job on Prism sending one maintenance alert per failing drone."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path

import apache_beam as beam
import joblib
import numpy as np
import pyarrow.dataset as ds
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import stream
from tests.support.kafka_io import produce_all, read_all
from tests.support.prism import stamped, streaming  # noqa: F401 — the fixtures, reused
from tests.support.streams import topics  # noqa: F401 — the fixtures, reused
from transforms import lake
from transforms.contract import DroneAlert, DroneMessage, MaintenanceAlert, decode_any_alert
from transforms.event_time import EventWindows
from transforms.kafka_settings import KafkaSettings
from transforms.lake_writer import WindowRows
from transforms.landed_offsets import BatchSpan
from transforms.maintenance import training
from transforms.maintenance.features import FEATURES, MINUTE_MS, Example, HealthSample
from transforms.maintenance.scoring import (
    MaintenanceAlerts,
    ScoreDrones,
    WriteRiskWindows,
    due,
    episode_step,
    remembered,
)
from transforms.messages import messages_to_table

START = datetime(2026, 11, 28, 16, 0, tzinfo=timezone.utc)
START_MS = int(START.timestamp() * 1000)
SHAKING = "drone-shaking"
STEADY = "drone-steady"


def health(minute: float, fault: bool = False) -> HealthSample:
    return HealthSample(f"m{minute}", START_MS + int(minute * MINUTE_MS), 80.0, 40.0, 0.2, 1.0, 50.0, fault)


def test_a_drones_health_state_keeps_its_window_in_time_order_and_a_fault_ends_it() -> None:
    recent: list[HealthSample] = []
    for minute in (0, 10, 5, 31):
        recent = remembered(recent, health(minute), 30 * MINUTE_MS)
    assert [sample.at_ms for sample in recent] == [START_MS + m * MINUTE_MS for m in (5, 10, 31)]
    assert remembered(recent, health(32, fault=True), 30 * MINUTE_MS) == []
    assert due(None, 0, 5) and not due(10, 14, 5) and due(10, 15, 5)


def test_one_alert_an_episode_however_long_the_risk_stays_or_wavers_and_a_new_one_after_it_falls() -> None:
    alerted, raised = False, []
    for risk in (0.1, 0.6, 0.9, 0.45, 0.7, 0.3, 0.2, 0.8):  # 0.45 wavers (above half the threshold), 0.2 ends it
        raise_now, alerted = episode_step(alerted, risk, 0.5)
        raised.append(raise_now)
    assert raised == [False, True, False, False, False, False, False, True]


def small_model(path: Path) -> str:
    """A small model of the real file's form: vibration past 0.8 g on average means failing soon."""
    rng = np.random.default_rng(0)
    rows = []
    for index in range(400):
        vibration = rng.uniform(0.1, 1.6)
        features = (40.0 + rng.normal(0, 3), 0.0, vibration, 0.0, 1.8, rng.uniform(0, 5))
        rows.append(Example("d", index, features, vibration > 0.8))
    report = {
        "features": list(FEATURES),
        "window_minutes": 30,
        "step_minutes": 5,
        "horizon_minutes": 60,
        "training_range": ["2026-11-01T00:00:00.000Z", "2026-11-02T00:00:00.000Z"],
        "metrics": {"precision": 1.0, "recall": 1.0, "roc_auc": 1.0},
    }
    joblib.dump(training.model_document(report, training.fit(rows)), path)
    return str(path)


def patrol(drone_id: str, minutes: int, shaking: bool, start: datetime = START) -> list[DroneMessage]:
    """A drone reporting every 30 s; a shaking one's vibration climbs from 0.2 to 1.6 g over the hour."""
    messages = []
    for step in range(minutes * 2):
        vibration = 0.2 + (1.4 * step / (minutes * 2) if shaking else 0.0)
        messages.append(
            DroneMessage(
                f"{drone_id}-{step}",
                drone_id,
                start + timedelta(seconds=30 * step),
                40.7,
                -73.9,
                battery_pct=90 - step * 0.5,
                altitude_m=50.0,
                speed_mps=10.0,
                motor_temp_c=45.0,
                vibration_g=vibration,
                flight_hours=2.0 + step / 120,
            )
        )
    return messages


def window_rows(messages: list[DroneMessage]) -> tuple[int, WindowRows]:
    table = messages_to_table(messages, [0] * len(messages), list(range(len(messages))), "/srv/lake")
    return 0, WindowRows(BatchSpan("drone-messages", 0, 0, len(messages), len(messages)), table)


def test_run_inference_scores_each_drone_every_step_and_alerts_the_shaking_one_once(tmp_path: Path) -> None:
    model_file = small_model(tmp_path / "model.joblib")
    shaking, steady = patrol(SHAKING, 60, shaking=True), patrol(STEADY, 60, shaking=False)
    batches = [window_rows(shaking[at : at + 20] + steady[at : at + 20]) for at in range(0, 120, 20)]
    with TestPipeline() as pipeline:
        scores = pipeline | beam.Create(batches) | ScoreDrones(model_file, 30 * MINUTE_MS, 5 * MINUTE_MS, EventWindows(5 * MINUTE_MS), 0)
        scores | "Risk" >> WriteRiskWindows(str(tmp_path / "lake"))
        alerts = scores | MaintenanceAlerts(0.5) | beam.MapTuple(lambda key, raw: (key, decode_any_alert(raw).drone_id))
        steps = scores | beam.Map(lambda score: (score.drone_id, (score.at_ms - START_MS) // MINUTE_MS))
        assert_that(alerts, equal_to([(SHAKING.encode(), SHAKING)]), label="OneAlert")
        assert_that(
            steps, equal_to([(drone, minute) for drone in (SHAKING, STEADY) for minute in range(0, 60, 5)]), label="EveryFiveMinutes"
        )
    risks = ds.dataset(tmp_path / "lake" / lake.DRONE_RISK, format="parquet", partitioning="hive").to_table()
    by_drone: dict[str, list[tuple[datetime, float]]] = {SHAKING: [], STEADY: []}
    for row in sorted(risks.to_pylist(), key=lambda row: row["timestamp"]):
        by_drone[row["drone_id"]].append((row["timestamp"], row["failure_risk"]))
    assert len(by_drone[SHAKING]) == len(by_drone[STEADY]) == 12 and risks.schema.field("failure_risk").type == "double"
    assert max(risk for _, risk in by_drone[STEADY]) < 0.5 < by_drone[SHAKING][-1][1]
    assert by_drone[SHAKING][0][1] < 0.5, "at first the shaking drone was steady too"


def maintenance_alerts(settings: KafkaSettings, topic: str) -> list[MaintenanceAlert]:
    decoded = [decode_any_alert(record.value) for record in read_all(settings, topic)]
    return [alert for alert in decoded if isinstance(alert, MaintenanceAlert)]


def risk_rows(lake_root: Path) -> list[dict]:
    folder = lake_root / lake.DRONE_RISK
    if not folder.exists():
        return []
    return ds.dataset(folder, format="parquet", partitioning="hive").to_table().to_pylist()


def scored_minutes(rows: list[dict], drone_id: str) -> list[float]:
    return sorted((row["timestamp"] - START).total_seconds() / 60 for row in rows if row["drone_id"] == drone_id)


def test_the_streaming_job_scores_with_the_model_and_sends_one_maintenance_alert_per_episode(
    streaming,
    broker: KafkaSettings,
    topics: dict[str, str],
    tmp_path: Path,  # noqa: F811
) -> None:
    model_file = small_model(tmp_path / "model.joblib")
    shaking, steady = patrol(SHAKING, 60, shaking=True), patrol(STEADY, 60, shaking=False)
    needing_human = dataclasses.replace(steady[3], message_id="human", violation_code=100, image_id="img-human")
    clock = dataclasses.replace(steady[0], message_id="clock", timestamp=START + timedelta(hours=3))
    produce_all(broker, topics["messages"], [stamped(message) for message in [*shaking, *steady, needing_human, clock]])
    job = streaming(f"--maintenance_model={model_file}", "--maintenance_threshold=0.5")
    lake_root = tmp_path / "lake"
    # Each drone's last scores are in the lake once its 16:5x windows closed; the clock's window stays open.
    job.wait_until(
        lambda: all(scored_minutes(risk_rows(lake_root), drone)[-1:] >= [55] for drone in (SHAKING, STEADY)),
        "both drones' last scores in the lake's drone_risk",
    )
    job.wait_until(lambda: maintenance_alerts(broker, topics["alerts"]), "a maintenance alert")
    rows = risk_rows(lake_root)
    sent = {message.message_id for message in (*shaking, *steady)}
    assert {row["message_id"] for row in rows} <= sent and len({row["message_id"] for row in rows}) == len(rows)
    for drone in (SHAKING, STEADY):
        minutes = scored_minutes(rows, drone)
        # One score a step of 5 minutes of the drone's time; bundles that reach the state out of order may
        # shift a step, never skip one.
        assert minutes[0] == 0 and len(minutes) >= 12 and max(b - a for a, b in zip(minutes, minutes[1:])) <= 5, minutes
    assert max(row["failure_risk"] for row in rows if row["drone_id"] == STEADY) < 0.5
    records = [decode_any_alert(record.value) for record in read_all(broker, topics["alerts"])]
    [alert] = [record for record in records if isinstance(record, MaintenanceAlert)]
    assert alert.drone_id == SHAKING and alert.failure_risk >= 0.5 == alert.threshold
    assert alert.message_id in {message.message_id for message in shaking}
    assert [record.message.message_id for record in records if isinstance(record, DroneAlert)] == ["human"]
    assert "scoring drones with" in job.tail() and job.process.poll() is None
    assert job.interrupt() == 130


def test_without_a_model_the_stream_says_so_once_and_builds_the_same_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = stream.parse_options([f"--maintenance_model={tmp_path / 'none.joblib'}", "--streaming", "--runner=DirectRunner"])
    assert stream.drone_job(missing).build.keywords == {"maintenance": None}
    assert capsys.readouterr().err.count("no maintenance model at") == 1
    (tmp_path / "bad.joblib").write_bytes(b"not a model")
    with pytest.raises(stream.modes.UsageError, match="cannot load"):
        stream.drone_job(stream.parse_options([f"--maintenance_model={tmp_path / 'bad.joblib'}", "--streaming"]))
