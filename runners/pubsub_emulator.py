"""Google's in-memory Pub/Sub server (pstest, from the Go module proxy), built once and run locally.

``runners/pubsub_emulator/`` is a small Go ``main`` around ``cloud.google.com/go/pubsub/v2/pstest``
(versions pinned in its go.mod). ``go build`` fetches the modules through the module proxy
the machine's ``go`` is set up for, into ``cache/pubsub-emulator/<version>/``. Clients and
Beam reach the server through ``PUBSUB_EMULATOR_HOST``.
"""

from __future__ import annotations

import hashlib
import os
import re
import selectors
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from runners.brokers import free_port
from runners.workspace import cache_dir

SOURCE_DIR = Path(__file__).resolve().parent / "pubsub_emulator"
READY_PREFIX = "pubsub emulator listening on "
BUILD_TIMEOUT_S = 600.0


class EmulatorUnavailable(RuntimeError):
    """Go is missing or the build failed; the message is one line meant for the user."""


@dataclass
class PubSubEmulator:
    """A running emulator: ``host`` is what ``PUBSUB_EMULATOR_HOST`` must say."""

    process: subprocess.Popen
    host: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def emulator_version() -> str:
    """The pinned pstest version, plus a digest of our sources so an edited main is rebuilt."""
    pinned = re.search(r"cloud\.google\.com/go/pubsub/v2 (v\S+)", (SOURCE_DIR / "go.mod").read_text())
    digest = hashlib.sha256(b"".join((SOURCE_DIR / name).read_bytes() for name in ("go.mod", "go.sum", "main.go")))
    return f"{pinned.group(1) if pinned else 'unpinned'}-{digest.hexdigest()[:8]}"


def build_emulator() -> Path:
    """The emulator binary, from the cache or built now with ``go build``."""
    target = cache_dir() / "pubsub-emulator" / emulator_version() / "pubsub-emulator"
    if target.is_file():
        return target
    if shutil.which("go") is None:
        raise EmulatorUnavailable("go not found on PATH (needed once to build the Pub/Sub emulator)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    completed = subprocess.run(
        ["go", "build", "-trimpath", "-o", str(partial), "."],
        cwd=SOURCE_DIR,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    )
    if completed.returncode != 0:
        last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise EmulatorUnavailable(f"go build of the Pub/Sub emulator failed: {last_line}")
    partial.replace(target)
    return target


def start_emulator(topic: str = "", subscription: str = "", timeout_s: float = 30.0) -> PubSubEmulator:
    """Start the emulator on a free loopback port, with ``topic`` and its ``subscription`` made.

    Returns once the emulator printed its ready line, which it does after its gRPC server
    is serving and the topic and subscription exist.
    """
    address = f"127.0.0.1:{free_port()}"
    command = [str(build_emulator()), f"-address={address}", f"-topic={topic}", f"-subscription={subscription}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        return PubSubEmulator(process, ready_address(process, timeout_s))
    except BaseException:
        process.kill()
        process.wait()
        raise


def ready_address(process: subprocess.Popen, timeout_s: float) -> str:
    """The address from the emulator's ready line, waited for until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(timeout=max(deadline - time.monotonic(), 0)):
                line = process.stdout.readline()
                if line.startswith(READY_PREFIX):
                    return line[len(READY_PREFIX) :].strip()
                if not line:
                    break
    process.poll()
    reason = process.stderr.read().strip() if process.returncode is not None else "no ready line in time"
    raise EmulatorUnavailable(f"the Pub/Sub emulator did not start: {reason or f'exit {process.returncode}'}")


@contextmanager
def running_emulator(topic: str = "", subscription: str = "") -> Iterator[PubSubEmulator]:
    emulator = start_emulator(topic, subscription)
    try:
        yield emulator
    finally:
        emulator.stop()
