"""gcp-storage-emulator for tests that keep the lake on ``gs://``: one way to start it, for all of them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from runners.brokers import free_port
from tests.support.ports import wait_for_port


@contextmanager
def storage_emulator(bucket: str) -> Iterator[str]:
    """gcp-storage-emulator in memory on a free port, with ``bucket`` made; its URL."""
    port = free_port()
    emulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gcp_storage_emulator",
            "start",
            "--host=127.0.0.1",
            f"--port={port}",
            "--in-memory",
            f"--default-bucket={bucket}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, emulator, "the GCS emulator")
        yield f"http://127.0.0.1:{port}"
    finally:
        emulator.terminate()
        emulator.wait(10)
