"""The desk's maintenance alerts: listed apart from the violations' alerts, each with the drone's recent health,
and marked "sent to maintenance" by an operator.

The stream raises a maintenance alert when a drone's failure risk crosses its threshold (once per episode);
the desk's reader keeps it beside the violations' alerts, in its own table (``alert_desk/store.py``). This
router serves them under ``/api/maintenance``, behind the same sign-in as the rest of the API. A drone's
recent health is read from the lake (``transforms/lake.py``'s drone files of the hours before the alert),
so the operator sees what the model saw: temperature, vibration and battery over the last hour.
"""

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from alert_desk.dependencies import DeskDep, Operator
from alert_desk.store import MAINTENANCE_STATUSES, Conflict, NotFound
from transforms import lake
from transforms.contract import format_timestamp, parse_timestamp

HEALTH_MINUTES = 60
HEALTH_COLUMNS = ("message_id", "drone_id", "timestamp", "battery_pct", "motor_temp_c", "vibration_g", "flight_hours")
HEALTH_SCHEMA = pa.schema([lake.DRONE_SCHEMA.field(name) for name in HEALTH_COLUMNS])


class MaintenanceView(BaseModel):
    alert_id: str
    drone_id: str
    message_id: str
    scored_at: str
    raised_at: str
    received_at: str
    failure_risk: float
    threshold: float
    status: str
    sent_by: str | None = None
    sent_at: str | None = None


class HealthPoint(BaseModel):
    timestamp: str
    battery_pct: float | None = None
    motor_temp_c: float | None = None
    vibration_g: float | None = None
    flight_hours: float | None = None


class DroneHealth(BaseModel):
    alert: MaintenanceView
    health: list[HealthPoint]


def hour_folders(root: str, until: datetime, minutes: int) -> list[str]:
    """The drone partitions (hours) that hold ``[until - minutes, until]``."""
    folders, moment = [], (until - timedelta(minutes=minutes)).replace(minute=0, second=0, microsecond=0)
    while moment <= until:
        folders.append(lake.drone_partition(root, moment))
        moment += timedelta(hours=1)
    return folders


def recent_health(root: str, drone_id: str, until: datetime, minutes: int = HEALTH_MINUTES) -> list[dict[str, Any]]:
    """A drone's health readings of the ``minutes`` up to ``until``, oldest first, each message once."""
    since = until - timedelta(minutes=minutes)
    tables = []
    for folder in hour_folders(root, until, minutes):
        for meta in lake.matching_files(folder, "*.parquet"):
            table = lake.pin_types(lake.read_parquet(meta.path, list(HEALTH_COLUMNS)), HEALTH_SCHEMA)
            tables.append(table.filter(pc.equal(table.column("drone_id"), drone_id)))
    if not tables:
        return []
    rows = {row["message_id"]: row for row in pa.concat_tables(tables).to_pylist() if since <= row["timestamp"] <= until}
    return [
        {"timestamp": format_timestamp(row["timestamp"]), **{name: row[name] for name in HEALTH_COLUMNS[3:]}}
        for row in sorted(rows.values(), key=lambda row: row["timestamp"])
    ]


router = APIRouter(prefix="/api/maintenance", tags=["maintenance"])


@router.get("", response_model=list[MaintenanceView])
def list_maintenance(
    _: Operator,
    running: DeskDep,
    status: Annotated[Literal["open", "sent", "all"], Query(description="open, sent or all")] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """Maintenance alerts, newest first: drones whose failure risk crossed the stream's threshold."""
    statuses = MAINTENANCE_STATUSES if status == "all" else (status,)
    return running.store.list_maintenance(statuses, limit)


@router.get("/{alert_id}/health", response_model=DroneHealth)
def health(alert_id: str, _: Operator, running: DeskDep) -> dict[str, Any]:
    """The alert and its drone's health over the hour before it was scored, from the lake."""
    alert = found(running.store.get_maintenance(alert_id), alert_id)
    try:
        points = recent_health(running.config.lake_root, alert["drone_id"], parse_timestamp(alert["scored_at"]))
    except OSError as error:
        raise HTTPException(503, f"the lake did not answer: {' '.join(str(error).split())[:200]}") from None
    return {"alert": alert, "health": points}


@router.post("/{alert_id}/sent", response_model=MaintenanceView)
def sent(alert_id: str, name: Operator, running: DeskDep) -> dict[str, Any]:
    """Mark the drone as sent to maintenance (once; the audit trail says who and when)."""
    try:
        return running.store.send_to_maintenance(alert_id, name)
    except NotFound as error:
        raise HTTPException(404, str(error)) from None
    except Conflict as error:
        raise HTTPException(409, str(error)) from None


def found(alert: dict[str, Any] | None, alert_id: str) -> dict[str, Any]:
    if alert is None:
        raise HTTPException(404, f"no maintenance alert with id {alert_id[:64]}")
    return alert
