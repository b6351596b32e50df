"""Live updates for open pages: every new or changed alert goes to every event stream.

The consumer thread and the web workers publish from their own threads; each subscriber
(one server-sent-event stream) has a bounded queue on the event loop. A page too slow to keep
up is not allowed to grow memory: it gets a ``resync`` and reloads the list instead, so
nothing is silently missing from its view.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import orjson

SUBSCRIBER_QUEUE_EVENTS = 20_000
HEARTBEAT_S = 15.0


@dataclass(frozen=True)
class Event:
    """One server-sent event: its name and its JSON data."""

    name: str
    data: Any

    def encode(self) -> bytes:
        return b"event: " + self.name.encode() + b"\ndata: " + orjson.dumps(self.data) + b"\n\n"


_CLOSE = Event("close", None)
_RESYNC = Event("resync", {"reason": "this page fell behind; reload the list"})
_HEARTBEAT = Event("heartbeat", None)  # never sent as an event: a comment line keeps the connection open


class Broadcaster:
    """Fan-out of events to the open streams; safe to publish from any thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._closed = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the server's event loop (at start-up)."""
        self._loop = loop
        self._closed = False

    def publish(self, events: list[Event]) -> None:
        """Hand events to every stream; called from the consumer thread or a worker thread."""
        if events and self._loop is not None and not self._closed:
            self._loop.call_soon_threadsafe(self._fan_out, events)

    def close(self) -> None:
        """End every stream now, so that shutting down does not wait for open pages."""
        self._closed = True
        for queue in list(self._subscribers):
            _force(queue, _CLOSE)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def stream(self, first: list[Event], still_allowed: Callable[[], Awaitable[bool]] | None = None) -> AsyncIterator[bytes]:
        """The bytes of one event stream: ``first`` events, then live ones, with heartbeats.

        ``still_allowed`` is asked before each live event and heartbeat: the stream ends when it
        says no (the page's session was signed out or expired), within one heartbeat.
        """
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE_EVENTS)
        self._subscribers.add(queue)
        try:
            for event in first:
                yield event.encode()
            while not self._closed:
                try:
                    event = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except asyncio.TimeoutError:
                    event = _HEARTBEAT
                if still_allowed is not None and not await still_allowed():
                    return
                if event is _HEARTBEAT:
                    yield b": heartbeat\n\n"
                    continue
                if event is _CLOSE:
                    return
                chunk = [event.encode()]
                while not queue.empty() and len(chunk) < 500:
                    event = queue.get_nowait()
                    if event is _CLOSE:
                        yield b"".join(chunk)
                        return
                    chunk.append(event.encode())
                yield b"".join(chunk)
        finally:
            self._subscribers.discard(queue)

    def _fan_out(self, events: list[Event]) -> None:
        for queue in list(self._subscribers):
            if queue.maxsize - queue.qsize() <= len(events):
                _force(queue, _RESYNC)
                continue
            for event in events:
                queue.put_nowait(event)


def _force(queue: asyncio.Queue[Event], event: Event) -> None:
    """Replace whatever is queued by one event: the page will reload the list anyway."""
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(event)
