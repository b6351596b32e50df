"""A deterministic fleet of patrol drones over New York's five boroughs.

Pure: no clock, no network. The same seed, start time and settings give the same bytes,
message after message, so tests and benchmarks can replay a fleet exactly. Each drone
patrols one borough, flying between waypoints inside land boxes at a bounded speed,
draining its battery as it flies and going back to its base to recharge when low.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator

import orjson

from transforms.contract import HUMAN_REVIEW_CODE
from transforms.violation_codes import violation_codes

# Boxes that lie on land, per borough: (south, west, north, east) in degrees.
BOROUGH_BOXES: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "Manhattan": ((40.708, -74.012, 40.757, -73.975), (40.757, -73.995, 40.800, -73.945), (40.800, -73.960, 40.860, -73.925)),
    "Brooklyn": ((40.585, -74.030, 40.640, -73.940), (40.640, -74.000, 40.695, -73.900), (40.620, -73.940, 40.680, -73.860)),
    "Queens": ((40.680, -73.860, 40.760, -73.740), (40.700, -73.920, 40.760, -73.860), (40.600, -73.790, 40.680, -73.740)),
    "Bronx": ((40.810, -73.920, 40.870, -73.840), (40.840, -73.900, 40.900, -73.830)),
    "Staten Island": ((40.520, -74.230, 40.600, -74.100), (40.560, -74.180, 40.640, -74.070)),
}
BOROUGHS = tuple(BOROUGH_BOXES)
METRES_PER_DEGREE_LAT = 111_320.0
CRUISE_SPEED_MPS = (8.0, 15.0)
MAX_SPEED_MPS = 16.0
PATROL_ALTITUDE_M = (35.0, 60.0)
DRAIN_PCT_PER_S = 0.03
CHARGE_PCT_PER_S = 0.5
LOW_BATTERY_PCT = 15.0
FULL_BATTERY_PCT = 95.0
AMBIENT_C = 12.0


@dataclass(frozen=True)
class FleetSettings:
    drones: int = 50
    seed: int = 1
    start_ms: int = 0
    rate: float = 100.0
    violation_ratio: float = 0.05
    human_ratio: float = 0.01


@dataclass
class Drone:
    """One drone's state: where it is, where it is going, and how its battery and motors fare."""

    index: int
    drone_id: str
    borough: str
    base: tuple[float, float]
    latitude: float
    longitude: float
    target: tuple[float, float]
    speed_mps: float
    altitude_m: float
    battery_pct: float
    motor_temp_c: float
    charging: bool = False
    sequence: int = 0
    last_ms: int | None = None
    rng: random.Random = field(repr=False, default_factory=random.Random)


