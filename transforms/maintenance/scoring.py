"""The stream's predictive maintenance: each drone's recent health scored by the model, risk to the lake,
one maintenance alert per drone per episode.

:class:`ScoreDrones` takes the validated lake rows (``(Kafka partition, WindowRows)``), keeps each drone's
last window of health in Beam state (:class:`TrackDroneHealth`), and every ``step`` of a drone's event time
computes the same features the model was trained on (``features.py``) and scores them with Beam's
``RunInference`` and its scikit-learn model handler. :class:`RaiseMaintenanceAlerts` turns the scores into
alerts: one when a drone's risk first reaches the threshold, none after until the risk has fallen below
:data:`RESET_SHARE` of it (the episode is over: the drone was repaired, or it was a passing scare).
:class:`WriteRiskWindows` writes the scores to the lake's ``drone_risk`` dataset, a file per event-time
window. None of this is in the graph without a model: the stream is then exactly as it was.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.coders import BooleanCoder, PickleCoder
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference
from apache_beam.ml.inference.sklearn_inference import ModelFileType, SklearnModelHandlerNumpy
from apache_beam.transforms import trigger
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.utils.timestamp import Duration

from transforms import lake
from transforms.contract import MaintenanceAlert, encode_maintenance_alert, maintenance_alert_id
from transforms.event_time import EventWindows, to_timestamp
from transforms.lake_writer import WindowRows
from transforms.maintenance.features import HealthSample, features_of
from transforms.maintenance.training import failure_probabilities
from transforms.metrics import counter

RESET_SHARE = 0.5
HEALTH_COLUMNS = ["message_id", "drone_id", "timestamp", "battery_pct", "motor_temp_c", "vibration_g", "flight_hours", "altitude_m", "kind"]


@dataclass(frozen=True, slots=True)
class RiskScore:
    """A drone's failure risk, scored on one of its messages (``at_ms`` its event time)."""

    drone_id: str
    message_id: str
    at_ms: int
    failure_risk: float


def health_samples(partition_rows: tuple[int, WindowRows]) -> Iterator[tuple[str, HealthSample]]:
    """The lake rows of one batch as ``(drone id, sample)``; readings a message lacked as NaN."""
    table = partition_rows[1].table.select(HEALTH_COLUMNS)
    nan = float("nan")
    for row in table.to_pylist():
        yield (
            row["drone_id"],
            HealthSample(
                row["message_id"],
                int(row["timestamp"].timestamp() * 1000),
                *(
                    nan if row[name] is None else row[name]
                    for name in ("battery_pct", "motor_temp_c", "vibration_g", "flight_hours", "altitude_m")
                ),
                fault=row["kind"] == "fault",
            ),
        )


def remembered(recent: list[HealthSample], sample: HealthSample, window_ms: int) -> list[HealthSample]:
    """``recent`` with ``sample`` in its time order and what fell out of the window before the newest dropped.

    A fault ends the drone's life: nothing before it says anything about the overhauled drone that comes back.
    """
    if sample.fault:
        return []
    times = [kept.at_ms for kept in recent]
    merged = list(recent)
    merged.insert(bisect.bisect_right(times, sample.at_ms), sample)
    newest = merged[-1].at_ms
    return [kept for kept in merged if kept.at_ms > newest - window_ms]


def due(last_scored_ms: int | None, at_ms: int, step_ms: int) -> bool:
    """Whether a drone's message at ``at_ms`` is scored: the first one, then one a ``step`` of event time."""
    return last_scored_ms is None or at_ms - last_scored_ms >= step_ms


class TrackDroneHealth(beam.DoFn):
    """``(drone id, sample)`` → ``((drone id, message id, ms), features)`` every ``step_ms`` of the drone's time.

    The drone's last ``window_ms`` of samples live in Beam state, per key, so every worker and every restart
    from a checkpoint sees the same history; the message that completes a step is the one scored, and its
    features leave stamped with its event time (never earlier than the batch it came in, which is stamped
    at its oldest message), for the event-time windows the scores are written in.
    """

    RECENT = ReadModifyWriteStateSpec("recent", PickleCoder())
    LAST_SCORED = ReadModifyWriteStateSpec("last_scored_ms", PickleCoder())

    def __init__(self, window_ms: int, step_ms: int):
        self._window_ms = window_ms
        self._step_ms = step_ms

    def process(
        self,
        keyed: tuple[str, HealthSample],
        recent_state: Any = beam.DoFn.StateParam(RECENT),
        scored_state: Any = beam.DoFn.StateParam(LAST_SCORED),
    ) -> Iterator[beam.window.TimestampedValue]:
        drone_id, sample = keyed
        recent = remembered(recent_state.read() or [], sample, self._window_ms)
        recent_state.write(recent)
        if sample.fault:
            scored_state.clear()
            return
        last_scored = scored_state.read()
        if recent and recent[-1] is sample and due(last_scored, sample.at_ms, self._step_ms):
            scored_state.write(sample.at_ms)
            scored = ((drone_id, sample.message_id, sample.at_ms), np.array(features_of(recent), dtype=float))
            yield beam.window.TimestampedValue(scored, to_timestamp(sample.at_ms))


def risk_of(keyed: tuple[tuple[str, str, int], PredictionResult]) -> RiskScore:
    (drone_id, message_id, at_ms), prediction = keyed
    return RiskScore(drone_id, message_id, at_ms, round(float(prediction.inference), 4))


