"""Waiting for a server the test started: its port answers, or the test fails with why."""

from __future__ import annotations

import socket
import subprocess
import time


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert process.poll() is None, f"{what} exited with status {process.returncode}"
            assert time.monotonic() < deadline, f"{what} did not answer on port {port} within {timeout_s:.0f} s"
            time.sleep(0.05)
