"""The NYPD history from Kafka into the lake: batches of typed records → ``history/dt=…/`` Parquet.

The CSV loader sends JSON batches of records it already checked (see ``csv_ingest``);
here they become rows of the lake's history schema, with fines joined from our code
table. A file holds one issue date's rows of one chunk of source lines, and writing it
merges with what is already there, keyed by summons number: a batch resent after a
loader crash, or re-read after a pipeline crash, replaces its rows instead of adding
them, so every summons number is in the lake once.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timezone
from typing import Any, Iterable, Iterator

import apache_beam as beam
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger
from apache_beam.transforms.window import GlobalWindows

from transforms import lake
from transforms.kafka_source import RawBatch
from transforms.messages import DEAD_LETTERS, METRICS_NAMESPACE, DeadLetter, stamped_if
from transforms.sinks import unique_rows

LINES_PER_FILE_CHUNK = 100_000
INTEGER_FIELDS = {
    field.name for field in lake.HISTORY_SCHEMA if pa.types.is_integer(field.type) and field.name != "source_line"
}
FLOAT_FIELDS = {"latitude", "longitude"}


class BadHistoryBatch(ValueError):
    """A Kafka message on the history topic that is not a batch the loader could have sent."""


def parse_history_batch(raw: bytes) -> tuple[str, list[dict[str, Any]]]:
    """The source fingerprint and records of one loader batch; BadHistoryBatch otherwise."""
    try:
        batch = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadHistoryBatch(f"bad_json: {error}") from None
    if not isinstance(batch, dict) or not isinstance(batch.get("records"), list) or not isinstance(batch.get("file"), str):
        raise BadHistoryBatch("not_a_history_batch: needs 'file' and 'records'")
    return batch["file"], batch["records"]


def history_row(record: dict[str, Any], source_file: str, fine_for: Any) -> dict[str, Any]:
    """One lake row from one loader record: typed columns, the fine joined by code and borough."""
    row: dict[str, Any] = {name: record.get(name) for name in lake.HISTORY_TEXT_FIELDS}
    for name in INTEGER_FIELDS:
        row[name] = _integer(record.get(name))
    for name in FLOAT_FIELDS:
        row[name] = _number(record.get(name))
    row["issue_date"] = date.fromisoformat(record["issue_date"])
    row["violation_time"] = _seconds_of_day(record.get("violation_time"))
    row["improbable_date"] = bool(record.get("improbable_date"))
    row["fine_amount"] = fine_for(row["violation_code"], row["borough"])
    row["source_file"] = source_file
    row["source_line"] = int(record.get("line") or record.get("source_line") or 0)
    return row


def _integer(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _number(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _seconds_of_day(value: Any) -> int | None:
    """``"HH:MM"`` (as the loader normalises violation times) → seconds since midnight."""
    if not isinstance(value, str) or len(value) < 5 or value[2] != ":":
        return None
    try:
        hours, minutes = int(value[:2]), int(value[3:5])
    except ValueError:
        return None
    return hours * 3600 + minutes * 60 if 0 <= hours < 24 and 0 <= minutes < 60 else None


def history_file_key(source_file: str, issue_day: date, source_line: int) -> tuple[str, str]:
    """(day, file name): rows of one day and one chunk of source lines share a file."""
    chunk = source_line // LINES_PER_FILE_CHUNK
    return issue_day.isoformat(), f"part-{source_file[:16]}-c{chunk:05d}.parquet"


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
    """RawBatch of loader messages → ``((day, file name), table)`` per file, and dead letters."""

    def __init__(self, stamp: bool) -> None:
        self._stamp = stamp
        self._rows = Metrics.counter(METRICS_NAMESPACE, "history_rows")
        self._invalid = Metrics.counter(METRICS_NAMESPACE, "invalid")
        self._fine_for: Any = None

    def setup(self) -> None:
        self._fine_for = fine_lookup()

    def process(self, batch: RawBatch) -> Iterator[Any]:
        received_at = datetime.now(timezone.utc)
        by_file: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for offset, raw in zip(batch.offsets, batch.values):
            try:
                source_file, records = parse_history_batch(raw)
                rows = [history_row(record, source_file, self._fine_for) for record in records]
            except (BadHistoryBatch, KeyError, TypeError, ValueError) as error:
                self._invalid.inc()
                reason, _, detail = str(error).partition(": ")
                letter = DeadLetter(raw, reason if detail else "bad_record", detail or str(error), batch.topic,
                                    batch.partition, offset, received_at)
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, stamped_if(self._stamp, letter, received_at))
                continue
            for row in rows:
                by_file[history_file_key(row["source_file"], row["issue_date"], row["source_line"])].append(row)
        for key, rows in by_file.items():
            self._rows.inc(len(rows))
            yield stamped_if(self._stamp, (key, pa.Table.from_pylist(rows, schema=lake.HISTORY_SCHEMA)), received_at)


class MergeHistoryFiles(beam.DoFn):
    """Write one history file, merged with its earlier version and unique by summons number."""

    def __init__(self, root: str):
        self._root = root

    def process(self, keyed_tables: tuple[tuple[str, str], Iterable[pa.Table]]) -> Iterator[tuple[str, int]]:
        from apache_beam.io.filesystems import FileSystems

        (day, name), tables = keyed_tables
        folder = lake.date_partition(self._root, lake.HISTORY, day)
        path = lake.join(folder, name)
        parts = list(tables)
        if FileSystems.exists(path):
            with FileSystems.open(path) as handle:
                parts.insert(0, pq.read_table(handle, schema=lake.HISTORY_SCHEMA))
        merged = pa.concat_tables(parts).sort_by([("source_line", "ascending")])
        table = unique_rows(merged, "summons_number")
        yield lake.write_table(self._root, folder, name, table), table.num_rows


class WriteHistory(beam.PTransform):
    """Raw batches from ``nypd-history`` → merged, deduplicated files under ``history/dt=…/``.

    One global window with processing-time panes, not event-time windows: a file's key
    is its name, so one key must never be written by two windows at once.
    """

    def __init__(self, root: str, window_s: int, bounded: bool):
        super().__init__()
        self._root = root
        self._window_s = window_s
        self._bounded = bounded

    def expand(self, batches: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        routed = batches | "ParseHistory" >> beam.ParDo(ParseHistoryBatches(stamp=not self._bounded)).with_outputs(DEAD_LETTERS, main="files")
        written = (
            routed.files
            | "HistoryPanes"
            >> beam.WindowInto(
                GlobalWindows(),
                trigger=trigger.Repeatedly(trigger.AfterProcessingTime(self._window_s)),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
            )
            | "GroupByFile" >> beam.GroupByKey()
            | "MergeWrite" >> beam.ParDo(MergeHistoryFiles(self._root))
        )
        return written, routed[DEAD_LETTERS]