def episode_step(alerted: bool, risk: float, threshold: float) -> tuple[bool, bool]:
    """``(raise an alert now, in an episode after this score)`` for a drone ``alerted`` already or not.

    An episode begins when the risk reaches the threshold and ends only once it has fallen below
    ``RESET_SHARE × threshold``: a risk that wavers around the threshold raises one alert, not one a score.
    """
    if risk >= threshold:
        return not alerted, True
    if risk < threshold * RESET_SHARE:
        return False, False
    return False, alerted


class RaiseMaintenanceAlerts(beam.DoFn):
    """``(drone id, RiskScore)`` → ``(drone id, maintenance alert bytes)`` once per drone per episode."""

    ALERTED = ReadModifyWriteStateSpec("alerted", BooleanCoder())

    def __init__(self, threshold: float):
        self._threshold = threshold
        self._raised = counter("maintenance_alerts")

    def process(self, keyed: tuple[str, RiskScore], alerted_state: Any = beam.DoFn.StateParam(ALERTED)) -> Iterator[tuple[bytes, bytes]]:
        drone_id, score = keyed
        raise_now, alerted = episode_step(bool(alerted_state.read()), score.failure_risk, self._threshold)
        alerted_state.write(alerted)
        if raise_now:
            self._raised.inc()
            alert = MaintenanceAlert(
                maintenance_alert_id(score.message_id),
                datetime.now(timezone.utc),
                drone_id,
                score.message_id,
                datetime.fromtimestamp(score.at_ms / 1000, tz=timezone.utc),
                score.failure_risk,
                self._threshold,
            )
            yield drone_id.encode(), encode_maintenance_alert(alert)


def risk_table(scores: Iterable[RiskScore]) -> pa.Table:
    ordered = sorted(scores, key=lambda score: (score.at_ms, score.drone_id))
    return pa.Table.from_pydict(
        {
            "message_id": [score.message_id for score in ordered],
            "drone_id": [score.drone_id for score in ordered],
            "timestamp": [score.at_ms for score in ordered],
            "failure_risk": [score.failure_risk for score in ordered],
        },
        schema=lake.RISK_SCHEMA,
    )


class WriteRiskFiles(beam.DoFn):
    """One Parquet file per window and pane of risk scores, named by the message ids it holds (a rerun rewrites it)."""

    def __init__(self, root: str):
        self._root = root

    def process(
        self, keyed: tuple[str, Iterable[RiskScore]], window: Any = beam.DoFn.WindowParam, pane: Any = beam.DoFn.PaneInfoParam
    ) -> Iterator[int]:
        table = risk_table(keyed[1])
        window_start = datetime.fromtimestamp(window.start.micros / 1e6, tz=timezone.utc)
        name = lake.risk_file_name(window_start, pane.index, lake.content_digest(table.column("message_id").to_pylist()))
        lake.write_table(self._root, lake.drone_partition(self._root, window_start, lake.DRONE_RISK), name, table)
        yield table.num_rows


class WriteRiskWindows(beam.PTransform):
    """RiskScores, in the event-time windows :class:`ScoreDrones` put them in → the lake's ``drone_risk``
    dataset, a file per window and pane like the drone files."""

    def __init__(self, root: str):
        super().__init__()
        self._root = root

    def expand(self, scores: beam.PCollection) -> beam.PCollection:
        return (
            scores
            | "OneKey" >> beam.Map(lambda score: ("risk", score))
            | "OneFilePerWindow" >> beam.GroupByKey()
            | "WriteParquet" >> beam.ParDo(WriteRiskFiles(self._root))
        )


def model_handler(model_file: str) -> KeyedModelHandler:
    """Beam's scikit-learn handler for the model file, asked for failure probabilities, keyed by what was scored."""
    return KeyedModelHandler(
        SklearnModelHandlerNumpy(model_uri=model_file, model_file_type=ModelFileType.JOBLIB, inference_fn=failure_probabilities)
    )


class ScoreDrones(beam.PTransform):
    """Lake rows → RiskScores: per-drone health state, the trained features, RunInference.

    The features are windowed by event time (the lake's windows, trigger and lateness) before RunInference:
    its batching then keeps each score in its message's window, which the lake's risk files follow. (In the
    global window it would stamp every batch at the end of time, and a score stamped back to its message
    afterwards would be behind the watermark: dropped as too late.)
    """

    def __init__(self, model_file: str, window_ms: int, step_ms: int, windows: EventWindows, allowed_lateness_s: int):
        super().__init__()
        self._model_file = model_file
        self._window_ms = window_ms
        self._step_ms = step_ms
        self._windows = windows
        self._allowed_lateness_s = allowed_lateness_s

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        return (
            rows
            | "HealthSamples" >> beam.FlatMap(health_samples)
            | "TrackDroneHealth" >> beam.ParDo(TrackDroneHealth(self._window_ms, self._step_ms))
            | "EventTimeWindows"
            >> beam.WindowInto(
                self._windows.window_fn(),
                trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                allowed_lateness=Duration(seconds=self._allowed_lateness_s),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
            )
            | "RunInference" >> RunInference(model_handler(self._model_file))
            | "Risk" >> beam.Map(risk_of)
        )


class MaintenanceAlerts(beam.PTransform):
    """RiskScores → ``(drone id, alert)`` records for the alerts topic, one per drone per episode.

    Back in the global window first: Beam keeps state per key *and window*, and an episode outlasts any
    event-time window.
    """

    def __init__(self, threshold: float):
        super().__init__()
        self._threshold = threshold

    def expand(self, scores: beam.PCollection) -> beam.PCollection:
        return (
            scores
            | "GlobalWindow" >> beam.WindowInto(beam.window.GlobalWindows())
            | "ByDrone" >> beam.Map(lambda score: (score.drone_id, score))
            | "Episodes" >> beam.ParDo(RaiseMaintenanceAlerts(self._threshold))
        )
