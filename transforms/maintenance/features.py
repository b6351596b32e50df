"""What a drone's recent health says about its wear: the features, computed alike for training and for scoring.

Pure functions over a drone's :class:`HealthSample` series, so the training pipeline and the stream
cannot drift apart: both call :func:`features_at` on the samples of one sliding window. A feature
is a trend or a rate over the window, not only the last reading, because wear shows in how the
readings move (motors warming, the battery draining faster per minute aloft, vibration rising)
more than in any one of them: a motor is hot after a fast leg whatever its wear. A feature the
window cannot give (no sample aloft, fewer than two points for a trend) is NaN, which the
classifier (a histogram gradient-boosting one) takes as missing.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from transforms.contract import DroneMessage

NAN = float("nan")
MINUTE_MS = 60_000
DEFAULT_WINDOW_MINUTES = 30
DEFAULT_STEP_MINUTES = 5
DEFAULT_HORIZON_MINUTES = 60

FEATURES = (
    "motor_temp_c",
    "temp_trend_c_per_min",
    "vibration_mean_g",
    "vibration_trend_g_per_min",
    "battery_drain_pct_per_flight_min",
    "flight_hours",
)
# The baseline a model must beat: the motor's last temperature alone, as a threshold would read it.
BASELINE_FEATURE = "motor_temp_c"


@dataclass(frozen=True, slots=True)
class HealthSample:
    """One message's health readings; ``at_ms`` is its event time. Readings a message lacks are NaN."""

    message_id: str
    at_ms: int
    battery_pct: float
    motor_temp_c: float
    vibration_g: float
    flight_hours: float
    altitude_m: float
    fault: bool = False

    @property
    def aloft(self) -> bool:
        return self.altitude_m > 0


def sample_of(message: DroneMessage) -> HealthSample:
    """The health a message reports, absent readings as NaN."""
    return HealthSample(
        message.message_id,
        message.event_ms,
        _or_nan(message.battery_pct),
        _or_nan(message.motor_temp_c),
        _or_nan(message.vibration_g),
        _or_nan(message.flight_hours),
        _or_nan(message.altitude_m),
        message.is_fault,
    )


def _or_nan(value: float | None) -> float:
    return NAN if value is None else value


def in_window(samples: Sequence[HealthSample], at_ms: int, window_ms: int) -> list[HealthSample]:
    """The samples of ``(at_ms - window_ms, at_ms]``, in time order."""
    return sorted((s for s in samples if at_ms - window_ms < s.at_ms <= at_ms), key=lambda s: s.at_ms)


def slope_per_minute(points: Sequence[tuple[int, float]]) -> float:
    """The least-squares slope of ``(ms, value)`` points, per minute; NaN with fewer than two distinct times."""
    finite = [(ms / MINUTE_MS, value) for ms, value in points if math.isfinite(value)]
    if len({minute for minute, _ in finite}) < 2:
        return NAN
    mean_x = sum(minute for minute, _ in finite) / len(finite)
    mean_y = sum(value for _, value in finite) / len(finite)
    covariance = sum((minute - mean_x) * (value - mean_y) for minute, value in finite)
    variance = sum((minute - mean_x) ** 2 for minute, _ in finite)
    return covariance / variance


def drain_per_flight_minute(window: Sequence[HealthSample]) -> float:
    """Battery percent lost per minute aloft: between consecutive samples both aloft, drops over minutes.

    Only spans flown from end to end count, so charging on the ground and take-offs do not dilute it.
    """
    dropped = minutes = 0.0
    for before, after in zip(window, window[1:]):
        if before.aloft and after.aloft and math.isfinite(before.battery_pct) and math.isfinite(after.battery_pct):
            dropped += max(0.0, before.battery_pct - after.battery_pct)
            minutes += (after.at_ms - before.at_ms) / MINUTE_MS
    return dropped / minutes if minutes > 0 else NAN


def mean(values: Iterable[float]) -> float:
    finite = [value for value in values if math.isfinite(value)]
    return sum(finite) / len(finite) if finite else NAN


def features_of(window: Sequence[HealthSample]) -> tuple[float, ...]:
    """:data:`FEATURES` of one window's samples (in time order, at least one)."""
    last = window[-1]
    aloft = [sample for sample in window if sample.aloft]
    return (
        last.motor_temp_c,
        slope_per_minute([(sample.at_ms, sample.motor_temp_c) for sample in window]),
        mean(sample.vibration_g for sample in aloft),
        slope_per_minute([(sample.at_ms, sample.vibration_g) for sample in aloft]),
        drain_per_flight_minute(window),
        last.flight_hours,
    )


def features_at(samples: Sequence[HealthSample], at_ms: int, window_ms: int) -> tuple[float, ...] | None:
    """:data:`FEATURES` at ``at_ms`` from the samples of the window before it; None when it holds none."""
    window = in_window(samples, at_ms, window_ms)
    return features_of(window) if window else None


def lives(samples: Iterable[HealthSample]) -> Iterator[tuple[list[HealthSample], int | None]]:
    """A drone's series cut at its faults: each life's samples before its fault, and the fault's time (None for
    the life still running at the end of the data)."""
    life: list[HealthSample] = []
    for sample in sorted(samples, key=lambda s: s.at_ms):
        if sample.fault:
            yield life, sample.at_ms
            life = []
        else:
            life.append(sample)
    if life:
        yield life, None


@dataclass(frozen=True, slots=True)
class Example:
    """One training row: a drone at a moment, its features, and whether it failed within the horizon after."""

    drone_id: str
    at_ms: int
    features: tuple[float, ...]
    fails: bool


def examples(
    drone_id: str, samples: Iterable[HealthSample], data_end_ms: int, window_ms: int, step_ms: int, horizon_ms: int
) -> Iterator[Example]:
    """Labelled rows every ``step_ms`` through each life of a drone.

    A row at ``t`` is labelled by whether the life's fault comes within ``(t, t + horizon]``. Rows of the
    life still running are kept only up to ``data_end_ms - horizon``: past that, whether the drone fails
    within the horizon is not yet known, and calling it a "no" would teach the model a lie.
    """
    for life, fault_ms in lives(samples):
        if not life:
            continue
        last_ms = life[-1].at_ms if fault_ms is not None else min(life[-1].at_ms, data_end_ms - horizon_ms)
        times = [sample.at_ms for sample in life]  # sorted: a window is a slice, found by bisection
        at_ms = life[0].at_ms
        while at_ms <= last_ms:
            window = life[bisect.bisect_right(times, at_ms - window_ms) : bisect.bisect_right(times, at_ms)]
            if window:
                fails = fault_ms is not None and fault_ms - at_ms <= horizon_ms
                yield Example(drone_id, at_ms, features_of(window), fails)
            at_ms += step_ms
