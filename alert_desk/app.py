"""The desk's web application: the page, its live event stream and the JSON API under ``/api/``.

Everything an operator can do is an API call, so a script can do it too (with a bearer
token) and the page is plain HTML, CSS and JavaScript over the same calls (with a session
cookie). State changes are checked against the alert's current state in the same database
transaction that records them and their audit entry.
"""

import asyncio
import html
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, Callable, TypeVar
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.exceptions import HTTPException as StarletteHTTPException

from alert_desk.auth import Operators, bearer_token, digest, new_secret
from alert_desk.consumer import AlertConsumer
from alert_desk.corrections import CorrectionPublisher, PublishFailed, build_correction, correction_message_id
from alert_desk.events import Broadcaster, Event
from alert_desk.http_guards import GuardMiddleware
from alert_desk.maintenance import maintenance_router
from alert_desk.photos import PHOTO_ROUTE, Photos, photo_url
from alert_desk.store import STATUSES, Conflict, NotFound, Store, Transition
from transforms.contract import (
    HUMAN_REVIEW_CODE,
    IMAGE_ID_RULE,
    DroneMessage,
    is_image_id,
    message_to_fields,
    parse_message,
)
from transforms.geo import BOROUGH_NAMES, BOROUGHS_FILE
from transforms.kafka_settings import DRONE_ALERTS, DRONE_MESSAGES, KafkaSettings
from transforms.violation_codes import is_known, violation_codes

STATIC = Path(__file__).parent / "static"
SESSION_COOKIE = "dronecop_desk_session"
UNKNOWN_BOROUGH = "unknown"
MAX_LIST = 1000
MAX_OFFSET = 2**31 - 1  # far past any queue, and an integer every database takes
T = TypeVar("T")


@dataclass(frozen=True)
class DeskConfig:
    """Everything the desk is started with; built from the command line by ``__main__``."""

    kafka: KafkaSettings
    database_url: str = field(repr=False)  # may hold a password
    operators: Operators
    alerts_topic: str = DRONE_ALERTS
    messages_topic: str = DRONE_MESSAGES
    max_body_bytes: int = 16 * 1024
    session_hours: float = 12.0
    secure_cookies: bool = False
    lake_root: str = "./lake"  # where the drones store their photos, as the pipelines' --output


# What the API answers, named so that /api/openapi.json documents it.


class AlertView(BaseModel):
    alert_id: str
    message_id: str
    drone_id: str
    observed_at: str = Field(description="when the drone saw it (RFC 3339, UTC)")
    raised_at: str = Field(description="when the stream pipeline raised the alert")
    received_at: str = Field(description="when the desk stored it")
    latitude: float
    longitude: float
    borough: str | None
    image_id: str
    photo_url: str = Field(description="the photo (JPEG), served behind the same sign-in")
    photo_missing: bool = Field(description="the lake's store has no photo for this alert")
    status: str = Field(description="open, acknowledged or resolved")
    acknowledged_by: str | None
    acknowledged_at: str | None
    resolved_by: str | None
    resolved_at: str | None
    resolved_code: int | None
    correction_message_id: str | None


class AlertList(BaseModel):
    alerts: list[AlertView] = Field(description="newest first")
    total: int = Field(description="how many alerts match the filter (the list holds at most `limit`, from `offset`)")
    counts: dict[str, int] = Field(description="alerts per status, whatever the filter")


class AuditEntry(BaseModel):
    id: int
    at: str
    operator: str
    action: str
    alert_id: str | None
    detail: str


class AlertDetail(BaseModel):
    alert: AlertView
    audit: list[AuditEntry]


class Resolution(BaseModel):
    """The DOF violation code the operator sees in the picture."""

    model_config = ConfigDict(extra="forbid")
    violation_code: StrictInt = Field(description="a code of the DOF code table (GET /api/codes)")


