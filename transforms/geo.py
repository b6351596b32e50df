"""Which borough a drone was over, from hand-drawn outlines of the five boroughs.

The alert desk files alerts by them and draws its small maps from the same
``data/boroughs.json``, so the borough an alert is filed under and the outline its dot
lands in always agree; the analysis counts drone violations per borough by them too.
The outlines are simplified: a drone just off a shore still belongs to the nearest
borough, within :data:`SHORE_DEGREES`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

BOROUGHS_FILE = Path(__file__).parent / "data" / "boroughs.json"
BOROUGH_NAMES = ("Manhattan", "Brooklyn", "Queens", "Bronx", "Staten Island")
# About 1 km at New York's latitude: how far outside a simplified outline still counts.
SHORE_DEGREES = 0.01
_LON_SCALE = math.cos(math.radians(40.7))

Ring = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Borough:
    name: str
    rings: tuple[Ring, ...]


@lru_cache(maxsize=1)
def boroughs() -> tuple[Borough, ...]:
    """The five outlines as (lon, lat) rings, read once."""
    document = json.loads(BOROUGHS_FILE.read_text(encoding="utf-8"))
    return tuple(
        Borough(
            name=feature["properties"]["name"],
            rings=tuple(tuple((float(lon), float(lat)) for lon, lat in polygon[0]) for polygon in feature["geometry"]["coordinates"]),
        )
        for feature in document["features"]
    )


def borough_of(latitude: float, longitude: float) -> str | None:
    """The borough containing the point, else the nearest one within a shore's width, else None."""
    nearest: tuple[float, str] | None = None
    for borough in boroughs():
        for ring in borough.rings:
            if _inside(ring, longitude, latitude):
                return borough.name
            distance = _distance_to_ring(ring, longitude, latitude)
            if distance <= SHORE_DEGREES and (nearest is None or distance < nearest[0]):
                nearest = (distance, borough.name)
    return nearest[1] if nearest else None


def _inside(ring: Ring, x: float, y: float) -> bool:
    """Even-odd ray casting: count the edges a ray to the east crosses."""
    inside = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1]):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _distance_to_ring(ring: Ring, x: float, y: float) -> float:
    """Shortest distance from the point to the ring's edges, in degrees of latitude."""
    return min(_distance_to_segment(x, y, a, b) for a, b in zip(ring, ring[1:] + ring[:1]))


def _distance_to_segment(x: float, y: float, a: tuple[float, float], b: tuple[float, float]) -> float:
    ax, ay, bx, by = a[0] * _LON_SCALE, a[1], b[0] * _LON_SCALE, b[1]
    px = x * _LON_SCALE
    dx, dy = bx - ax, by - ay
    length_squared = dx * dx + dy * dy
    t = 0.0 if length_squared == 0 else max(0.0, min(1.0, ((px - ax) * dx + (y - ay) * dy) / length_squared))
    return math.hypot(px - (ax + t * dx), y - (ay + t * dy))
