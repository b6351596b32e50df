"""The NYPD history from Kafka into the lake: batches of typed records → ``history/dt=…/`` Parquet.

The CSV loader sends batches of records it already checked (``transforms.history_contract``);
here they become rows of the lake's history schema, with fines joined from our code
table. A file holds one issue date's rows of one chunk of source lines, and writing it
merges with what is already there, keyed by summons number: a batch resent after a
loader crash, or re-read after a pipeline crash, replaces its rows instead of adding
them, so every summons number is in the lake once.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any, Iterable, Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq

from transforms import lake
from transforms.dead_letters import DeadLetter, DeadLetterBatch
from transforms.history_contract import BadHistoryBatch, decode_history_batch
from transforms.kafka_source import RawBatch
from transforms.lake_writer import unique_rows
from transforms.landed_offsets import BatchSpan, Landed
from transforms.messages import DEAD_LETTERS
from transforms.metrics import counter, to_write_counter, written_counter

LINES_PER_FILE_CHUNK = 100_000
# Integer columns and the range their lake type holds: a value beyond it (a code of 99999 in
# an int16 column) is unreadable as that column, so it is stored as null and the row kept.
INTEGER_FIELDS = {
    field.name: (-(2 ** (field.type.bit_width - 1)), 2 ** (field.type.bit_width - 1) - 1)
    for field in lake.HISTORY_SCHEMA
    if pa.types.is_integer(field.type) and field.name != "source_line"
}
FLOAT_FIELDS = {"latitude", "longitude"}


def history_row(record: dict[str, Any], source_file: str, fine_for: Any) -> dict[str, Any]:
    """One lake row from one loader record: typed columns, the fine joined by code and borough."""
    row: dict[str, Any] = {name: record.get(name) or None for name in lake.HISTORY_TEXT_FIELDS}
    for name, (low, high) in INTEGER_FIELDS.items():
        row[name] = _integer(record.get(name), low, high)
    for name in FLOAT_FIELDS:
        row[name] = _number(record.get(name))
    row["issue_date"] = date.fromisoformat(record["issue_date"])
    row["violation_time"] = _millis_of_day(record.get("violation_time"))
    row["improbable_date"] = bool(record.get("improbable_date"))
    row["fine_amount"] = fine_for(row["violation_code"], row["borough"])
    row["source_file"] = source_file
    row["source_line"] = int(record.get("line") or record.get("source_line") or 0)
    return row


def _integer(value: Any, low: int, high: int) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if low <= number <= high else None


def _number(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _millis_of_day(value: Any) -> int | None:
    """``"HH:MM"`` (as the loader normalises violation times) → milliseconds since midnight."""
    if not isinstance(value, str) or len(value) < 5 or value[2] != ":":
        return None
    try:
        hours, minutes = int(value[:2]), int(value[3:5])
    except ValueError:
        return None
    return (hours * 3600 + minutes * 60) * 1000 if 0 <= hours < 24 and 0 <= minutes < 60 else None


def history_file_key(source_file: str, issue_day: date, source_line: int, kafka_partition: int) -> tuple[str, str]:
    """(day, file name): rows of one day, one chunk of source lines and one Kafka partition.

    A resent batch has the same key, so the same partition: its rows meet their first copy
    in the same file. Only one reader handles a partition, so no two writers ever merge
    into one file at once.
    """
    chunk = source_line // LINES_PER_FILE_CHUNK
    return issue_day.isoformat(), f"part-{source_file[:16]}-c{chunk:05d}-p{kafka_partition}.parquet"


def fine_lookup() -> Any:
    """``fine(code, borough)`` from our DOF code table: the Manhattan fine in Manhattan.

    The data does not say whether a Manhattan street is below 96th St, where most tickets
    are issued, so the Manhattan (≤96th St) fine is used for every Manhattan row.
    """
    from transforms.violation_codes import violation_codes

    codes = violation_codes()

    def fine(code: int | None, borough: str | None) -> float | None:
        known = codes.get(code) if code is not None else None
        if known is None:
            return None
        return float(known.fine_manhattan_96_below if borough == "Manhattan" else known.fine_elsewhere)

    return fine


class ParseHistoryBatches(beam.DoFn):
    """RawBatch of loader messages → ``((day, file name), (batch span, table))`` per file, and dead letters."""

    def __init__(self) -> None:
        self._rows = counter("history_rows")
        self._invalid = counter("invalid")
        self._fine_for: Any = None
        self._to_write = to_write_counter()

    def setup(self) -> None:
        self._fine_for = fine_lookup()

    def process(self, batch: RawBatch) -> Iterator[Any]:
        by_file: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        dead: list[DeadLetter] = []
        for index, (offset, raw) in enumerate(zip(batch.offsets, batch.values)):
            try:
                source_file, records = decode_history_batch(raw)
                rows = [history_row(record, source_file, self._fine_for) for record in records]
            except (BadHistoryBatch, KeyError, TypeError, ValueError) as error:
                self._invalid.inc()
                reason, _, detail = str(error).partition(": ")
                dead.append(DeadLetter(raw, reason if detail else "bad_record", detail or str(error), batch.topic,
                                       batch.partition, offset, batch.stored_at(index)))
                continue
            for row in rows:
                day, name = history_file_key(row["source_file"], row["issue_date"], row["source_line"], batch.partition)
                by_file[(day, name)].append(row)
        span = batch.span()
        if dead:
            self._to_write.inc(len(dead))
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, DeadLetterBatch(span, dead))
        for key, rows in by_file.items():
            self._rows.inc(len(rows))
            self._to_write.inc(len(rows))
            yield key, (span, pa.Table.from_pylist(rows, schema=lake.HISTORY_SCHEMA))


class MergeHistoryFiles(beam.DoFn):
    """Write one history file, merged with its earlier version and unique by summons number."""

    def __init__(self, root: str):
        self._root = root

    def process(self, keyed_tables: tuple[tuple[str, str], Iterable[tuple[BatchSpan, pa.Table]]]) -> Iterator[Landed]:
        from apache_beam.io.filesystems import FileSystems

        (day, name), spans_and_tables = keyed_tables
        folder = lake.date_partition(self._root, lake.HISTORY, day)
        path = lake.join(folder, name)
        spans_and_tables = list(spans_and_tables)
        parts = [table for _, table in spans_and_tables]
        incoming = sum(part.num_rows for part in parts)
        if FileSystems.exists(path):
            with FileSystems.open(path) as handle:
                parts.insert(0, pq.read_table(handle, schema=lake.HISTORY_SCHEMA))
        merged = pa.concat_tables(parts).sort_by([("source_line", "ascending")])
        table = unique_rows(merged, "summons_number")
        lake.write_table(self._root, folder, name, table)
        written_counter().inc(incoming)
        for span, part in spans_and_tables:
            yield Landed(span, part.num_rows)


class WriteHistory(beam.PTransform):
    """Raw batches from ``nypd-history`` → merged, deduplicated files under ``history/dt=…/``.

    No shuffle: a file belongs to one Kafka partition, whose batches one reader handles
    in order, so each batch's tables merge into their files as they come, in any mode.
    """

    def __init__(self, root: str):
        super().__init__()
        self._root = root

    def expand(self, batches: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        """``(landed reports, dead-letter batches)``."""
        routed = batches | "ParseHistory" >> beam.ParDo(ParseHistoryBatches()).with_outputs(DEAD_LETTERS, main="files")
        written = (
            routed.files
            | "OneTablePerFile" >> beam.MapTuple(lambda key, span_and_table: (key, [span_and_table]))
            | "MergeWrite" >> beam.ParDo(MergeHistoryFiles(self._root))
        )
        return written, routed[DEAD_LETTERS]
