"""The page, signing in and out, and the health probe."""

import asyncio
import html
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from alert_desk.auth import digest, new_secret
from alert_desk.dependencies import SESSION_COOKIE, DeskDep, session_operator

STATIC = Path(__file__).resolve().parents[1] / "static"
UNKNOWN_OPERATOR = "-"  # who a failed sign-in is audited as

router = APIRouter(include_in_schema=False)


@router.get("/")
def page(request: Request, running: DeskDep) -> Response:
    if session_operator(request, running) is None:
        return RedirectResponse("/signin", status_code=303)
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})


@router.get("/signin")
def signin_page() -> HTMLResponse:
    return _signin_page("", 200)


@router.post("/signin")
async def signin(request: Request, running: DeskDep) -> Response:
    """A session for a valid token; a failure is audited, and a client that keeps failing waits."""
    client = request.client.host if request.client else "unknown"
    wait_s = math.ceil(running.sign_ins.wait_s(client))
    if wait_s:
        page = _signin_page(f"Too many failed sign-ins from here: try again in {wait_s} s.", 429)
        page.headers["retry-after"] = str(wait_s)
        return page
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    name = running.config.operators.operator_for(token) if token else None
    if name is None:
        running.sign_ins.failed(client)
        await asyncio.to_thread(running.store.record, UNKNOWN_OPERATOR, "sign_in_failed", f"client={client}")
        return _signin_page("That token is not valid.", 401)
    running.sign_ins.succeeded(client)
    session = new_secret()
    hours = running.config.session_hours
    expires = datetime.now(timezone.utc) + timedelta(hours=hours)
    await asyncio.to_thread(running.store.create_session, digest(session), name, expires)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session,
        max_age=int(hours * 3600),
        httponly=True,
        samesite="strict",
        secure=running.config.secure_cookies,
        path="/",
    )
    return response


@router.post("/signout")
def signout(request: Request, running: DeskDep) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        running.store.end_session(digest(cookie))
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/healthz")
def health(running: DeskDep) -> JSONResponse:
    status = running.consumer.status
    healthy = status.running and status.failed is None
    return JSONResponse({"ok": healthy, "consumer_failed": status.failed}, status_code=200 if healthy else 503)


def _signin_page(error: str, status_code: int) -> HTMLResponse:
    text = (STATIC / "signin.html").read_text(encoding="utf-8")
    message = f'<p class="signin-error" role="alert">{html.escape(error)}</p>' if error else ""
    return HTMLResponse(text.replace("<!--error-->", message), status_code=status_code, headers={"cache-control": "no-store"})
