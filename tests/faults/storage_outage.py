"""The lake's object store, and a relay in front of it that makes it fail or vanish for a while.

gcp-storage-emulator keeps the bucket in memory, so it must live through the outage: the
outage is made in a TCP relay between the pipeline and the emulator (the pipeline's
``STORAGE_EMULATOR_HOST`` names the relay; the test reads the bucket from the emulator
directly). Three kinds of outage, each as a real client meets it:

* ``vanish``: new connections are refused and open ones cut, as when the storage host goes away;
* ``fail``: every request is answered ``503 Service Unavailable``, as from an overloaded front end;
* ``stall``: requests are accepted and held without an answer until the storage comes back.
"""

from __future__ import annotations

import os
import socket
import threading
from contextlib import suppress

from runners.brokers import free_port

# gcsfs's probe for hierarchical-namespace buckets speaks gRPC over TLS, which the emulator
# does not: each read would wait 60 s before falling back. Set before gcsfs is imported.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

BUCKET = "dronecop-faults"
OUTAGES = ("vanish", "fail", "stall")
CHUNK = 65536
REQUEST_READ_S = 2.0
UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class StorageRelay:
    """A TCP relay to ``upstream_port`` on loopback that can be taken down in one of :data:`OUTAGES` and restored."""

    def __init__(self, upstream_port: int):
        self.port = free_port()
        self._upstream = upstream_port
        self._mode = "up"
        self.connections = 0
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def outage(self, kind: str) -> None:
        """Take the storage down: refuse and cut (``vanish``), answer 503 (``fail``) or hold everything (``stall``)."""
        assert kind in OUTAGES and self._mode == "up", (kind, self._mode)
        self._mode = kind
        if kind == "stall":
            self._flowing.clear()
            return
        if kind == "vanish":
            self._stop_listening()
        self._cut_open_connections()

    def restore(self) -> None:
        """Bring the storage back: held requests go through, new connections are served again."""
        self._mode = "up"
        if self._listener is None:
            self._listen()
        self._flowing.set()

    def close(self) -> None:
        self._flowing.set()
        self._stop_listening()
        self._cut_open_connections()

    def _stop_listening(self) -> None:
        """Stop accepting at once: a listener closed under a blocked accept() would keep listening until it returns."""
        if self._listener is not None:
            with suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed: the storage vanished, or the relay is done
                return
            self.connections += 1
            serve = self._answer_unavailable if self._mode == "fail" else self._relay
            threading.Thread(target=serve, args=(client,), daemon=True).start()

    def _answer_unavailable(self, client: socket.socket) -> None:
        with client:
            client.settimeout(REQUEST_READ_S)
            received = b""
            with suppress(OSError):
                while b"\r\n\r\n" not in received and len(received) < CHUNK:
                    piece = client.recv(CHUNK)
                    if not piece:
                        break
                    received += piece
                client.sendall(UNAVAILABLE)

    def _relay(self, client: socket.socket) -> None:
        self._flowing.wait()
        try:
            upstream = socket.create_connection(("127.0.0.1", self._upstream))
        except OSError:
            client.close()
            return
        with self._lock:
            self._open.update((client, upstream))
        answers = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
        answers.start()
        self._pump(client, upstream)
        answers.join()
        self._cut(client, upstream)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        """Copy one direction until either side closes; a stall holds each chunk until the storage is back."""
        try:
            while piece := source.recv(CHUNK):
                self._flowing.wait()
                target.sendall(piece)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            self._cut(source, target)

    def _cut_open_connections(self) -> None:
        with self._lock:
            sockets = list(self._open)
        self._cut(*sockets)

    def _cut(self, *sockets: socket.socket) -> None:
        for connection in sockets:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
            with self._lock:
                self._open.discard(connection)
