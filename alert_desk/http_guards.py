"""Guards every HTTP request passes before the desk looks at it.

Small ASGI layers, kept apart from the routes so each is easy to check on its own: a
request must name this desk as its ``Host`` (so a hostile name that resolves here, as in DNS
rebinding, reaches nothing), request bodies are limited in size (a body that turns out larger while it is read ends in
the application's own 413 answer), state-changing requests from other sites are refused
(the session cookie is SameSite=Strict as well; this is the second lock), and every answer
carries headers that keep the page from being framed or fed foreign scripts.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import urlsplit

import orjson
from starlette.exceptions import HTTPException

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECURITY_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # "no-referrer" would make form posts send Origin: null
    (b"x-frame-options", b"DENY"),
)


ALL_INTERFACES = frozenset({"", "0.0.0.0", "::"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
UNCHECKED_PATHS = frozenset({"/healthz"})  # probes name the pod's address, whatever the desk is called


def allowed_hosts(bind_host: str, public_url: str | None) -> frozenset[str] | None:
    """The host names a request may give: the address the desk serves on (with the loopback names
    when that is loopback) and ``public_url``'s; None, any, when it serves on every interface and
    was not told its public name."""
    names = set()
    if public_url:
        names.add((urlsplit(public_url).hostname or "").lower())
    if bind_host not in ALL_INTERFACES:
        names.add(bind_host.lower().strip("[]"))
        if bind_host in LOOPBACK_NAMES or bind_host.startswith("127."):
            names |= LOOPBACK_NAMES
    elif not public_url:
        return None
    return frozenset(names - {""})


def host_name(host_header: str) -> str:
    """``Host: example.org:8080`` → ``example.org``; ``[::1]:8080`` → ``::1``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def header_map(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", [])}


def cross_site_reason(method: str, headers: Mapping[str, str]) -> str | None:
    """Why a request must be refused as cross-site, or None when it may go on.

    Safe methods change nothing and pass. Otherwise a browser tells where the request
    comes from (``Sec-Fetch-Site``, ``Origin``, or at least ``Referer``, which the page's
    same-origin referrer policy keeps for its own requests); a script sends none of them and
    proves itself with its bearer token instead.
    """
    if method in SAFE_METHODS:
        return None
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site in ("cross-site", "same-site"):
        return f"cross-site request refused (Sec-Fetch-Site: {fetch_site})"
    host = headers.get("host", "")
    origin = headers.get("origin")
    if origin is not None:
        return _elsewhere("Origin", origin, host)
    referer = headers.get("referer")
    return None if referer is None else _elsewhere("Referer", referer, host)


def _elsewhere(header: str, value: str, host: str) -> str | None:
    """The refusal when the page named by ``header`` is not on this desk's host (or names none)."""
    try:
        netloc = urlsplit(value).netloc.lower()
    except ValueError:  # "http://[::1" and the like: no page of ours
        netloc = ""
    if not netloc or netloc != host.lower():
        return f"cross-site request refused: {header} {value[:100]!r} is not this desk"
    return None


async def send_json(send: Send, status: int, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Host check, body size limit, cross-site refusal and security headers, in that order.

    ``hosts``: the host names requests may give (see :func:`allowed_hosts`); None for any.
    """

    def __init__(self, app: App, max_body_bytes: int, hosts: frozenset[str] | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = header_map(scope)
        if self.hosts is not None and scope["path"] not in UNCHECKED_PATHS:
            if host_name(headers.get("host", "")) not in self.hosts:
                await send_json(send, 421, f"this desk does not answer for host {headers.get('host', '')[:100]!r}")
                return
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await send_json(send, 413, f"request body larger than {self.max_body_bytes} bytes")
            return
        reason = cross_site_reason(scope["method"], headers)
        if reason is not None:
            await send_json(send, 403, reason)
            return
        received = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(413, f"request body larger than {self.max_body_bytes} bytes")
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, limited_receive, guarded_send)
