"""Where DroneCop keeps local state: ``$DRONECOP_HOME``, else ``.dronecop/`` in the working folder.

Broker data, pid and log files, and the Maven cache all live below it; ``$DRONECOP_CACHE``
may point the cache elsewhere so several checkouts share one set of jars.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def dronecop_home() -> Path:
    home = Path(os.environ.get("DRONECOP_HOME") or Path.cwd() / ".dronecop")
    home.mkdir(parents=True, exist_ok=True)
    return home


def cache_dir() -> Path:
    cache = Path(os.environ.get("DRONECOP_CACHE") or dronecop_home() / "cache")
    cache.mkdir(parents=True, exist_ok=True)
    return cache


@contextmanager
def using_home(path: Path) -> Iterator[Path]:
    """Point ``DRONECOP_HOME`` at ``path`` for a while (tests, benchmarks), then restore it."""
    previous = os.environ.get("DRONECOP_HOME")
    os.environ["DRONECOP_HOME"] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop("DRONECOP_HOME", None)
        else:
            os.environ["DRONECOP_HOME"] = previous