class ResolveAnswer(BaseModel):
    alert: AlertView
    correction: dict[str, Any] = Field(description="the v1 message published to the messages topic")
    partition: int
    offset: int


class CodeView(BaseModel):
    code: int
    description: str
    fine_manhattan_96_below: float
    fine_elsewhere: float


class Problem(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "not signed in"},
    404: {"model": Problem, "description": "no such alert"},
    409: {"model": Problem, "description": "the alert's state does not allow this"},
    422: {"model": Problem, "description": "invalid input"},
}


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


def create_app(config: DeskConfig) -> FastAPI:
    """The application with its own store, consumer and publisher, started and stopped by its lifespan."""
    broadcaster = Broadcaster()
    resolve_lock = threading.Lock()
    photos = Photos(config.lake_root)
    parts: dict[str, Any] = {}

    def shown(alert: dict[str, Any]) -> dict[str, Any]:
        """An alert as the API shows it: the stored row, where its photo is and whether the store has it."""
        return {**alert, "photo_url": photo_url(alert["image_id"]),
                "photo_missing": photos.is_missing(alert["image_id"], alert["observed_at"])}  # fmt: skip

    def announced(transition: Transition) -> dict[str, Any]:
        """The changed alert as shown, once every open page has been told."""
        alert = shown(transition.alert)
        broadcaster.publish([Event("update", {"alert": alert, "previous_status": transition.previous_status})])
        return alert

    def on_new_alerts(alerts: list[dict[str, Any]]) -> None:
        broadcaster.publish([Event("alert", shown(alert)) for alert in alerts])

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store = await asyncio.to_thread(Store.open, config.database_url)
        publisher = CorrectionPublisher(config.kafka, config.messages_topic)
        consumer = AlertConsumer(config.kafka, config.alerts_topic, store, on_new_alerts)
        parts.update(store=store, publisher=publisher, consumer=consumer)
        broadcaster.bind(asyncio.get_running_loop())
        consumer.start()
        try:
            yield
        finally:
            broadcaster.close()
            await asyncio.to_thread(consumer.stop)
            await asyncio.to_thread(publisher.close)
            store.close()

    app = FastAPI(
        title="DroneCop alert desk",
        version="1",
        description="Operators acknowledge and resolve code-100 alerts; resolving publishes a corrected v1 "
        "message. Sign in with `Authorization: Bearer TOKEN`.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.add_middleware(GuardMiddleware, max_body_bytes=config.max_body_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.broadcaster = broadcaster

    def store() -> Store:
        return parts["store"]

    def session_operator(request: Request) -> str | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        return store().session_operator(digest(cookie)) if cookie else None

    def operator(request: Request) -> str:
        """The signed-in operator, by bearer token (scripts) or session cookie (the page)."""
        token = bearer_token(request.headers.get("authorization"))
        if token is not None:
            name = config.operators.operator_for(token)
            if name is None:
                raise HTTPException(401, "that bearer token is not valid", headers={"WWW-Authenticate": "Bearer"})
            return name
        name = session_operator(request)
        if name is None:
            raise HTTPException(
                401, "sign in: send Authorization: Bearer TOKEN, or sign in at /signin",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if request.method not in ("GET", "HEAD") and "origin" not in request.headers:
            raise HTTPException(403, "a browser request that changes state must carry an Origin header")
        return name

    Operator = Annotated[str, Depends(operator)]
    app.include_router(maintenance_router(store, operator, config.lake_root))

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_input(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            return JSONResponse({"detail": "the request body is not valid JSON"}, status_code=422)
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)

    # Pages.

    @app.get("/", include_in_schema=False)
    def page(request: Request) -> Response:
        if session_operator(request) is None:
            return RedirectResponse("/signin", status_code=303)
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})

    @app.get("/signin", include_in_schema=False)
    def signin_page() -> HTMLResponse:
        return _signin_page("", 200)

    @app.post("/signin", include_in_schema=False)
    async def signin(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        name = config.operators.operator_for(token) if token else None
        if name is None:
            return _signin_page("That token is not valid.", 401)
        session = new_secret()
        expires = datetime.now(timezone.utc) + timedelta(hours=config.session_hours)
        await asyncio.to_thread(store().create_session, digest(session), name, expires)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE, session, max_age=int(config.session_hours * 3600), httponly=True,
            samesite="strict", secure=config.secure_cookies, path="/",
        )
        return response

    @app.post("/signout", include_in_schema=False)
    def signout(request: Request) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            store().end_session(digest(cookie))
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.get("/healthz", include_in_schema=False)
    def health() -> JSONResponse:
        consumer: AlertConsumer = parts["consumer"]
        healthy = consumer.status.running and consumer.status.failed is None
        return JSONResponse({"ok": healthy, "consumer_failed": consumer.status.failed}, status_code=200 if healthy else 503)

    # The API.

    @app.get("/api/me", tags=["session"])
    def me(name: Operator) -> dict[str, str]:
        """Who is signed in."""
        return {"operator": name}

    @app.get("/api/alerts", response_model=AlertList, responses=ERRORS, tags=["alerts"])
    def list_alerts(
        _: Operator,
        status: Annotated[str | None, Query(description="open, acknowledged, resolved, or several comma-separated; all when absent")] = None,
        borough: Annotated[str | None, Query(description=f"{', '.join(BOROUGH_NAMES)} or {UNKNOWN_BOROUGH}")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 200,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="how many matching alerts to skip")] = 0,
    ) -> dict[str, Any]:
        """Alerts, newest first, a page at a time: `offset` and `limit` pick the page, `total` says how many there are."""
        wanted_borough = parse_borough(borough)
        alerts, total = store().list_alerts(
            parse_statuses(status),
            None if wanted_borough == UNKNOWN_BOROUGH else wanted_borough,
            limit,
            unknown_borough=wanted_borough == UNKNOWN_BOROUGH,
            offset=offset,
        )
        return {"alerts": [shown(alert) for alert in alerts], "total": total, "counts": store().counts()}

    @app.get("/api/alerts/{alert_id}", response_model=AlertDetail, responses=ERRORS, tags=["alerts"])
    def get_alert(alert_id: str, _: Operator) -> dict[str, Any]:
        """One alert with its audit trail, newest entry first."""
        alert = store().get(alert_id)
        if alert is None:
            raise HTTPException(404, f"no alert with id {alert_id[:64]}")
        return {"alert": shown(alert), "audit": store().audit_log(alert_id, 100)}

    @app.post("/api/alerts/{alert_id}/ack", response_model=AlertView, responses=ERRORS, tags=["alerts"])
    def acknowledge(alert_id: str, name: Operator) -> dict[str, Any]:
        """Say that you are looking at an open alert."""
        return announced(_changed(lambda: store().acknowledge(alert_id, name)))

    @app.post(
        "/api/alerts/{alert_id}/resolve",
        response_model=ResolveAnswer,
        responses={**ERRORS, 503: {"model": Problem, "description": "the broker did not take the correction"}},
        tags=["alerts"],
    )
    def resolve(alert_id: str, resolution: Resolution, name: Operator) -> dict[str, Any]:
        """Classify the picture: publish the corrected message (acknowledged by the broker), then mark resolved."""
        code = resolution.violation_code
        with resolve_lock:
            _changed(lambda: store().check_resolvable(alert_id))
            check_resolution_code(code)
            original = parse_message(store().message_json(alert_id) or b"")
            if not isinstance(original, DroneMessage):
                raise HTTPException(500, f"stored message of alert {alert_id} no longer parses: {original.reason}")
            correction = build_correction(original, alert_id, code)
            try:
                partition, offset = parts["publisher"].publish(correction)
            except PublishFailed as error:
                raise HTTPException(503, str(error)) from None
            transition = _changed(lambda: store().resolve(alert_id, name, code, correction_message_id(alert_id, code)))
        return {"alert": announced(transition), "correction": message_to_fields(correction), "partition": partition,
                "offset": offset}  # fmt: skip

    @app.get(
        PHOTO_ROUTE,
        tags=["alerts"],
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}, "description": "the photo"}, **ERRORS,
                   404: {"model": Problem, "description": "no alert has this photo, or the store has none"},
                   503: {"model": Problem, "description": "the lake's store did not answer"}},
    )  # fmt: skip
    def photo(image_id: str, _: Operator) -> Response:
        """An alert's photo, from the lake's store: only photos of alerts, by an image id the contract accepts."""
        if not is_image_id(image_id):
            raise HTTPException(422, f"image_id: not an image id ({IMAGE_ID_RULE})")
        observed_at = store().observed_at_of_image(image_id)
        if observed_at is None:
            raise HTTPException(404, f"no alert has the photo {image_id}")
        try:
            payload = photos.read(image_id, observed_at)
        except OSError as error:
            raise HTTPException(503, f"the photo store did not answer: {' '.join(str(error).split())[:200]}") from None
        if payload is None:
            raise HTTPException(404, f"the photo {image_id} is not in the store (the drone never stored it)")
        return Response(payload, media_type="image/jpeg", headers={"cache-control": "private, max-age=86400"})

    @app.get("/api/codes", response_model=list[CodeView], tags=["reference"])
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

    @app.get("/api/boroughs", tags=["reference"])
    def borough_outlines(_: Operator) -> FileResponse:
        """The simplified borough outlines (GeoJSON) the page draws its maps from."""
        return FileResponse(BOROUGHS_FILE, media_type="application/geo+json")

    @app.get("/api/audit", response_model=list[AuditEntry], tags=["alerts"])
    def audit(
        _: Operator, alert_id: str | None = None, limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100
    ) -> list[dict[str, Any]]:
        """Who changed what and when, newest first."""
        return store().audit_log(alert_id, limit)

    @app.get("/api/status", tags=["session"])
    def status(_: Operator) -> dict[str, Any]:
        """The reader's progress: stored offsets, records read since start, refused records."""
        consumer: AlertConsumer = parts["consumer"]
        return {
            "alerts_topic": config.alerts_topic,
            "messages_topic": config.messages_topic,
            "consumer_running": consumer.status.running,
            "consumer_failed": consumer.status.failed,
            "consumed_since_start": consumer.status.consumed_since_start,
            "refused_since_start": consumer.status.refused_since_start,
            "refused_by_reason": dict(consumer.status.refused_by_reason),
            "partitions_at_end": sorted(consumer.status.at_end),
            "next_offsets": store().next_offsets(config.alerts_topic),
            "refused_total": store().refused_count(),
            "counts": store().counts(),
            "live_streams": broadcaster.subscriber_count,
        }

    @app.get(
        "/api/events",
        tags=["alerts"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
    )
    def events(name: Operator) -> StreamingResponse:
        """Live updates: `hello` first (then load the list), `alert` for each new alert, `update` for
        each change (`{alert, previous_status}`), `resync` when this stream fell behind."""
        hello = Event("hello", {"operator": name})
        return StreamingResponse(
            broadcaster.stream([hello]),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    return app


def _changed(change: Callable[[], T]) -> T:
    """Run a store call, turning its refusals into HTTP answers with the store's reason."""
    try:
        return change()
    except NotFound as error:
        raise HTTPException(404, str(error)) from None
    except Conflict as error:
        raise HTTPException(409, str(error)) from None


def _signin_page(error: str, status_code: int) -> HTMLResponse:
    text = (STATIC / "signin.html").read_text(encoding="utf-8")
    message = f'<p class="signin-error" role="alert">{html.escape(error)}</p>' if error else ""
    return HTMLResponse(text.replace("<!--error-->", message), status_code=status_code, headers={"cache-control": "no-store"})
