"""The desk's HTTP connections: each request's headers must arrive in time.

Uvicorn closes a keep-alive connection that stays idle, but not one that opens and then
sends its headers a byte at a time, or never: enough of those hold every socket the
process may open. :class:`HeaderDeadline` closes a connection whose request headers are
not complete within its deadline; uvicorn's own ``limit_concurrency`` answers 503 beyond
a number of connections.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0


class HeaderDeadline(H11Protocol):
    """Uvicorn's h11 protocol, closing a connection whose next request's headers are late."""

    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def data_received(self, data: bytes) -> None:
        """Headers under way keep the deadline set when they began; complete ones cancel it."""
        if self._header_deadline is None and self.conn.their_state is h11.IDLE:
            self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_late)
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _cancel_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def with_header_timeout(seconds: float) -> type[HeaderDeadline]:
    """The protocol class uvicorn is given (it makes one per connection), with this deadline."""
    return type("HeaderDeadline", (HeaderDeadline,), {"header_timeout_s": seconds})
