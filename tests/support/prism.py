"""The streaming job on Prism as its tests start it, ``python -m pipelines.stream --streaming`` as a user would, and
records stamped with their event time as our producers stamp them. A module that uses the ``streaming`` fixture
takes the ``topics`` fixture of :mod:`tests.support.streams` too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.support.processes import REPO_ROOT
from tests.support.streams import stream_args
from transforms.contract import DroneMessage, encode_message
from transforms.kafka_settings import KafkaSettings

WAIT_S = 180


def stamped(message: DroneMessage, partition: int | None = None) -> tuple[bytes, bytes, int, int | None]:
    """A record as our producers send it: keyed by drone, stamped with the message's event time."""
    return message.drone_id.encode(), encode_message(message), message.event_ms, partition


class StreamingJob:
    """``pipelines.stream --streaming`` in its own process group (Prism is its child)."""

    def __init__(self, settings: KafkaSettings, topics: dict[str, str], lake_root: Path, *extra: str):
        args = [arg for arg in stream_args(settings, topics, lake_root) if arg != "--drain"]
        command = [sys.executable, "-m", "pipelines.stream", *args, "--streaming", "--window_minutes=1", *extra]
        self.log = lake_root.parent / f"stream-{time.monotonic_ns()}.log"
        self._log_file = open(self.log, "wb")
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_until(self, holds: Callable[[], bool], what: str) -> None:
        """Poll ``holds`` until true while the job runs; fail with the job's log otherwise."""
        deadline = time.monotonic() + WAIT_S
        while not holds():
            assert self.process.poll() is None, f"the job exited ({self.process.returncode}) before {what}:\n{self.tail()}"
            assert time.monotonic() < deadline, f"no {what} after {WAIT_S} s:\n{self.tail()}"
            time.sleep(0.2)

    def interrupt(self) -> int:
        """Ctrl-C, as a user stops it; the exit code."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(60)
        finally:
            self.kill()

    def kill(self) -> None:
        """SIGKILL to the whole group: the job and its Prism die at once, as in a crash."""
        if self.process.poll() is None or _group_alive(self.process.pid):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(30)
        self._log_file.close()

    def tail(self) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")[-3000:]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture
def streaming(prism: Path, broker: KafkaSettings, topics: dict[str, str], tmp_path: Path):
    """A factory of streaming jobs, every one of which is killed when the test ends."""
    jobs: list[StreamingJob] = []

    def start(*extra: str) -> StreamingJob:
        jobs.append(StreamingJob(broker, topics, tmp_path / "lake", f"--prism_location={prism}", *extra))
        return jobs[-1]

    yield start
    for job in jobs:
        job.kill()