def random_point(borough: str, rng: random.Random) -> tuple[float, float]:
    south, west, north, east = rng.choice(BOROUGH_BOXES[borough])
    return rng.uniform(south, north), rng.uniform(west, east)


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Equirectangular distance: exact enough across a city."""
    mean_lat = math.radians((a[0] + b[0]) / 2)
    dy = (b[0] - a[0]) * METRES_PER_DEGREE_LAT
    dx = (b[1] - a[1]) * METRES_PER_DEGREE_LAT * math.cos(mean_lat)
    return math.hypot(dx, dy)


def new_drone(index: int, settings: FleetSettings) -> Drone:
    rng = random.Random(f"{settings.seed}:{index}")
    borough = BOROUGHS[index % len(BOROUGHS)]
    base = random_point(borough, rng)
    return Drone(
        index=index,
        drone_id=f"drone-{index:04d}",
        borough=borough,
        base=base,
        latitude=base[0],
        longitude=base[1],
        target=random_point(borough, rng),
        speed_mps=rng.uniform(*CRUISE_SPEED_MPS),
        altitude_m=rng.uniform(*PATROL_ALTITUDE_M),
        battery_pct=rng.uniform(60.0, 100.0),
        motor_temp_c=AMBIENT_C + 15.0,
        rng=rng,
    )


def advance(drone: Drone, seconds: float) -> None:
    """Move the drone along its path for ``seconds``; drain or charge its battery."""
    if drone.charging:
        drone.battery_pct = min(100.0, drone.battery_pct + CHARGE_PCT_PER_S * seconds)
        drone.motor_temp_c += (AMBIENT_C - drone.motor_temp_c) * min(1.0, seconds / 120)
        if drone.battery_pct >= FULL_BATTERY_PCT:
            drone.charging = False
            drone.target = random_point(drone.borough, drone.rng)
            drone.altitude_m = drone.rng.uniform(*PATROL_ALTITUDE_M)
        return
    drone.battery_pct = max(0.0, drone.battery_pct - DRAIN_PCT_PER_S * seconds)
    drone.motor_temp_c += (AMBIENT_C + 25.0 + drone.speed_mps - drone.motor_temp_c) * min(1.0, seconds / 60)
    if drone.battery_pct < LOW_BATTERY_PCT:
        drone.target = drone.base
    position = (drone.latitude, drone.longitude)
    remaining = distance_m(position, drone.target)
    step = drone.speed_mps * seconds
    if step >= remaining:
        drone.latitude, drone.longitude = drone.target
        if drone.target == drone.base and drone.battery_pct < LOW_BATTERY_PCT:
            drone.charging, drone.altitude_m = True, 0.0
        else:
            drone.target = random_point(drone.borough, drone.rng)
            drone.speed_mps = drone.rng.uniform(*CRUISE_SPEED_MPS)
        return
    share = step / remaining
    drone.latitude += (drone.target[0] - drone.latitude) * share
    drone.longitude += (drone.target[1] - drone.longitude) * share


class TimestampFormatter:
    """RFC 3339 with milliseconds for increasing epoch milliseconds, formatting each second once."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, epoch_ms: int) -> str:
        second, millis = divmod(epoch_ms, 1000)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{millis:03d}Z"


def violation_sampler(rng: random.Random) -> Iterator[int]:
    """DOF codes drawn by their frequency among the city's tickets, in blocks for speed."""
    table = violation_codes()
    codes, weights = list(table), [entry.weight for entry in table.values()]
    while True:
        yield from rng.choices(codes, weights, k=1024)


def fleet_messages(settings: FleetSettings) -> Iterator[tuple[bytes, bytes, int | None]]:
    """``(key, value, violation code)`` for each message, forever, drones in turn.

    Message ``n`` is stamped ``start + n / rate`` (1 ms apart at rate 0), so the event
    clock is simulated and the output independent of how fast it is consumed.
    """
    drones = [new_drone(index, settings) for index in range(settings.drones)]
    keys = [drone.drone_id.encode() for drone in drones]
    chance = random.Random(f"{settings.seed}:events")
    codes = violation_sampler(random.Random(f"{settings.seed}:codes"))
    stamp = TimestampFormatter()
    step_ms = 1000.0 / settings.rate if settings.rate > 0 else 1.0
    number = 0
    while True:
        drone = drones[number % len(drones)]
        now_ms = settings.start_ms + int(number * step_ms)
        if drone.last_ms is not None:
            advance(drone, (now_ms - drone.last_ms) / 1000)
        drone.last_ms = now_ms
        drone.sequence += 1
        message_id = f"s{settings.seed}-{drone.drone_id}-{drone.sequence}"
        fields = {
            "message_id": message_id,
            "drone_id": drone.drone_id,
            "timestamp": stamp(now_ms),
            "latitude": round(drone.latitude, 6),
            "longitude": round(drone.longitude, 6),
            "battery_pct": round(drone.battery_pct, 2),
            "altitude_m": round(drone.altitude_m, 1),
            "speed_mps": 0.0 if drone.charging else round(drone.speed_mps, 2),
            "motor_temp_c": round(drone.motor_temp_c, 1),
        }
        code = None
        if not drone.charging and chance.random() < settings.violation_ratio:
            code = HUMAN_REVIEW_CODE if chance.random() < settings.human_ratio else next(codes)
            fields["violation_code"] = code
            fields["image_id"] = f"img-{message_id}"
        yield keys[drone.index], orjson.dumps(fields), code
        number += 1
