"""The alerts: listed, shown, acknowledged, resolved (publishing the correction), their photos, audit and live events."""

from typing import Annotated, Any, Callable, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse

from alert_desk.api_models import ERRORS, AlertDetail, AlertList, AlertView, AuditEntry, Problem, Resolution, ResolveAnswer
from alert_desk.corrections import build_correction, correction_message_id
from alert_desk.dependencies import DeskDep, Operator, session_check
from alert_desk.events import Event
from alert_desk.photos import PHOTO_ROUTE
from alert_desk.store import STATUSES, Conflict, NotFound
from transforms.contract import HUMAN_REVIEW_CODE, IMAGE_ID_RULE, DroneMessage, is_image_id, message_to_fields, parse_message
from transforms.geo import BOROUGH_NAMES
from transforms.kafka_producer import DeliveryFailed
from transforms.violation_codes import is_known

UNKNOWN_BOROUGH = "unknown"
MAX_LIST = 1000
MAX_OFFSET = 2**31 - 1  # far past any queue, and an integer every database takes
T = TypeVar("T")

router = APIRouter(prefix="/api", tags=["alerts"], responses=ERRORS)


def parse_statuses(text: str | None) -> list[str]:
    """``open``, ``open,acknowledged`` … → the statuses; none given means all."""
    if not text:
        return list(STATUSES)
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in wanted if part not in STATUSES]
    if unknown or not wanted:
        raise HTTPException(422, f"unknown status {unknown[0] if unknown else text!r}: use open, acknowledged or resolved")
    return wanted


def parse_borough(text: str | None) -> str | None:
    if text is None or text == "" or text == UNKNOWN_BOROUGH or text in BOROUGH_NAMES:
        return text or None
    raise HTTPException(422, f"unknown borough {text[:40]!r}: use one of {', '.join(BOROUGH_NAMES)} or unknown")


def check_resolution_code(code: int) -> None:
    """Only a code of the DOF table may resolve an alert; 100 is what needs resolving."""
    if code == HUMAN_REVIEW_CODE:
        raise HTTPException(422, "violation code 100 means 'needs a human'; choose the DOF code you see")
    if not is_known(code):
        raise HTTPException(422, f"unknown violation code {code}: not in the DOF code table (GET /api/codes)")


@router.get("/alerts", response_model=AlertList)
def list_alerts(
    _: Operator,
    running: DeskDep,
    status: Annotated[str | None, Query(description="open, acknowledged, resolved, or several comma-separated; all when absent")] = None,
    borough: Annotated[str | None, Query(description=f"{', '.join(BOROUGH_NAMES)} or {UNKNOWN_BOROUGH}")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 200,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="how many matching alerts to skip")] = 0,
) -> dict[str, Any]:
    """Alerts, newest first, a page at a time: `offset` and `limit` pick the page, `total` says how many there are."""
    wanted_borough = parse_borough(borough)
    alerts, total = running.store.list_alerts(
        parse_statuses(status),
        None if wanted_borough == UNKNOWN_BOROUGH else wanted_borough,
        limit,
        unknown_borough=wanted_borough == UNKNOWN_BOROUGH,
        offset=offset,
    )
    return {"alerts": [running.shown(alert) for alert in alerts], "total": total, "counts": running.store.counts()}


@router.get("/alerts/{alert_id}", response_model=AlertDetail)
def get_alert(alert_id: str, _: Operator, running: DeskDep) -> dict[str, Any]:
    """One alert with its audit trail, newest entry first."""
    alert = running.store.get(alert_id)
    if alert is None:
        raise HTTPException(404, f"no alert with id {alert_id[:64]}")
    return {"alert": running.shown(alert), "audit": running.store.audit_log(alert_id, 100)}


@router.post("/alerts/{alert_id}/ack", response_model=AlertView)
def acknowledge(alert_id: str, name: Operator, running: DeskDep) -> dict[str, Any]:
    """Say that you are looking at an open alert."""
    return running.announced(_changed(lambda: running.store.acknowledge(alert_id, name)))


@router.post(
    "/alerts/{alert_id}/resolve",
    response_model=ResolveAnswer,
    responses={503: {"model": Problem, "description": "the broker did not take the correction"}},
)
def resolve(alert_id: str, resolution: Resolution, name: Operator, running: DeskDep) -> dict[str, Any]:
    """Classify the picture: publish the corrected message (acknowledged by the broker), then mark resolved.

    Resolutions of one alert queue behind each other, so only one publishes a correction;
    resolutions of other alerts go on meanwhile.
    """
    code = resolution.violation_code
    with running.resolving.holding(alert_id):
        _changed(lambda: running.store.check_resolvable(alert_id))
        check_resolution_code(code)
        original = parse_message(running.store.message_json(alert_id) or b"")
        if not isinstance(original, DroneMessage):
            raise HTTPException(500, f"stored message of alert {alert_id} no longer parses: {original.reason}")
        correction = build_correction(original, alert_id, code)
        try:
            partition, offset = running.publisher.publish(correction)
        except DeliveryFailed as error:
            raise HTTPException(503, str(error)) from None
        transition = _changed(lambda: running.store.resolve(alert_id, name, code, correction_message_id(alert_id, code)))
    alert = running.announced(transition)
    return {"alert": alert, "correction": message_to_fields(correction), "partition": partition, "offset": offset}


@router.get(
    PHOTO_ROUTE.removeprefix("/api"),
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "the photo"},
        404: {"model": Problem, "description": "no alert has this photo, or the store has none"},
        503: {"model": Problem, "description": "the lake's store did not answer"},
    },
)
def photo(image_id: str, _: Operator, running: DeskDep) -> Response:
    """An alert's photo, from the lake's store: only photos of alerts, by an image id the contract accepts."""
    if not is_image_id(image_id):
        raise HTTPException(422, f"image_id: not an image id ({IMAGE_ID_RULE})")
    observed_at = running.store.observed_at_of_image(image_id)
    if observed_at is None:
        raise HTTPException(404, f"no alert has the photo {image_id}")
    try:
        payload = running.photos.read(image_id, observed_at)
    except OSError as error:
        raise HTTPException(503, f"the photo store did not answer: {' '.join(str(error).split())[:200]}") from None
    if payload is None:
        raise HTTPException(404, f"the photo {image_id} is not in the store (the drone never stored it)")
    return Response(payload, media_type="image/jpeg", headers={"cache-control": "private, max-age=86400"})


@router.get("/audit", response_model=list[AuditEntry])
def audit(
    _: Operator, running: DeskDep, alert_id: str | None = None, limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100
) -> list[dict[str, Any]]:
    """Who changed what and when, newest first."""
    return running.store.audit_log(alert_id, limit)


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
)
def events(request: Request, name: Operator, running: DeskDep) -> StreamingResponse:
    """Live updates: `hello` first (then load the list), `alert` for each new alert, `update` for
    each change (`{alert, previous_status}`), `resync` when this stream fell behind. A signed-in
    page's stream ends when its session is signed out or expires."""
    hello = Event("hello", {"operator": name})
    return StreamingResponse(
        running.broadcaster.stream([hello], session_check(request, running)),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


def _changed(change: Callable[[], T]) -> T:
    """Run a store call, turning its refusals into HTTP answers with the store's reason."""
    try:
        return change()
    except NotFound as error:
        raise HTTPException(404, str(error)) from None
    except Conflict as error:
        raise HTTPException(409, str(error)) from None
