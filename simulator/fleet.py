"""A deterministic fleet of patrol drones over New York's five boroughs.

Pure: no wall clock, no network. The same seed, start time and settings give the same
messages, byte for byte, so tests and benchmarks can replay a fleet exactly. Each drone
has a beat, one land box of its borough, and a base inside it; it flies between random
waypoints of that box at a bounded speed, so every position it reports lies on land and
follows from the previous one. It drains its battery as it flies, turns back while it still
has the charge to get home, lands, recharges and takes off again.

Each drone also wears out, which nothing it sends states: its hidden wear grows with every
second of flight at the drone's own rate, and heats its motors, drains its battery faster and
shakes it (``vibration_g``), slightly at first and steeply near the end. When the wear crosses
the threshold drawn for this life of the drone, it sends a last ``fault`` message and falls
silent for :data:`REPAIR_S`, then comes back from its base overhauled (wear and
``flight_hours`` at zero, a new threshold). The rates and thresholds come from the seed, so the
same seed fails the same drones at the same moments: what predictive maintenance learns from.
"""

from __future__ import annotations

import enum
import math
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator

from transforms.contract import FAULT, HUMAN_REVIEW_CODE, DroneMessage, encode_message
from transforms.violation_codes import violation_codes

Box = tuple[float, float, float, float]  # south, west, north, east, in degrees

# Land boxes per borough, found once against NYC's borough boundaries clipped to the
# shoreline (the "nybb" shapes): each lies at least 150 m inside its borough, clear of
# water, and JFK and LaGuardia airports are left out.
BOROUGH_BOXES: dict[str, tuple[Box, ...]] = {
    "Manhattan": (
        (40.713, -74.005, 40.752, -73.978),
        (40.775, -73.969, 40.804, -73.946),
        (40.753, -73.989, 40.774, -73.966),
        (40.793, -73.945, 40.840, -73.938),
    ),
    "Brooklyn": (
        (40.606, -73.995, 40.697, -73.922),
        (40.636, -73.921, 40.679, -73.894),
        (40.608, -74.029, 40.641, -73.996),
        (40.586, -73.987, 40.605, -73.936),
    ),
    "Queens": (
        (40.674, -73.858, 40.753, -73.733),
        (40.710, -73.918, 40.759, -73.859),
        (40.754, -73.836, 40.785, -73.777),
        (40.732, -73.936, 40.765, -73.919),
    ),
    "Bronx": (
        (40.820, -73.903, 40.897, -73.846),
        (40.842, -73.845, 40.887, -73.822),
        (40.808, -73.925, 40.845, -73.904),
        (40.816, -73.835, 40.841, -73.820),
    ),
    "Staten Island": (
        (40.557, -74.193, 40.634, -74.106),
        (40.583, -74.105, 40.642, -74.076),
        (40.527, -74.229, 40.552, -74.170),
        (40.517, -74.237, 40.526, -74.192),
    ),
}
BOROUGHS = tuple(BOROUGH_BOXES)

METRES_PER_DEGREE_LAT = 111_320.0
CRUISE_SPEED_MPS = (8.0, 15.0)
MAX_SPEED_MPS = CRUISE_SPEED_MPS[1]
CLIMB_RATE_MPS = 3.0
PATROL_ALTITUDE_M = (35.0, 60.0)
HOVER_DRAIN_PCT_PER_S = 0.02  # ≈ 80 minutes hovering on a full battery
DRAIN_PCT_PER_MPS_S = 0.001  # flying faster costs more: ≈ 55 minutes at 10 m/s
CHARGE_PCT_PER_S = 0.08  # ≈ 17 minutes from 15 % to full
TAKE_OFF_PCT = 95.0
LANDING_RESERVE_PCT = 8.0  # still in hand after the way home and the landing
AMBIENT_C = 12.0
MOTOR_WARM_C_PER_MPS = 1.5  # a motor settles this much above ambient per m/s of cruise
MOTOR_HOVER_WARMTH_C = 15.0
MOTOR_TIME_CONSTANT_S = 60.0
# Wear, in units of a typical life: a drone gains WEAR_PER_FLIGHT_HOUR of it per hour in the air (its own rate
# from this range, times FleetSettings.wear_scale) and fails past a threshold drawn for each life, so a life
# lasts about 21 to 57 flight hours at wear_scale 1. Its effects grow with a high power of the wear: hardly
# visible for most of a life, steep in its last hours.
WEAR_PER_FLIGHT_HOUR = (0.02, 0.04)
FAILURE_THRESHOLD = (0.85, 1.15)
WEAR_HEAT_C = 18.0  # motors settle this much hotter at wear 1
WEAR_DRAIN = 0.5  # and the battery drains this share faster
WEAR_HEAT_POWER = 6
VIBRATION_BASE_G = 0.15
VIBRATION_WEAR_G = 1.2
VIBRATION_POWER = 8
VIBRATION_NOISE_G = 0.04
REPAIR_S = 4 * 3600.0  # silent this long after a fault, then back from base
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MESSAGE_ID_NAMESPACE = uuid.UUID("0b8f5c1e-7a64-4d1e-9c2b-3f5e8a9d6c47")


