"""The pipelines' counters: one namespace, and the two counts a drain's commit depends on.

Every record a drain must land (lake rows and dead letters) is counted once when it is
routed and once when its file is in place; the driver commits only when both agree.
"""

from __future__ import annotations

from typing import Any

from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

METRICS_NAMESPACE = "dronecop"
TO_WRITE = "to_write"
WRITTEN = "written"
NEWEST_EVENT_PREFIX = "event_ms_p"
# A counter per lake partition a run wrote into (a history day): what the drain's merge must cover.
WROTE_PARTITION_PREFIX = "wrote:"


def counter(name: str) -> Any:
    return Metrics.counter(METRICS_NAMESPACE, name)


def to_write_counter() -> Any:
    return counter(TO_WRITE)


def written_counter() -> Any:
    return counter(WRITTEN)


def wrote_partition_counter(key: str) -> Any:
    """Counted once per file written into the partition ``key`` (a history day, ``YYYY-MM-DD``)."""
    return counter(f"{WROTE_PARTITION_PREFIX}{key}")


def wrote_partitions(totals: dict[str, int]) -> list[str]:
    """The partitions a finished run wrote into, sorted, from its :func:`counters`."""
    prefix = WROTE_PARTITION_PREFIX
    return sorted(name[len(prefix) :] for name, count in totals.items() if name.startswith(prefix) and count)


def counters(result: Any) -> dict[str, int]:
    """Our counters of a finished run, by name."""
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    totals: dict[str, int] = {}
    for found in query["counters"]:
        name = found.key.metric.name
        totals[name] = totals.get(name, 0) + (found.committed or found.attempted or 0)
    return totals


def newest_event_ms_by_partition(result: Any) -> list[int]:
    """The newest event time each partition's messages reached in a finished run."""
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    return [
        (found.committed or found.attempted).max
        for found in query["distributions"]
        if found.key.metric.name.startswith(NEWEST_EVENT_PREFIX) and (found.committed or found.attempted)
    ]


def newest_event_distribution(partition: int) -> Any:
    return Metrics.distribution(METRICS_NAMESPACE, f"{NEWEST_EVENT_PREFIX}{partition}")
