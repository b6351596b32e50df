"""Prism, Beam's own streaming runner, built once by ``go install`` at the installed SDK's version.

Beam's Python SDK would download a Prism release from the web; here the Go module proxy
serves Beam's Go SDK instead, so the runner is built from it by name into the cache
(about 3 minutes, 66 MB) and passed to the SDK with ``--prism_location``. Where Go is
missing, the error says so in one line.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import apache_beam as beam

from runners.workspace import cache_dir

PRISM_PACKAGE = "github.com/apache/beam/sdks/v2/go/cmd/prism"
BUILD_TIMEOUT_S = 1200


class PrismUnavailable(RuntimeError):
    """Prism could not be had; the message is one line meant for the user."""


def prism_binary() -> Path:
    """The Prism binary of the installed Beam version, built now if the cache lacks it."""
    target = cache_dir() / "prism" / beam.__version__ / "prism"
    if target.is_file():
        return target
    if shutil.which("go") is None:
        raise PrismUnavailable(
            f"Prism (Beam's streaming runner) is built with Go, and `go` is not on PATH: install Go, "
            f"or pass --prism_location=<a prism {beam.__version__} binary>"
        )
    with _build_lock(target.parent):
        if not target.is_file():
            _go_install(target)
    return target


def _go_install(target: Path) -> None:
    """``go install`` into a fresh folder, then rename: a killed build never leaves half a binary."""
    with tempfile.TemporaryDirectory(dir=target.parent) as gobin:
        completed = subprocess.run(
            ["go", "install", f"{PRISM_PACKAGE}@v{beam.__version__}"],
            env={**os.environ, "GOBIN": gobin, "GOFLAGS": os.environ.get("GOFLAGS", "-mod=mod")},
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
        built = Path(gobin) / "prism"
        if completed.returncode != 0 or not built.is_file():
            last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
            raise PrismUnavailable(f"`go install {PRISM_PACKAGE}@v{beam.__version__}` failed: {last}")
        built.rename(target)


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """One build at a time per cache: a second process waits for the first one's binary."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