class Phase(enum.Enum):
    PATROL = "patrol"
    RETURNING = "returning"
    CHARGING = "charging"


@dataclass(frozen=True)
class FleetSettings:
    """What shapes a fleet's traffic; ``start_ms`` is the first event time in epoch milliseconds."""

    drones: int = 50
    seed: int = 1
    start_ms: int = 0
    rate: float = 100.0
    violation_ratio: float = 0.05
    human_ratio: float = 0.01
    time_scale: float = 1.0  # simulated seconds per second of traffic: weeks of patrols in minutes
    wear_scale: float = 1.0  # how much faster than WEAR_PER_FLIGHT_HOUR drones wear: failures within a short run


@dataclass(slots=True)
class Drone:
    """One drone's state: where it is and is going, and how its battery and motors fare."""

    drone_id: str
    borough: str
    beat: Box
    base: tuple[float, float]
    latitude: float
    longitude: float
    target: tuple[float, float]
    cruise_mps: float
    patrol_altitude_m: float
    altitude_m: float
    battery_pct: float
    motor_temp_c: float
    rng: random.Random
    wear_rng: random.Random  # its own stream, so wearing out leaves the patrol's waypoints as they were
    wear_per_s: float
    failure_threshold: float
    wear: float = 0.0
    flight_s: float = 0.0  # since the last maintenance
    down_until_ms: int | None = None  # silent after a fault until then (an offset from the fleet's start)
    phase: Phase = Phase.PATROL
    ground_speed_mps: float = 0.0
    sequence: int = 0
    last_ms: int | None = None


