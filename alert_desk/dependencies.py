"""What a route depends on: the running desk, and the operator a request is signed in as."""

import asyncio
from typing import Annotated, Awaitable, Callable

from fastapi import Depends, HTTPException, Request

from alert_desk.auth import bearer_token, digest
from alert_desk.desk import Desk

SESSION_COOKIE = "dronecop_desk_session"


def desk(request: Request) -> Desk:
    return request.app.state.desk


DeskDep = Annotated[Desk, Depends(desk)]


def session_operator(request: Request, running: Desk) -> str | None:
    """Who the request's session cookie belongs to, while that session lasts."""
    cookie = request.cookies.get(SESSION_COOKIE)
    return running.store.session_operator(digest(cookie)) if cookie else None


def operator(request: Request, running: DeskDep) -> str:
    """The signed-in operator, by bearer token (scripts) or session cookie (the page)."""
    token = bearer_token(request.headers.get("authorization"))
    if token is not None:
        name = running.config.operators.operator_for(token)
        if name is None:
            raise HTTPException(401, "that bearer token is not valid", headers={"WWW-Authenticate": "Bearer"})
        return name
    name = session_operator(request, running)
    if name is None:
        raise HTTPException(401, "sign in: send Authorization: Bearer TOKEN, or sign in at /signin", headers={"WWW-Authenticate": "Bearer"})
    if request.method not in ("GET", "HEAD") and "origin" not in request.headers:
        raise HTTPException(403, "a browser request that changes state must carry an Origin header")
    return name


Operator = Annotated[str, Depends(operator)]


def session_check(request: Request, running: Desk) -> Callable[[], Awaitable[bool]] | None:
    """For a page's long-lived request: whether its session still lasts, asked again later.

    None for a bearer token, which lasts as long as the desk's configuration.
    """
    cookie = request.cookies.get(SESSION_COOKIE)
    if bearer_token(request.headers.get("authorization")) is not None or not cookie:
        return None
    hashed = digest(cookie)

    async def still_signed_in() -> bool:
        return await asyncio.to_thread(running.store.session_operator, hashed) is not None

    return still_signed_in
