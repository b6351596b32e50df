"""What a drain run remembers between runs, kept in the lake under ``_state/``.

A drain reads its backlog in slices of bounded size, so its memory does not grow with
the backlog. It first records a slice's plan (each partition's offset span) and only
then reads it. If it dies before committing the slice's offsets, the next run finds the
same plan and reads exactly the same offsets again, so every file gets the same rows
and the same name and replaces its twin instead of adding duplicates. The state also
carries the watermark earlier slices reached, against which later messages are judged
late or too late, and the partitions (a history drain's days) that committed slices wrote
and no merge has covered yet: a drain killed before its merge leaves them to the next.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Iterable

import orjson

from transforms import lake
from transforms.kafka_source import PartitionSpan
from transforms.object_store import prepare_for


@dataclass
class DrainState:
    """``unmerged``: partition keys written since the last merge; None when not known (a state saved before
    drains kept them), which means every partition."""

    pending: list[PartitionSpan] = field(default_factory=list)
    watermark_ms: int | None = None
    unmerged: list[str] | None = field(default_factory=list)


def state_path(root: str, pipeline: str, group_id: str) -> str:
    return lake.join(root, lake.STATE_FOLDER, pipeline, f"{group_id}.json")


def load_state(root: str, pipeline: str, group_id: str) -> DrainState:
    from apache_beam.io.filesystems import FileSystems

    prepare_for(root)
    path = state_path(root, pipeline, group_id)
    if not FileSystems.exists(path):
        return DrainState()
    with FileSystems.open(path) as handle:
        saved = orjson.loads(handle.read())
    return DrainState([PartitionSpan(**span) for span in saved["pending"]], saved["watermark_ms"], saved.get("unmerged"))


def save_state(root: str, pipeline: str, group_id: str, state: DrainState) -> None:
    payload = orjson.dumps(
        {"pending": [asdict(span) for span in state.pending], "watermark_ms": state.watermark_ms, "unmerged": state.unmerged}
    )
    lake.write_file_atomically(root, state_path(root, pipeline, group_id), payload)


def first_slice(plan: list[PartitionSpan], max_records: int) -> list[PartitionSpan]:
    """The first at most ``max_records`` offsets of ``plan``, shared fairly among its partitions.

    Partitions with less than their share lend the rest to the others, so a slice is full
    unless the plan is smaller; every partition moves on in every slice, as a stream's
    watermark does.
    """
    remaining = max_records
    stops: dict[tuple[str, int], int] = {}
    by_size = sorted((span for span in plan if not span.is_empty), key=lambda span: span.stop - span.start)
    for index, span in enumerate(by_size):
        share = max(1, remaining // (len(by_size) - index))
        taken = min(span.stop - span.start, share, remaining)
        stops[(span.topic, span.partition)] = span.start + taken
        remaining -= taken
    return [replace(span, stop=stops.get((span.topic, span.partition), span.start)) for span in plan]


def resumable_plan(state: DrainState, fresh: list[PartitionSpan]) -> list[PartitionSpan]:
    """The interrupted plan when it starts where the group stands now, else the fresh plan.

    A pending plan whose starts differ from the committed offsets was committed after
    all (the run died between committing and clearing its plan), so it is done.
    """
    starts_now = {(span.topic, span.partition): span.start for span in fresh}
    pending_starts = {(span.topic, span.partition): span.start for span in state.pending}
    return state.pending if state.pending and pending_starts == starts_now else fresh


def with_unmerged(unmerged: list[str] | None, written: Iterable[str]) -> list[str] | None:
    """The partitions still to merge once ``written`` are added: sorted, each once; None (every partition) stays None."""
    return None if unmerged is None else sorted({*unmerged, *written})