def random_point(box: Box, rng: random.Random) -> tuple[float, float]:
    south, west, north, east = box
    return rng.uniform(south, north), rng.uniform(west, east)


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Equirectangular distance: exact enough across a city."""
    mean_lat = math.radians((a[0] + b[0]) / 2)
    dy = (b[0] - a[0]) * METRES_PER_DEGREE_LAT
    dx = (b[1] - a[1]) * METRES_PER_DEGREE_LAT * math.cos(mean_lat)
    return math.hypot(dx, dy)


def beat_of(index: int) -> tuple[str, Box]:
    """Drones are dealt to the boroughs in turn, then to each borough's boxes in turn."""
    borough = BOROUGHS[index % len(BOROUGHS)]
    boxes = BOROUGH_BOXES[borough]
    return borough, boxes[(index // len(BOROUGHS)) % len(boxes)]


def new_drone(index: int, settings: FleetSettings) -> Drone:
    """A drone on the ground at its base, about to take off on patrol."""
    rng = random.Random(f"{settings.seed}:{index}")
    wear_rng = random.Random(f"{settings.seed}:{index}:wear")
    borough, beat = beat_of(index)
    base = random_point(beat, rng)
    return Drone(
        drone_id=f"drone-{index:04d}",
        borough=borough,
        beat=beat,
        base=base,
        latitude=base[0],
        longitude=base[1],
        target=random_point(beat, rng),
        cruise_mps=rng.uniform(*CRUISE_SPEED_MPS),
        patrol_altitude_m=rng.uniform(*PATROL_ALTITUDE_M),
        altitude_m=0.0,
        battery_pct=rng.uniform(60.0, 100.0),
        motor_temp_c=AMBIENT_C,
        rng=rng,
        wear_rng=wear_rng,
        wear_per_s=wear_rng.uniform(*WEAR_PER_FLIGHT_HOUR) * settings.wear_scale / 3600,
        failure_threshold=wear_rng.uniform(*FAILURE_THRESHOLD),
    )


def drain_pct_per_s(speed_mps: float, wear: float = 0.0) -> float:
    """A worn drone drains faster at the same speed: the battery drain per minute of flight shows wear."""
    return (HOVER_DRAIN_PCT_PER_S + DRAIN_PCT_PER_MPS_S * speed_mps) * (1.0 + WEAR_DRAIN * wear**WEAR_HEAT_POWER)


def charge_to_get_home(drone: Drone) -> float:
    """Battery the way back to base and the landing take, with the reserve on top."""
    seconds_home = distance_m((drone.latitude, drone.longitude), drone.base) / drone.cruise_mps
    seconds_down = drone.altitude_m / CLIMB_RATE_MPS
    return (seconds_home + seconds_down) * drain_pct_per_s(drone.cruise_mps, drone.wear) + LANDING_RESERVE_PCT


def advance(drone: Drone, seconds: float) -> None:
    """Let ``seconds`` pass for the drone: it charges on the ground, or flies its path."""
    if seconds <= 0:
        return
    if drone.phase is Phase.CHARGING:
        charge(drone, seconds)
    else:
        fly(drone, seconds)


def charge(drone: Drone, seconds: float) -> None:
    drone.battery_pct = min(100.0, drone.battery_pct + CHARGE_PCT_PER_S * seconds)
    drone.motor_temp_c = settle(drone.motor_temp_c, AMBIENT_C, seconds)
    drone.ground_speed_mps = 0.0
    if drone.battery_pct >= TAKE_OFF_PCT:
        drone.phase = Phase.PATROL
        next_leg(drone)


def fly(drone: Drone, seconds: float) -> None:
    """Climb or descend, move toward the target, and decide where to go next; wear grows with the time aloft."""
    drone.battery_pct = max(0.0, drone.battery_pct - drain_pct_per_s(drone.cruise_mps, drone.wear) * seconds)
    drone.flight_s += seconds
    drone.wear += drone.wear_per_s * seconds
    load_c = AMBIENT_C + MOTOR_HOVER_WARMTH_C + MOTOR_WARM_C_PER_MPS * drone.cruise_mps
    load_c += WEAR_HEAT_C * drone.wear**WEAR_HEAT_POWER
    drone.motor_temp_c = settle(drone.motor_temp_c, load_c, seconds)
    if drone.phase is Phase.PATROL and drone.battery_pct <= charge_to_get_home(drone):
        drone.phase, drone.target = Phase.RETURNING, drone.base
    drone.ground_speed_mps = move_toward_target(drone, seconds) / seconds
    arrived = (drone.latitude, drone.longitude) == drone.target
    landing = drone.phase is Phase.RETURNING and arrived
    climb = CLIMB_RATE_MPS * seconds
    goal_m = 0.0 if landing else drone.patrol_altitude_m
    drone.altitude_m = min(goal_m, drone.altitude_m + climb) if drone.altitude_m < goal_m else max(goal_m, drone.altitude_m - climb)
    if landing and drone.altitude_m == 0.0:
        drone.phase = Phase.CHARGING
    elif arrived and drone.phase is Phase.PATROL:
        next_leg(drone)


def move_toward_target(drone: Drone, seconds: float) -> float:
    """Fly straight at cruise speed, stopping on the target; return the metres flown."""
    position = (drone.latitude, drone.longitude)
    remaining = distance_m(position, drone.target)
    step = drone.cruise_mps * seconds
    if step >= remaining:
        drone.latitude, drone.longitude = drone.target
        return remaining
    share = step / remaining
    drone.latitude += (drone.target[0] - drone.latitude) * share
    drone.longitude += (drone.target[1] - drone.longitude) * share
    return step


def next_leg(drone: Drone) -> None:
    drone.target = random_point(drone.beat, drone.rng)
    drone.cruise_mps = drone.rng.uniform(*CRUISE_SPEED_MPS)


def settle(value: float, toward: float, seconds: float) -> float:
    """First-order approach of a temperature to where the load would settle it."""
    return value + (toward - value) * min(1.0, seconds / MOTOR_TIME_CONSTANT_S)


def vibration_g(drone: Drone) -> float:
    """What the drone's accelerometer reads: nothing on the ground, in the air a noisy hum that wear amplifies."""
    if drone.altitude_m == 0.0:
        return 0.0
    hum = VIBRATION_BASE_G + VIBRATION_WEAR_G * drone.wear**VIBRATION_POWER
    return max(0.0, hum + drone.wear_rng.gauss(0.0, VIBRATION_NOISE_G))


def is_up(drone: Drone, offset_ms: int) -> bool:
    """Whether the drone reports at ``offset_ms``: always, but between a fault and the end of its repair.

    A drone whose repair is over is overhauled here: back at base on the ground, charged, unworn.
    """
    if drone.down_until_ms is None:
        return True
    if offset_ms < drone.down_until_ms:
        return False
    drone.down_until_ms, drone.wear, drone.flight_s = None, 0.0, 0.0
    drone.failure_threshold = drone.wear_rng.uniform(*FAILURE_THRESHOLD)
    drone.latitude, drone.longitude = drone.base
    drone.altitude_m, drone.ground_speed_mps, drone.battery_pct = 0.0, 0.0, 100.0
    drone.motor_temp_c, drone.phase, drone.last_ms = AMBIENT_C, Phase.CHARGING, offset_ms
    return True


def next_drone_up(drones: list[Drone], first: int, offset_ms: int) -> int | None:
    """The index of the first drone from ``first`` on (round the fleet) that reports at ``offset_ms``."""
    for step in range(len(drones)):
        index = (first + step) % len(drones)
        if is_up(drones[index], offset_ms):
            return index
    return None


def violation_sampler(rng: random.Random) -> Iterator[int]:
    """DOF codes drawn by their frequency among the city's tickets, in blocks for speed."""
    table = violation_codes()
    codes, weights = list(table), [entry.weight for entry in table.values()]
    while True:
        yield from rng.choices(codes, weights, k=1024)


def message_id(settings: FleetSettings, drone_id: str, sequence: int) -> str:
    """Stable across replays of one seed and start time; distinct between runs that differ in either."""
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{settings.seed}/{settings.start_ms}/{drone_id}/{sequence}"))


def fleet_reports(settings: FleetSettings) -> Iterator[DroneMessage]:
    """Every drone's reports, drones in turn, forever.

    Report ``n`` is stamped ``start + n × time_scale / rate`` (1 ms × time_scale apart at
    rate 0): the event clock is simulated, so the output does not depend on how fast it
    is consumed. Only a drone on
    patrol spots violations; ``human_ratio`` of them it cannot classify (code 100). A drone
    under repair is passed over, its turn going to the next one (a slot passes unsent only
    when the whole fleet is down); a drone whose wear crossed its threshold sends a fault.
    """
    drones = [new_drone(index, settings) for index in range(settings.drones)]
    chance = random.Random(f"{settings.seed}:events")
    codes = violation_sampler(random.Random(f"{settings.seed}:codes"))
    start = EPOCH + timedelta(milliseconds=settings.start_ms)
    step_ms = (1000.0 / settings.rate if settings.rate > 0 else 1.0) * settings.time_scale
    number = 0
    turn = 0
    while True:
        offset_ms = int(number * step_ms)
        index = next_drone_up(drones, turn, offset_ms)
        if index is None:
            number += 1
            continue
        drone, turn = drones[index], index + 1
        if drone.last_ms is not None:
            advance(drone, (offset_ms - drone.last_ms) / 1000)
        drone.last_ms = offset_ms
        drone.sequence += 1
        identity = message_id(settings, drone.drone_id, drone.sequence)
        failed = drone.wear >= drone.failure_threshold
        code = None
        if not failed and drone.phase is Phase.PATROL and chance.random() < settings.violation_ratio:
            code = HUMAN_REVIEW_CODE if chance.random() < settings.human_ratio else next(codes)
        yield DroneMessage(
            message_id=identity,
            drone_id=drone.drone_id,
            timestamp=start + timedelta(milliseconds=offset_ms),
            latitude=round(drone.latitude, 6),
            longitude=round(drone.longitude, 6),
            violation_code=code,
            image_id=None if code is None else f"img-{identity}",
            battery_pct=round(drone.battery_pct, 2),
            altitude_m=round(drone.altitude_m, 1),
            speed_mps=round(drone.ground_speed_mps, 2),
            motor_temp_c=round(drone.motor_temp_c, 1),
            vibration_g=round(vibration_g(drone), 3),
            flight_hours=round(drone.flight_s / 3600, 3),
            kind=FAULT if failed else None,
        )
        if failed:
            drone.down_until_ms = offset_ms + int(REPAIR_S * 1000)
        number += 1


def on_the_wire(report: DroneMessage) -> tuple[bytes, bytes, int | None, int]:
    """``(key, value, violation code, event ms)``: the drone id as key, the contract's own encoding as value.

    The event time in milliseconds is what a producer stamps the Kafka record with.
    """
    return report.drone_id.encode(), encode_message(report), report.violation_code, report.event_ms


def fleet_messages(settings: FleetSettings) -> Iterator[tuple[bytes, bytes, int | None, int]]:
    """Every report as it goes on the wire (:func:`on_the_wire`)."""
    return map(on_the_wire, fleet_reports(settings))
