"""Who is signed in, the code table, the borough outlines and the reader's progress."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from alert_desk.api_models import CodeView
from alert_desk.dependencies import DeskDep, Operator
from transforms.contract import HUMAN_REVIEW_CODE
from transforms.geo import BOROUGHS_FILE
from transforms.violation_codes import violation_codes

router = APIRouter(prefix="/api")


@router.get("/me", tags=["session"])
def me(name: Operator) -> dict[str, str]:
    """Who is signed in."""
    return {"operator": name}


@router.get("/codes", response_model=list[CodeView], tags=["reference"])
def codes(_: Operator) -> list[dict[str, Any]]:
    """The DOF violation codes an alert can be resolved with."""
    return [
        {
            "code": entry.code,
            "description": entry.description,
            "fine_manhattan_96_below": entry.fine_manhattan_96_below,
            "fine_elsewhere": entry.fine_elsewhere,
        }
        for entry in sorted(violation_codes().values(), key=lambda entry: entry.code)
        if entry.code != HUMAN_REVIEW_CODE
    ]


@router.get("/boroughs", tags=["reference"])
def borough_outlines(_: Operator) -> FileResponse:
    """The simplified borough outlines (GeoJSON) the page draws its maps from."""
    return FileResponse(BOROUGHS_FILE, media_type="application/geo+json")


@router.get("/status", tags=["session"])
def status(_: Operator, running: DeskDep) -> dict[str, Any]:
    """The reader's progress: stored offsets, records read since start, refused records."""
    config, reader, store = running.config, running.consumer.status, running.store
    return {
        "alerts_topic": config.alerts_topic,
        "messages_topic": config.messages_topic,
        "consumer_running": reader.running,
        "consumer_failed": reader.failed,
        "consumed_since_start": reader.consumed_since_start,
        "refused_since_start": reader.refused_since_start,
        "refused_by_reason": dict(reader.refused_by_reason),
        "partitions_at_end": sorted(reader.at_end),
        "next_offsets": store.next_offsets(config.alerts_topic),
        "refused_total": store.refused_count(),
        "counts": store.counts(),
        "live_streams": running.broadcaster.subscriber_count,
    }
