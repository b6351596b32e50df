"""Tallies, the one way the analysis counts: ``{key: count}`` dicts per table, added up by one combine."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import apache_beam as beam
import pyarrow as pa

from transforms.analysis import arrow_ops

TallyKey = Callable[[pa.Table], pa.Table]


class Tally(beam.PTransform):
    """Tables → one dict ``{key: count}``.

    ``keyed`` picks each table's rows to count and returns them as key columns. Each
    table is tallied with one Arrow ``group_by``; ``CombineGlobally`` adds the tables'
    tallies up. One combine over whole dicts, rather than ``CombinePerKey`` and a
    ``ToDict``: the tallies are small, and each shuffle costs the local runner a stage.
    Without a default, which costs a stage too: when no table reaches the tally (a
    dataset without rows) there is no element, and whoever reads the tallies takes
    a missing one as ``{}``.
    """

    def __init__(self, keyed: TallyKey):
        super().__init__()
        self._keyed = keyed

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        return (
            tables
            | "PartialTallies" >> beam.Map(partial_tally, self._keyed)
            | "AddUp" >> beam.CombineGlobally(AddTallies()).without_defaults()
        )


def partial_tally(table: pa.Table, keyed: TallyKey) -> dict[Any, int]:
    """``{key: count}`` for one table; a single key column gives plain keys, not 1-tuples."""
    rows = keyed(table)
    return {(key[0] if len(key) == 1 else key): count for key, count in arrow_ops.group_counts(rows, rows.column_names)}


class AddTallies(beam.CombineFn):
    """Adds ``{key: count}`` dicts key by key."""

    def create_accumulator(self) -> dict[Any, int]:
        return {}

    def add_input(self, total: dict[Any, int], tally: dict[Any, int]) -> dict[Any, int]:
        for key, count in tally.items():
            total[key] = total.get(key, 0) + count
        return total

    def merge_accumulators(self, totals: Iterable[dict[Any, int]]) -> dict[Any, int]:
        merged: dict[Any, int] = {}
        for total in totals:
            self.add_input(merged, total)
        return merged

    def extract_output(self, total: dict[Any, int]) -> dict[Any, int]:
        return total
