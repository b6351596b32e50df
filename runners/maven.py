"""Java artifacts resolved once by name with ``mvn`` into a cache folder, never downloaded by URL.

Beam's Flink job server and IO expansion service, and Apache Kafka itself, are Maven
artifacts. Resolving them with the ordinary client keeps the machine's registry set-up
(mirrors, proxies, certificates) in charge; the cache makes every later start offline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from runners.workspace import cache_dir


class JavaUnavailable(RuntimeError):
    """Java, Maven or an artifact is missing; the message is one line meant for the user."""


def require_java() -> None:
    """Raise JavaUnavailable naming what is missing when ``java`` or ``mvn`` is not on PATH."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        raise JavaUnavailable(f"{' and '.join(missing)} not found on PATH")


def resolve_jar(coordinate: str) -> Path:
    """The jar of ``group:artifact:version`` (no dependencies), from the cache or resolved now."""
    group, artifact, version = coordinate.split(":")
    target = cache_dir() / "maven" / f"{artifact}-{version}.jar"
    if target.is_file():
        return target
    require_java()
    target.parent.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "dependency:copy",
            f"-Dartifact={group}:{artifact}:{version}:jar",
            f"-DoutputDirectory={target.parent}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "MAVEN_OPTS": os.environ.get("MAVEN_OPTS", "-Xmx512m")},
    )
    if completed.returncode != 0 or not target.is_file():
        raise JavaUnavailable(f"Maven could not resolve {coordinate} (not served by the configured repositories)")
    return target
