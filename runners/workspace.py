"""Where DroneCop keeps local state: ``$DRONECOP_HOME``, else ``.dronecop/`` in the working folder.

Broker data, pid and log files, and the Maven cache all live below it; ``$DRONECOP_CACHE``
may point the cache elsewhere so several checkouts share one set of jars.
"""

from __future__ import annotations

import os
from pathlib import Path


def dronecop_home() -> Path:
    home = Path(os.environ.get("DRONECOP_HOME") or Path.cwd() / ".dronecop")
    home.mkdir(parents=True, exist_ok=True)
    return home


def cache_dir() -> Path:
    cache = Path(os.environ.get("DRONECOP_CACHE") or dronecop_home() / "cache")
    cache.mkdir(parents=True, exist_ok=True)
    return cache
