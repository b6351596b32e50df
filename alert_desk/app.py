"""The desk's web application: the page, its live event stream and the JSON API under ``/api/``.

Everything an operator can do is an API call, so a script can do it too (with a bearer
token) and the page is plain HTML, CSS and JavaScript over the same calls (with a session
cookie). State changes are checked against the alert's current state in the same database
transaction that records them and their audit entry. The routes live in
:mod:`alert_desk.routes`, one router per room (the maintenance alerts' included); what they share is the running
:class:`~alert_desk.desk.Desk`, a dependency.
"""

from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from alert_desk.desk import Desk, DeskConfig
from alert_desk.http_guards import GuardMiddleware
from alert_desk.routes import alerts, maintenance, pages, reference
from alert_desk.routes.pages import STATIC


def create_app(config: DeskConfig) -> FastAPI:
    """The application with its own desk (store, reader, publisher), started and stopped by its lifespan."""
    desk = Desk(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await desk.start()
        try:
            yield
        finally:
            await desk.stop()

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
    app.state.desk = desk
    app.state.broadcaster = desk.broadcaster
    app.add_middleware(GuardMiddleware, max_body_bytes=config.max_body_bytes, hosts=config.hosts)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(StarletteHTTPException, http_problem)
    app.add_exception_handler(RequestValidationError, invalid_input)
    for room in (pages, alerts, maintenance, reference):
        app.include_router(room.router)
    return app


async def http_problem(_: Request, error: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"detail": str(error.detail)}, status_code=error.status_code, headers=error.headers)


async def invalid_input(_: Request, error: RequestValidationError) -> JSONResponse:
    """The first thing wrong with a request, as one line: where, and what."""
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return JSONResponse({"detail": "the request body is not valid JSON"}, status_code=422)
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)
